"""Zero-shot classification with an NLI model trained by hftk: the scores of transformers' pipeline."""

import json
import subprocess
import sys

import pytest

from hftk import HftkError, Predictor, evaluate
from hftk.data.readers import read_records

from ..helpers import ROOT

TEMPLATE = "この文は{}な内容です。"
LABELS = ["肯定的", "否定的", "中立的"]


@pytest.fixture(scope="module")
def texts():
    return [r["text"] for r in read_records(ROOT / "tests/data/ja/chabsa_sentiment_head.jsonl").rows[:30]]


@pytest.mark.parametrize("multi_label", [False, True])
def test_scores_equal_the_pipeline(jsick_model, texts, multi_label):
    from transformers import pipeline

    pipe = pipeline("zero-shot-classification", model=str(jsick_model), device="cpu")
    expected = pipe(texts, candidate_labels=LABELS, hypothesis_template=TEMPLATE, multi_label=multi_label)
    got = Predictor(
        jsick_model,
        task="zero-shot-classification",
        candidate_labels=LABELS,
        hypothesis_template=TEMPLATE,
        multi_label=multi_label,
        precision="fp32",  # the pipeline's arithmetic
    ).predict(texts)
    # The tiny fixture's scores can sit within float noise of each other: compare by label, then the order
    # wherever the scores are clearly apart.
    for g, e in zip(got, expected):
        assert dict(zip(g["labels"], g["scores"])) == pytest.approx(dict(zip(e["labels"], e["scores"])), abs=1e-4)
        assert g["scores"] == sorted(g["scores"], reverse=True)
        if e["scores"][0] - e["scores"][1] > 1e-3:
            assert g["labels"][0] == e["labels"][0]
    if not multi_label:
        assert all(sum(g["scores"]) == pytest.approx(1.0) for g in got)


def test_cli_and_accuracy_on_labelled_rows(jsick_model, tmp_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("売上高は前期比で大きく増加しました。\n営業損失を計上しました。\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "hftk", "predict", str(jsick_model), "--task", "zero-shot-classification"]
    proc = subprocess.run(
        [
            *cmd,
            "--labels",
            "肯定的,否定的",
            "--hypothesis-template",
            TEMPLATE,
            "--input",
            str(inputs),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["売上高は前期比で大きく増加しました。", "営業損失を計上しました。"]
    assert all(sorted(r["labels"]) == sorted(["肯定的", "否定的"]) for r in rows)

    labelled = tmp_path / "labelled.jsonl"
    rows = read_records(ROOT / "tests/data/ja/chabsa_sentiment_head.jsonl").rows[:60]
    mapping = {"positive": "肯定的", "negative": "否定的", "neutral": "中立的"}
    labelled.write_text(
        "".join(json.dumps({"text": r["text"], "label": mapping[r["label"]]}, ensure_ascii=False) + "\n" for r in rows),
        encoding="utf-8",
    )
    overrides = {"candidate_labels": LABELS, "hypothesis_template": TEMPLATE}
    metrics = evaluate(jsick_model, labelled, task="zero-shot-classification", recipe_overrides=overrides)
    predicted = Predictor(jsick_model, task="zero-shot-classification", **overrides).predict([r["text"] for r in rows])
    hits = [p["labels"][0] == mapping[r["label"]] for p, r in zip(predicted, rows)]
    assert set(metrics) == {"accuracy"} and metrics["accuracy"] == pytest.approx(sum(hits) / len(rows))
    # The data's own label values, mapped to the candidates by the recipe's labels: the same score.
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    mapped = evaluate(
        jsick_model, raw, task="zero-shot-classification", recipe_overrides={**overrides, "labels": mapping}
    )
    assert mapped == metrics
    with pytest.raises(HftkError, match=r"label 'positive' is not a candidate label .*labels: \{value: candidate\}"):
        evaluate(jsick_model, raw, task="zero-shot-classification", recipe_overrides=overrides)


def test_refuses_a_model_without_entailment(sst2_model):
    with pytest.raises(HftkError, match=r"its labels \(negative, positive\) have no 'entailment'"):
        Predictor(sst2_model, task="zero-shot-classification", candidate_labels=["a", "b"])
    with pytest.raises(HftkError, match=r"must contain \{\} where the label goes"):
        Predictor(sst2_model, task="zero-shot-classification", hypothesis_template="no slot")
