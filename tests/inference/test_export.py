"""`hftk export` (hftk/inference/export.py, exported.py): ONNX graphs of real MiniLM heads, run by onnxruntime
through the same Predictor, with the same answers as the torch model they came from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hftk import HftkError, Predictor
from hftk.inference.export import answer_of, export

from ..helpers import DATA, MINILM, cli, cli_error, head, run_card

SENTENCES = [line.rsplit("\t", 1)[0] for line in (DATA / "en/sst2/dev.tsv").read_text().splitlines()[1:41]]


def with_head(folder: Path, auto: str, **config) -> Path:
    """MiniLM with a new (untrained) head of a task, saved as any checkpoint is: what --task exports."""
    import transformers

    from hftk.models.loading import load_tokenizer, resolve_model

    getattr(transformers, auto).from_pretrained(resolve_model(MINILM), **config).save_pretrained(folder)
    load_tokenizer(MINILM).save_pretrained(folder)
    return folder


def test_a_trained_classifier_exports_with_the_same_answers_fp32_and_int8(sst2_model, tmp_path):
    dev = head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 200)
    info = export(sst2_model, tmp_path / "onnx", data=dev)
    assert info["outputs"] == ["logits"] and info["agreement"]["same_answers"] == 1.0
    assert not list((tmp_path / "onnx").glob("*.safetensors")) and (tmp_path / "onnx/model.onnx").is_file()
    assert "100.00% of its answers are the original model's" in (tmp_path / "onnx/README.md").read_text()
    # The card's "Use" runs the export (no transformers.pipeline, which cannot load model.onnx), from elsewhere.
    assert "from transformers import pipeline" not in (tmp_path / "onnx/README.md").read_text()
    assert run_card(tmp_path / "onnx", tmp_path).startswith("[{'label': ")
    original, exported = Predictor(sst2_model, precision="fp32"), Predictor(tmp_path / "onnx")
    a, b = original.predict(SENTENCES, top_k=2), exported.predict(SENTENCES, top_k=2)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-4)
    # The command line takes the exported folder as it takes the original: predict, evaluate.
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    cli("predict", tmp_path / "onnx", "--input", tmp_path / "in.txt", "--output", tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [x["label"] for x in a] and rows[0]["line"] == 1
    # int8: about a third of the size, its agreement measured and written down.
    small = export(sst2_model, tmp_path / "int8", quantize="int8", data=dev)
    size = (tmp_path / "int8/model.onnx").stat().st_size / (tmp_path / "onnx/model.onnx").stat().st_size
    assert small["precision"] == "int8" and size < 0.4
    assert 0.9 <= small["agreement"]["same_answers"] <= 1.0 and small["agreement"]["inputs"] == 200
    assert Predictor(tmp_path / "int8").policy.describe() == "cpu (int8, onnxruntime)"


def test_int8_keeps_its_down_projections_fp32_only_where_that_agrees_better(sst2_model, tmp_path, monkeypatch):
    """Below the agreement bar, the width-reducing MatMuls are kept fp32 if, and only if, that agrees better
    with the original (here the bar is raised past 100 % so that the second graph is always tried)."""
    import onnx

    import hftk.inference.export

    dev = head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 200)
    monkeypatch.setattr(hftk.inference.export, "_INT8_AGREEMENT", 1.01)
    tried = export(sst2_model, tmp_path / "tried", quantize="int8", data=dev)
    scores = tried["agreement_tried"]
    assert set(scores) == {"all", "down-projections fp32"}
    assert tried["agreement"]["same_answers"] == max(scores.values())
    graph = onnx.load(str(tmp_path / "tried/model.onnx")).graph
    fp32 = {n.name for n in graph.node if n.op_type == "MatMul"}
    assert set(tried["kept_fp32"]) <= fp32
    if scores["down-projections fp32"] > scores["all"]:  # MiniLM: its 6 feed-forward down-projections
        assert len(tried["kept_fp32"]) == 6
        assert "6 down-projection MatMuls kept fp32" in (tmp_path / "tried/README.md").read_text()
    else:
        assert tried["kept_fp32"] == [] and not fp32
    assert json.loads((tmp_path / "tried/hftk-export.json").read_text())["kept_fp32"] == tried["kept_fp32"]


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
    assert "full: not empty; pass --overwrite to replace the model there, or --output NEW_DIR" in err
    assert [p.name for p in tmp_path.iterdir()] == ["full"] and (tmp_path / "full/keep.txt").read_text() == "mine"
    with pytest.raises(HftkError, match="--quantize int4: the choice is int8"):
        export(sst2_model, tmp_path / "q", quantize="int4")


# A work folder as `hftk export` makes one, held by a child process until it is killed or ends.
HOLDER = """
import sys, time
from pathlib import Path
from hftk.files import scratch
with scratch(Path(sys.argv[1]), "hftk-export", lambda e: e) as work:
    (work / "model").mkdir()
    (work / "model" / "model.onnx").write_bytes(b"x" * 1000)
    print(work, flush=True)
    time.sleep(120)
"""


def hold_scratch(parent: Path) -> tuple[subprocess.Popen, Path]:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(parent)], stdout=subprocess.PIPE, text=True)
    return child, Path(child.stdout.readline().strip())


@pytest.mark.slow  # 36 s; make test-slow runs it (keeps make test under CI's 30 minutes)
def test_overwrite_replaces_the_model_keeps_other_files_and_a_dead_exports_folder_is_swept(sst2_model, tmp_path):
    dev = head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 20)
    killed, dead = hold_scratch(tmp_path)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    live, running = hold_scratch(tmp_path)
    old = os.umask(0o022)
    try:
        assert dead.is_dir() and running.is_dir()  # what a SIGKILLed export leaves; one under way
        export(sst2_model, tmp_path / "onnx", data=dev)
        assert not dead.exists() and running.is_dir()  # swept once no process holds it; the live one stays
        # Files hftk writes get the user's umask, not the 0600/0700 of temporary files.
        out = tmp_path / "onnx"
        assert out.stat().st_mode & 0o777 == 0o755
        assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o644}
        (out / "keep.txt").write_text("mine")
        with pytest.raises(HftkError, match="onnx: not empty; pass --overwrite"):
            export(sst2_model, out, quantize="int8", data=dev)
        info = export(sst2_model, out, quantize="int8", data=dev, overwrite=True)
        assert json.loads((out / "hftk-export.json").read_text())["precision"] == info["precision"] == "int8"
        assert (out / "keep.txt").read_text() == "mine" and Predictor(out).predict(SENTENCES[:2])
        assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o644}
        with pytest.raises(HftkError, match="is the model being exported; choose another --output"):
            export(sst2_model, sst2_model, overwrite=True)
    finally:
        os.umask(old)
        live.kill()
        live.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "dev.tsv", "onnx"]
