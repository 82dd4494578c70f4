"""hftk/inference/exported.py: an ONNX graph behind the call of a transformers model, and the folder that holds it.

A tiny real graph (logits = the sum of the attended input ids, per sequence, as two classes) built with onnx's
helpers and run by onnxruntime; the export of real MiniLM heads is tests/inference/test_export.py."""

from __future__ import annotations

import json

import pytest
import torch

from hftk import HftkError
from hftk.inference.exported import MANIFEST, ONNX_FILE, OnnxModel, is_exported, manifest


def tiny_graph(folder):
    import onnx
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["attended"]),
        helper.make_node("Cast", ["attended"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["as_float", "axis"], ["total"], keepdims=1),
        helper.make_node("Neg", ["total"], ["negated"]),
        helper.make_node("Concat", ["negated", "total"], ["logits"], axis=1),
    ]
    axis = helper.make_tensor("axis", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(nodes, "tiny", [ids, mask], [logits], initializer=[axis])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(folder / ONNX_FILE))
    (folder / MANIFEST).write_text(json.dumps({"format": "onnx", "precision": "fp32", "outputs": ["logits"]}))


def test_the_session_answers_like_a_transformers_model(tmp_path):
    tiny_graph(tmp_path)
    assert is_exported(tmp_path) and manifest(tmp_path)["outputs"] == ["logits"]
    model = OnnxModel(tmp_path, threads=1).eval().to("cpu")
    batch = {"input_ids": torch.tensor([[1, 2, 3], [4, 5, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}
    out = model(**batch, token_type_ids=torch.zeros(2, 3, dtype=torch.long))  # an input the graph lacks: unused
    assert out.logits.tolist() == [[-6.0, 6.0], [-9.0, 9.0]] and out["logits"] is out.logits
    with pytest.raises(AttributeError):
        _ = out.hidden_states
    with pytest.raises(HftkError, match="needs the inputs attention_mask, which the tokenizer did not give"):
        model(input_ids=batch["input_ids"])


def test_a_damaged_folder_is_one_line(tmp_path):
    assert not is_exported(tmp_path)
    tiny_graph(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(HftkError, match=rf"{MANIFEST}: unreadable .*; export the model again \(hftk export\)"):
        manifest(tmp_path)
    (tmp_path / ONNX_FILE).write_bytes((tmp_path / ONNX_FILE).read_bytes()[:40])
    with pytest.raises(HftkError, match=rf"{ONNX_FILE}: not a loadable ONNX model .*; export it again"):
        OnnxModel(tmp_path)
