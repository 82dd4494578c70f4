"""hftk/report/labels.py through the classification adapter: every number of the report equals scikit-learn's (or
a plain recomputation) on the same predictions, and every example shown is the row its file:line names."""

import json

import numpy as np
import pytest

import hftk
from hftk.data.readers import read_records
from hftk.report import labels

from ..helpers import DATA, MINILM, head, task_for


def _section(report, title):
    return next(s for s in report["sections"] if s["title"] == title)


def test_per_class_and_confusion_equal_sklearn_on_the_predictions(sst2_report):
    from sklearn.metrics import classification_report, confusion_matrix

    names = ["negative", "positive"]
    gold = [names[int(r["label"])] for r in sst2_report["rows"]]
    pred = [p["label"] for p in sst2_report["predictions"]]
    expected = classification_report(gold, pred, labels=names, output_dict=True, zero_division=0)
    table = _section(sst2_report["report"], "Per class")["tables"][0]
    assert table["head"] == ["class", "precision", "recall", "f1", "support"]
    for name, p, r, f, support in table["rows"]:
        assert [p, r, f, support] == pytest.approx(
            [expected[name][k] for k in ("precision", "recall", "f1-score", "support")]
        )
    assert sst2_report["report"]["metrics"] == sst2_report["metrics"]
    counts, share = _section(sst2_report["report"], "Confusion matrix")["tables"]
    matrix = confusion_matrix(gold, pred, labels=names)
    assert [row[1:] for row in counts["rows"]] == matrix.tolist()
    assert np.allclose([row[1:] for row in share["rows"]], matrix / matrix.sum(1, keepdims=True))


def test_calibration_error_and_length_buckets_recomputed(sst2_report, tok):
    report, predictions, rows = sst2_report["report"], sst2_report["predictions"], sst2_report["rows"]
    score = np.array([p["score"] for p in predictions])
    right = np.array([p["label"] == ["negative", "positive"][int(r["label"])] for p, r in zip(predictions, rows)])
    ece = 0.0
    for lo in np.arange(10) / 10:  # equal-width bins, the last one closed: 1.0 falls in 0.9-1.0
        inside = (score >= lo) & ((score < lo + 0.1) if lo < 0.9 else (score <= 1))
        if inside.any():
            ece += abs(right[inside].mean() - score[inside].mean()) * inside.sum() / len(score)
    calibration = _section(report, "Calibration")
    assert calibration["values"]["expected calibration error"] == pytest.approx(ece)
    assert sum(row[1] for row in calibration["tables"][0]["rows"]) == len(rows)
    lengths = [len(ids) for ids in tok([r["sentence"] for r in rows])["input_ids"]]
    by_length = _section(report, "By input length")
    buckets = by_length["tables"][0]["rows"]
    assert sum(b[1] for b in buckets) == len(rows)
    assert sum(b[3] for b in buckets) == by_length["values"]["inputs over the window"] == sum(n > 64 for n in lengths)
    first = buckets[0]  # "1–16": the shortest inputs and their accuracy
    short = np.array(lengths) <= 16
    assert first[0] == "1–16" and first[1] == short.sum() and first[2] == pytest.approx(right[short].mean())


def test_confident_errors_are_the_rows_their_lines_name(sst2_report, sst2_small):
    errors = _section(sst2_report["report"], "Most confident errors")["examples"]
    assert 0 < len(errors) <= labels.SHOWN_EXAMPLES
    lines = sst2_small["validation"].read_text(encoding="utf-8").splitlines()
    scores = [e["fields"]["score"] for e in errors]
    assert scores == sorted(scores, reverse=True)
    for e in errors:
        file, line = e["where"].rsplit(":", 1)
        assert file.endswith("dev.tsv")
        sentence, label = lines[int(line) - 1].rsplit("\t", 1)
        assert e["fields"]["text"] == sentence and e["fields"]["gold"] == ["negative", "positive"][int(label)]
        predicted = sst2_report["predictions"][int(line) - 2]  # line 1 is the header
        assert e["fields"]["predicted"] == predicted["label"] != e["fields"]["gold"]
        assert e["fields"]["score"] == pytest.approx(predicted["score"])
    names = ["negative", "positive"]
    wrong = [
        p["score"]
        for p, r in zip(sst2_report["predictions"], sst2_report["rows"])
        if p["label"] != names[int(r["label"])]
    ]
    assert scores[0] == pytest.approx(max(wrong))


