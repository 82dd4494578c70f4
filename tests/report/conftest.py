"""The SST-2 model's evaluation report, shared by the report's tests (numbers, page, browser)."""

import csv
import json

import pytest

import hftk


@pytest.fixture(scope="session")
def sst2_report(sst2_model, sst2_small, tmp_path_factory):
    """The SST-2 model's report on its 300 dev rows, and `hftk predict`'s answers on the same file."""
    tmp = tmp_path_factory.mktemp("report")
    metrics = hftk.evaluate(sst2_model, sst2_small["validation"], report=tmp / "report")
    hftk.predict(sst2_model, sst2_small["validation"], tmp / "predictions.jsonl")
    predictions = [json.loads(line) for line in (tmp / "predictions.jsonl").read_text().splitlines()]
    with open(sst2_small["validation"], encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    report = json.loads((tmp / "report" / "report.json").read_text())
    return {"folder": tmp / "report", "report": report, "metrics": metrics, "predictions": predictions, "rows": rows}
