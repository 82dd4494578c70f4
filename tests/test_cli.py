"""The command line: exit status 2 and one line per problem for bad input, never a traceback."""

import json
import subprocess
import sys

import pytest

from .conftest import DATA, ROOT


def hftk(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, cwd=cwd)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("hftk: error: ") for line in lines), proc.stderr
    for needle in needles:
        assert needle in proc.stderr


def test_check_prints_splits_labels_and_lengths():
    proc = hftk("check", "recipes/sst2-minilm.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["train"]["rows"] == 40000 and report["validation"]["rows"] == 872
    assert report["validation"]["labels"] == {"negative": 428, "positive": 444}
    assert report["train"]["tokens"]["max"] >= report["train"]["tokens"]["p99"] > 0


def test_check_warns_about_truncation():
    proc = hftk("check", "recipes/sst2-minilm.yaml", "--set", "max_length=16")
    assert proc.returncode == 0, proc.stderr
    assert "are longer than max_length 16 tokens and will be truncated" in proc.stdout


def test_check_works_offline_for_a_hub_model():
    # recipes/jsick-ja.yaml names cl-tohoku/bert-base-japanese-v3, not cached here: data is still validated.
    proc = hftk("check", "recipes/jsick-ja.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "train: 5000 rows" in proc.stdout and "contradiction 823, entailment 1091, neutral 3086" in proc.stdout
    assert "tokenizer not available here" in proc.stdout


def test_bad_recipe_key_exit_2_one_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text((ROOT / "recipes/sst2-minilm.yaml").read_text().replace("max_length", "max_lenght"))
    assert_user_error(hftk("check", str(recipe)), "r.yaml:12: max_lenght: unknown key (did you mean 'max_length'?)")


def test_unseen_validation_label(tmp_path):
    dev = tmp_path / "dev.tsv"
    dev.write_text((DATA / "en/sst2/dev.tsv").read_text().replace("\t1\n", "\t2\n", 1))
    proc = hftk("check", "recipes/sst2-minilm.yaml", "--set", f"data.validation={dev}")
    assert_user_error(proc, f"{dev}:2: label '2' is not among the training labels")


def test_missing_data_file():
    proc = hftk("check", "recipes/sst2-minilm.yaml", "--set", "data.train=nope.tsv")
    assert_user_error(proc, "nope.tsv: data file not found")


def test_bad_override_and_missing_model_dir(tmp_path):
    assert_user_error(hftk("train", "recipes/sst2-minilm.yaml", "--set", "oops"), "expected KEY=VALUE")
    empty = tmp_path / "model"
    empty.mkdir()
    assert_user_error(hftk("predict", str(empty), "--input", "x.txt", "--output", "y.jsonl"), "no config.json")


@pytest.fixture
def inputs(tmp_path):
    texts = ["A gorgeous, witty film.", "Flat and dull.", "", "I loved every minute of it, truly, from start to end."]
    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(texts) + "\n")
    tsv = tmp_path / "in.tsv"
    tsv.write_text("id\tsentence\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts) if t))
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"sentence": t}) + "\n" for t in texts if t))
    return {"txt": txt, "tsv": tsv, "jsonl": jsonl, "texts": [t for t in texts if t]}


def test_predict_keeps_input_order_in_every_format(sst2_model, inputs, tmp_path):
    from hftk import Predictor

    expected = Predictor(sst2_model).predict(inputs["texts"])
    for fmt in ("txt", "tsv", "jsonl"):
        out = tmp_path / f"out-{fmt}.jsonl"
        proc = hftk("predict", str(sst2_model), "--input", str(inputs[fmt]), "--output", str(out), "--top-k", "2")
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["sentence"] for r in rows] == inputs["texts"], fmt
        assert [r["label"] for r in rows] == [e["label"] for e in expected], fmt
        assert all(len(r["top_k"]) == 2 and r["top_k"][0]["label"] == r["label"] for r in rows)


def test_predict_bad_input_leaves_existing_output_alone(sst2_model, tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_text("precious\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "ok"}\n{"text": "wrong column"}\n')
    proc = hftk("predict", str(sst2_model), "--input", str(bad), "--output", str(out))
    assert_user_error(proc, "bad.jsonl:2", "column 'sentence' is missing")
    assert out.read_text() == "precious\n"


def test_evaluate_json(sst2_model):
    proc = hftk("evaluate", str(sst2_model), "--data", str(DATA / "en/sst2/dev.tsv"), "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    saved = json.loads((sst2_model / "metrics.json").read_text())["eval"]["eval_accuracy"]
    assert set(metrics) == {"accuracy", "f1_macro", "f1"} and abs(metrics["accuracy"] - saved) < 0.1