def test_training_writes_the_report_and_the_card_carries_its_table(sst2_model):
    folder = sst2_model / "report"
    report = json.loads((folder / "report.json").read_text())
    saved = json.loads((sst2_model / "metrics.json").read_text())
    assert report["metrics"] == saved["eval"] and report["rows"] == saved["data"]["validation"]
    card = (sst2_model / "README.md").read_text()
    assert "[report/report.html](report/report.html)" in card
    negative = _section(report, "Per class")["tables"][0]["rows"][0]
    assert f"| negative | {negative[1]:.4f} | {negative[2]:.4f} | {negative[3]:.4f} | {negative[4]} |" in card


def test_an_earlier_report_is_replaced_and_nothing_else(sst2_model, sst2_small, tmp_path):
    folder = tmp_path / "report"
    hftk.evaluate(sst2_model, sst2_small["validation"], report=folder)
    small = head(sst2_small["validation"], tmp_path / "dev20.tsv", 20)
    hftk.evaluate(sst2_model, small, report=folder)
    assert json.loads((folder / "report.json").read_text())["rows"] == 20
    assert sorted(p.name for p in folder.iterdir()) == ["figures", "report.html", "report.json"]


def test_multi_label_report_equals_sklearn_at_each_threshold(tok, tmp_path):
    """GoEmotions dev rows (real multi-label gold), scored by untrained logits: the numbers, not the model."""
    from sklearn.metrics import precision_recall_fscore_support

    names = (DATA / "en/goemotions/labels.txt").read_text().split()
    data = {"column_names": ["text", "label", "id"], "label_delimiter": ","}
    recipe = {"task": "text-classification", "model": MINILM, "problem_type": "multi_label", "data": data}
    task = task_for(tok, {**recipe, "labels": dict(enumerate(names))})
    dev = head(DATA / "en/goemotions/dev.tsv", tmp_path / "dev.tsv", 200, header=False)
    records = read_records(dev, column_names=data["column_names"])
    features = task.encode(records, with_targets=True)
    outputs = list(np.random.default_rng(0).normal(-1.5, 1.5, size=(len(records), len(names))).astype(np.float32))
    sections = task.report(records, features, outputs)
    truth = np.array(features["labels"]) >= 0.5
    pred = 1 / (1 + np.exp(-np.stack(outputs))) >= task.cutoffs()
    p, r, f, s = precision_recall_fscore_support(truth, pred, average=None, zero_division=0)
    assert np.allclose([row[2:] for row in sections[0].tables[0].rows], np.stack([p, r, f, s], 1))
    assert sections[0].values["exact match"] == pytest.approx((pred == truth).all(1).mean())
    lines = dev.read_text(encoding="utf-8").splitlines()
    for example in sections[-1].examples:
        line = int(example.where.rsplit(":", 1)[1])
        text, gold, _ = lines[line - 1].split("\t")
        assert example.fields["text"] == text
        assert example.fields["gold"] == ", ".join(names[int(g)] for g in sorted(gold.split(","), key=int))


def test_regression_report_correlations_equal_scipy(tok, tmp_path):
    """STS-B dev pairs (real gold scores) against noisy predictions: correlations, errors, residual buckets."""
    from scipy.stats import pearsonr, spearmanr

    columns = {"text": "sentence1", "text_pair": "sentence2", "label": "score"}
    recipe = {"task": "text-classification", "model": MINILM, "problem_type": "regression"}
    task = task_for(tok, {**recipe, "data": {"columns": columns}})
    records = read_records(head(DATA / "en/stsb/dev.tsv", tmp_path / "dev.tsv", 150))
    features = task.encode(records, with_targets=True)
    gold = np.array(task.targets(records), dtype=float)
    pred = (gold + np.random.default_rng(1).normal(0, 0.8, len(gold))).astype(np.float32)
    sections = task.report(records, features, list(pred.reshape(-1, 1)))
    values = sections[0].values
    assert values["pearson"] == pytest.approx(pearsonr(gold, pred)[0], abs=1e-6)
    assert values["spearman"] == pytest.approx(spearmanr(gold, pred)[0], abs=1e-6)
    assert values["mae"] == pytest.approx(np.abs(pred - gold).mean(), abs=1e-5)
    assert sum(row[1] for row in sections[0].tables[0].rows) == len(gold)
    worst = sections[-1].examples[0]
    assert abs(worst.fields["error"]) == pytest.approx(np.abs(pred - gold).max(), abs=1e-5)
    assert set(worst.fields) == {"text", "text_pair", "gold", "predicted", "error"}
