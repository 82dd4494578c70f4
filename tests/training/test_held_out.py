"""data.validation_fraction for every task: the held-out split prepare draws, check reports, train records."""

from __future__ import annotations

import json
from collections import Counter

from hftk import train
from hftk.tasks import load_recipe
from hftk.training.check import check, format_report
from hftk.training.prepare import prepare

from ..helpers import DATA, MINILM, QUICK, sst2_recipe, sst2_sample


def _fraction(recipe: dict, fraction: float) -> dict:
    return {**recipe, "data": {**recipe["data"], "validation": None, "validation_fraction": fraction}}


def test_classification_holds_out_a_stratified_share_and_check_reports_it(tmp_path):
    recipe = _fraction(sst2_recipe(sst2_sample(tmp_path, 60, 8), tmp_path / "out"), 0.25)
    prepared = prepare(load_recipe(recipe))
    train_rows, held = (prepared.splits[s].whole().rows for s in ("train", "validation"))
    assert (len(train_rows), len(held)) == (45, 15)
    everything = Counter(r["label"] for r in train_rows + held)
    for label, n in everything.items():
        assert abs(Counter(r["label"] for r in held)[label] - n * 15 / 60) <= 1
    assert prepared.task.held_out.split == "stratified by label"
    other = prepare(load_recipe({**recipe, "seed": 7})).splits["validation"].whole().rows
    assert other != held and prepare(load_recipe(recipe)).splits["validation"].whole().rows == held
    report = check(recipe)
    assert report["validation"]["rows"] == 15 and report["train"]["rows"] == 45
    assert "validation_fraction 0.25, seed 42, stratified by label; train keeps 45 rows" in format_report(report)


def test_question_answering_puts_no_context_on_both_sides():
    recipe = {"task": "question-answering", "model": MINILM, "data": {"train": str(DATA / "en/squad/validation.json")}}
    prepared = prepare(load_recipe(_fraction(recipe, 0.2)))
    contexts = [{r["context"] for r in prepared.splits[s].whole().rows} for s in ("train", "validation")]
    assert contexts[0] and contexts[1] and not contexts[0] & contexts[1]
    assert prepared.task.held_out.split == "shuffled, questions of one context on one side"
    assert len(prepared.splits["train"]) + len(prepared.splits["validation"]) == 1174


def test_ner_holds_out_shuffled_sentences(tmp_path):
    rows = json.loads((DATA / "ja/ner_wikipedia/train.json").read_text(encoding="utf-8"))[:50]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    recipe = {"task": "token-classification", "model": MINILM, "data": {"train": str(path)}}
    prepared = prepare(load_recipe(_fraction(recipe, 0.1)))
    held = prepared.splits["validation"].whole()
    assert len(held) == 5 and len(prepared.splits["train"]) == 45
    assert prepared.task.held_out.split == "shuffled"  # a sentence holds several entity types: no one stratum
    assert {r["curid"] for r in held.rows} <= {r["curid"] for r in rows}
    assert held.where(0).startswith(f"{path}:")


def test_metrics_and_card_record_the_held_out_split(tmp_path):
    recipe = _fraction(sst2_recipe(sst2_sample(tmp_path, 40, 8), tmp_path / "out", training=QUICK), 0.2)
    result = train(recipe)
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert metrics["held_out"] == {
        "fraction": 0.2,
        "seed": 42,
        "source": str(tmp_path / "train.tsv"),
        "split": "stratified by label",
        "train_rows": 32,
        "validation_rows": 8,
    }
    assert metrics["data"] == {"train": 32, "validation": 8} and "eval_accuracy" in metrics["eval"]
    card = (result.output_dir / "README.md").read_text()
    assert "Validation: 0.2 of the training data (`train.tsv`) held out, stratified by label, seed 42" in card
