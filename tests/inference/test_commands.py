"""hftk/inference/commands.py: `hftk predict` and `hftk evaluate` on a trained SST-2 model: every input format,
input order, bad input."""

import json

import pytest

from hftk import HftkError, Predictor

from ..helpers import DATA, assert_user_error, hftk


@pytest.fixture
def inputs(tmp_path):
    texts = ["A gorgeous, witty film.", "Flat and dull.", "", "I loved every minute of it, truly, from start to end."]
    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(texts) + "\n")
    tsv = tmp_path / "in.tsv"
    tsv.write_text("id\tsentence\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts) if t))
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"sentence": t}) + "\n" for t in texts if t))
    return {"txt": txt, "tsv": tsv, "jsonl": jsonl, "texts": texts}


def test_predict_keeps_input_order_in_every_format_and_names_each_rows_line(sst2_model, inputs, tmp_path):
    """Every line of a .txt is an input, the blank one too: row i answers line i + 1, and says so."""

    texts = inputs["texts"]
    answers = dict(zip(texts, Predictor(sst2_model).predict(texts)))
    lines = {"txt": [1, 2, 3, 4], "tsv": [2, 3, 4], "jsonl": [1, 2, 3]}
    for fmt in ("txt", "tsv", "jsonl"):
        out = tmp_path / f"out-{fmt}.jsonl"
        proc = hftk("predict", str(sst2_model), "--input", str(inputs[fmt]), "--output", str(out), "--top-k", "2")
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["sentence"] for r in rows] == [t for t in texts if t or fmt == "txt"], fmt
        assert [r["line"] for r in rows] == lines[fmt], fmt
        assert [r["label"] for r in rows] == [answers[r["sentence"]]["label"] for r in rows], fmt
        assert all(len(r["top_k"]) == 2 and r["top_k"][0]["label"] == r["label"] for r in rows)


def test_predict_bad_input_leaves_existing_output_alone(sst2_model, tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_text("precious\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "ok"}\n{"text": "wrong column"}\n')
    proc = hftk("predict", str(sst2_model), "--input", str(bad), "--output", str(out))
    assert_user_error(proc, "bad.jsonl:2", "column 'sentence' is missing")
    assert out.read_text() == "precious\n"


def test_a_second_prediction_into_the_same_file_names_the_file(sst2_model, inputs, tmp_path):
    from hftk.files import locked

    out = tmp_path / "preds.jsonl"
    out.write_text("precious\n")
    with locked(out.with_name(".preds.jsonl.hftk-lock"), "hftk predict", out):  # one under way
        proc = hftk("predict", str(sst2_model), "--input", str(inputs["txt"]), "--output", str(out))
    assert_user_error(proc, f"{out}: in use by hftk predict (pid ")
    assert out.read_text() == "precious\n"


def test_evaluate_json(sst2_model):
    proc = hftk("evaluate", str(sst2_model), "--data", str(DATA / "en/sst2/dev.tsv"), "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    saved = json.loads((sst2_model / "metrics.json").read_text())["eval"]["eval_accuracy"]
    assert set(metrics) == {"accuracy", "f1_macro", "f1"} and abs(metrics["accuracy"] - saved) < 0.1


def test_no_inputs_no_predictions_and_the_input_is_never_the_output(sst2_model, tmp_path):
    from hftk import predict

    assert Predictor(sst2_model).predict([]) == []
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\na fine film\t1\n", encoding="utf-8")
    before = data.read_bytes()
    with pytest.raises(HftkError, match="is the input file"):
        predict(sst2_model, data, tmp_path / "." / "dev.tsv")
    assert data.read_bytes() == before
