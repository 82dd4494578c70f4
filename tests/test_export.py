"""`hftk export` (hftk/export.py, hftk/exported.py): ONNX graphs of real MiniLM heads, run by onnxruntime
through the same Predictor, with the same answers as the torch model they came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hftk import HftkError, Predictor
from hftk.export import answer_of, export

from .helpers import DATA, MINILM, cli, cli_error, head

SENTENCES = [line.rsplit("\t", 1)[0] for line in (DATA / "en/sst2/dev.tsv").read_text().splitlines()[1:41]]


def with_head(folder: Path, auto: str, **config) -> Path:
    """MiniLM with a new (untrained) head of a task, saved as any checkpoint is: what --task exports."""
    import transformers

    from hftk.models import load_tokenizer, resolve_model

    getattr(transformers, auto).from_pretrained(resolve_model(MINILM), **config).save_pretrained(folder)
    load_tokenizer(MINILM).save_pretrained(folder)
    return folder


def test_a_trained_classifier_exports_with_the_same_answers_fp32_and_int8(sst2_model, tmp_path):
    dev = head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 200)
    info = export(sst2_model, tmp_path / "onnx", data=dev)
    assert info["outputs"] == ["logits"] and info["agreement"]["same_answers"] == 1.0
    assert not list((tmp_path / "onnx").glob("*.safetensors")) and (tmp_path / "onnx/model.onnx").is_file()
    assert "100.00% of its answers are the original model's" in (tmp_path / "onnx/README.md").read_text()
    original, exported = Predictor(sst2_model, precision="fp32"), Predictor(tmp_path / "onnx")
    a, b = original.predict(SENTENCES, top_k=2), exported.predict(SENTENCES, top_k=2)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-4)
    # The command line takes the exported folder as it takes the original: predict, evaluate.
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    cli("predict", tmp_path / "onnx", "--input", tmp_path / "in.txt", "--output", tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [x["label"] for x in a] and rows[0]["line"] == 1
    # int8: a quarter of the size, its agreement measured and written down.
    small = export(sst2_model, tmp_path / "int8", quantize="int8", data=dev)
    size = (tmp_path / "int8/model.onnx").stat().st_size / (tmp_path / "onnx/model.onnx").stat().st_size
    assert small["precision"] == "int8" and size < 0.35
    assert 0.9 <= small["agreement"]["same_answers"] <= 1.0 and small["agreement"]["inputs"] == 200
    assert Predictor(tmp_path / "int8").policy.describe() == "cpu (int8, onnxruntime)"


@pytest.mark.parametrize(
    ("task", "auto", "config", "inputs"),
    [
        (
            "token-classification",
            "AutoModelForTokenClassification",
            {"id2label": dict(enumerate(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]))},
            ["Alice flew from Paris to Tokyo with Bob .", "no one here"],
        ),
        (
            "question-answering",
            "AutoModelForQuestionAnswering",
            {},
            [{"question": "Where did Alice fly?", "context": "Alice flew from Paris to Tokyo with Bob."}],
        ),
        ("feature-extraction", "AutoModel", {}, ["a sentence to embed", "and another, longer one"]),
        ("fill-mask", "AutoModelForMaskedLM", {}, ["the capital of france is [MASK] .", "a [MASK] film"]),
    ],
)
def test_each_exportable_head_gives_the_torch_models_answers(tmp_path, task, auto, config, inputs):
    model = with_head(tmp_path / "model", auto, **config)
    info = export(model, tmp_path / "onnx", task=task)
    assert info["agreement"] is None  # no validation file to measure on: said, not invented
    original, exported = Predictor(model, task=task, precision="fp32"), Predictor(tmp_path / "onnx")
    a, b = original.predict(inputs), exported.predict(inputs)
    if task == "feature-extraction":
        assert np.allclose([x["embedding"] for x in a], [x["embedding"] for x in b], atol=1e-4)
    else:  # the same answers (entities, spans), scores equal to float32's rounding
        assert [answer_of(x) for x in a] == [answer_of(x) for x in b]
        assert np.allclose(scores(a), scores(b), atol=1e-4)


def scores(rows) -> list[float]:
    found = []
    for row in rows:
        if isinstance(row, dict):
            found += [v for k, v in row.items() if k == "score"] + scores(list(row.values()))
        elif isinstance(row, list):
            found += scores(row)
    return found


def test_what_cannot_be_exported_is_one_line_and_leaves_nothing(gpt2_fixture, sst2_model, tmp_path, capsys):
    err = cli_error(capsys, "export", gpt2_fixture, "--task", "text-generation", "--output", tmp_path / "gen")
    assert "text-generation models generate token by token, which hftk export does not cover" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full/keep.txt").write_text("mine")
    err = cli_error(capsys, "export", sst2_model, "--output", tmp_path / "full")
    assert "full: not empty; export into a new folder" in err
    assert [p.name for p in tmp_path.iterdir()] == ["full"] and (tmp_path / "full/keep.txt").read_text() == "mine"
    with pytest.raises(HftkError, match="--quantize int4: the choice is int8"):
        export(sst2_model, tmp_path / "q", quantize="int4")
