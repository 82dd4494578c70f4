"""The NER report (hftk/report/spans.py through the token-classification adapter): planted errors of every kind
on a small CoNLL file, counted, classed and shown at their token's line; the per-type table is seqeval's on the same
tags; a trained model's report page and card."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import hftk
from hftk import load_recipe
from hftk.report.page import shown
from hftk.report.spans import compare, marked
from hftk.tasks import get_task

from ..helpers import MINILM, QUICK, ROOT, SHARED
from ..tasks.test_token_classification import conll_head

# Word-level gold tags and the predictions planted for them: one error of each kind, two right entities.
SENTENCES = [
    # Paris: LOC read as ORG (wrong type)
    (
        ["Angela", "Merkel", "visited", "Paris", "."],
        ["B-PER", "I-PER", "O", "B-LOC", "O"],
        ["B-PER", "I-PER", "O", "B-ORG", "O"],
    ),
    # European Union: only Union found (wrong boundary); Berlin: not found (missed)
    (
        ["The", "European", "Union", "met", "in", "Berlin", "."],
        ["O", "B-ORG", "I-ORG", "O", "O", "B-LOC", "O"],
        ["O", "O", "B-ORG", "O", "O", "O", "O"],
    ),
    # lives: MISC out of nothing (spurious); London: LOC read as PER over "in London" (wrong type and boundary)
    (
        ["John", "lives", "in", "London", "."],
        ["B-PER", "O", "O", "B-LOC", "O"],
        ["B-PER", "B-MISC", "B-PER", "I-PER", "O"],
    ),
]  # fmt: skip


def write_conll(path, sentences, column=1):
    lines = ["-DOCSTART- O", ""]
    for words, *tags in sentences:
        lines += [f"{w} {t}" for w, t in zip(words, tags[column - 1])] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def planted(task, features, word_tags):
    """Outputs whose argmax gives each word's planted tag on its first token and I- of it on the others."""
    outs = []
    for f, word_ids in enumerate(features["word_ids"]):
        tags = word_tags[features["example"][f]]
        a = np.zeros((len(word_ids), len(task.names)), dtype=np.float32)
        for k, w in enumerate(word_ids):
            if w < 0:
                continue
            tag = tags[w]
            if tag != "O" and k > 0 and word_ids[k - 1] == w:
                tag = "I-" + tag[2:]
            a[k, task.names.index(tag)] = 5.0
        outs.append(a)
    return outs


def test_compare_classes_each_kind():
    gold = [(0, 5, "PER"), (10, 15, "LOC"), (20, 30, "ORG"), (40, 45, "LOC"), (50, 60, "ORG")]
    pred = [(0, 5, "PER"), (10, 15, "ORG"), (25, 30, "ORG"), (38, 45, "PER"), (70, 72, "MISC")]
    exact, errors = compare(gold, pred)
    assert exact == [(0, 5, "PER")]
    assert [(k, g, p) for k, g, p, _ in errors] == [
        ("wrong type", (10, 15, "LOC"), (10, 15, "ORG")),
        ("wrong boundary", (20, 30, "ORG"), (25, 30, "ORG")),
        ("wrong type and boundary", (40, 45, "LOC"), (38, 45, "PER")),
        ("spurious", None, (70, 72, "MISC")),
        ("missed", (50, 60, "ORG"), None),
    ]
    # A gold span split in two: two boundary errors, the gold span not missed as well.
    _, errors = compare([(0, 10, "ORG")], [(0, 4, "ORG"), (5, 10, "ORG")])
    assert [k for k, *_ in errors] == ["wrong boundary", "wrong boundary"]


def test_marked_segments_overlap_and_cut():
    text = "The European Union met in Berlin ."
    assert marked(text, [(4, 18)], [(13, 18)]) == [
        ("The ", None), ("European ", "gold"), ("Union", "both"), (" met in Berlin .", None)
    ]  # fmt: skip
    long = "x" * 300 + " Paris " + "y" * 300
    segments = marked(long, [(301, 306)], [], around=10)
    assert segments[0] == ("…", None) and segments[-1] == ("…", None)
    assert "".join(t for t, _ in segments[1:-1]) == long[291:316] and ("Paris", "gold") in segments


def test_planted_errors_are_counted_classed_and_located(tok, tmp_path):
    data = write_conll(tmp_path / "dev.txt", SENTENCES)
    recipe = load_recipe(
        {"task": "token-classification", "model": MINILM, "data": {}, "labels": ["LOC", "MISC", "ORG", "PER"]}
    )
    task = get_task("token-classification")(recipe, tok)
    records = task.read(data)
    features = task.encode(records, with_targets=True)
    outputs = planted(task, features, [s[2] for s in SENTENCES])
    sections = task.report(records, features, outputs)
    per_type, counts, shown = sections

    from seqeval.metrics import classification_report

    want = classification_report(
        [s[1] for s in SENTENCES], [s[2] for s in SENTENCES], output_dict=True, zero_division=0
    )
    from seqeval.metrics.sequence_labeling import get_entities

    found = Counter(typ for s in SENTENCES for typ, *_ in get_entities(s[2]))
    assert found == {"PER": 3, "ORG": 2, "MISC": 1}
    found["micro avg"] = sum(found.values())
    table = per_type.tables[0]
    assert table.head == ["type", "precision", "recall", "f1", "support", "predicted"]
    for typ, precision, recall, f1, support, predicted in table.rows:
        w = want[typ]
        # seqeval's numbers, but undefined (None) where it divides 0 by 0: LOC predicted never, MISC never gold
        assert precision == (None if typ == "LOC" else pytest.approx(w["precision"]))
        assert recall == (None if typ == "MISC" else pytest.approx(w["recall"]))
        assert (f1, support) == (pytest.approx(w["f1-score"]), w["support"])
        assert predicted == (None if typ in ("macro avg", "weighted avg") else found[typ])
    assert [r[0] for r in table.rows] == ["LOC", "MISC", "ORG", "PER", "micro avg", "macro avg", "weighted avg"]
    metrics = task.score(records, features, outputs)
    assert metrics["f1_PER"] == pytest.approx(want["PER"]["f1-score"])

    kinds = counts.tables[0]
    assert kinds.head == [
        "type",
        "correct",
        "wrong type",
        "wrong boundary",
        "wrong type and boundary",
        "missed",
        "spurious",
    ]
    assert kinds.rows[-1] == ["all", 2, 1, 1, 1, 1, 1]
    by_type = {r[0]: r[1:] for r in kinds.rows}
    assert by_type["LOC"] == [0, 1, 0, 1, 1, 0] and by_type["MISC"] == [0, 0, 0, 0, 0, 1]
    # correct spans per type are seqeval's true positives
    for typ in ("LOC", "ORG", "PER"):
        assert by_type[typ][0] == round(want[typ]["recall"] * want[typ]["support"])

    lines = data.read_text().splitlines()
    got = {ex.fields["kind"]: ex for ex in shown.examples}
    assert set(got) == {"wrong type", "wrong boundary", "wrong type and boundary", "missed", "spurious"}
    for kind, word in [
        ("wrong type", "Paris"),
        ("wrong boundary", "European"),
        ("missed", "Berlin"),
        ("spurious", "lives"),
        ("wrong type and boundary", "in"),
    ]:
        where = got[kind].where
        path, line = where.rsplit(":", 1)
        assert path == str(data) and lines[int(line) - 1].split()[0] == word, (kind, where)
    ex = got["wrong boundary"]
    assert ex.marked == [("The ", None), ("European ", "gold"), ("Union", "both"), (" met in Berlin .", None)]
    assert ex.fields["gold"] == "European Union [ORG]" and ex.fields["predicted"] == "Union [ORG]"
    assert got["wrong type and boundary"].marked[1:3] == [("in ", "predicted"), ("London", "both")]
    assert got["missed"].fields["score"] is None and got["spurious"].fields["score"] > 0.9


def test_trained_model_report_page_card_and_evaluate(tmp_path):
    """A CoNLL model after a few steps: the validation's report beside it agrees with its metrics.json, the card
    carries the per-type table, and `hftk evaluate --report` on the same file gives the same numbers, every
    example at its entity's first token's line."""
    conll = SHARED / "en/conll2003"
    if not conll.is_dir():
        pytest.skip(f"CoNLL-2003 is not shipped (licence); not found at {conll}")
    valid = conll_head(conll / "valid.txt", tmp_path / "valid.txt", 24)
    out = tmp_path / "ner"
    overrides = {
        "data.train": str(conll_head(conll / "train.txt", tmp_path / "train.txt", 40)),
        "data.validation": str(valid),
        "max_length": 32,
        "stride": 8,
        "training.learning_rate": 1e-5,  # the new head stays near its random start: errors of every kind
        "training.warmup_steps": 0,
        **{f"training.{k}": v for k, v in QUICK.items()},
        "training.load_best_model_at_end": False,
    }
    result = hftk.train(ROOT / "recipes/conll2003-minilm.yaml", overrides=overrides, output_dir=out)
    saved = json.loads((out / "report/report.json").read_text(encoding="utf-8"))
    table = saved["sections"][0]["tables"][0]
    assert table["head"] == ["type", "precision", "recall", "f1", "support", "predicted"]
    for typ, *_, f1, _support, _predicted in table["rows"]:
        if not typ.endswith(" avg"):
            assert f1 == pytest.approx(result.metrics["eval"][f"eval_f1_{typ}"])
    micro = next(r for r in table["rows"] if r[0] == "micro avg")
    assert micro[1:4] == pytest.approx([result.metrics["eval"][f"eval_{k}"] for k in ("precision", "recall", "f1")])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "**Precision, recall and F1 by entity type (seqeval)**" in card
    assert "| " + " | ".join(map(shown, micro)) + " |" in card

    report = tmp_path / "rep"
    from hftk.cli import main

    assert main(["evaluate", str(out), "--data", str(valid), "--report", str(report)]) == 0
    again = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert again["sections"][0]["tables"][0]["rows"] == [
        [r[0], *map(pytest.approx, r[1:4]), *r[4:]] for r in table["rows"]
    ]
    counts = {r[0]: r for r in again["sections"][1]["tables"][0]["rows"]}
    for typ, _, recall, _, support, _ in table["rows"]:
        if not typ.endswith(" avg"):
            assert counts[typ][1] == round(recall * support)  # correct spans: seqeval's true positives
    lines = valid.read_text(encoding="utf-8").splitlines()
    examples = again["sections"][2]["examples"]
    assert examples and (report / "report.html").is_file() and (report / "figures/span_errors.svg").is_file()
    for ex in examples:
        path, line = ex["where"].rsplit(":", 1)
        first = min(
            (ex["fields"][k] for k in ("gold", "predicted") if ex["fields"][k]),
            key=lambda name: ex["fields"]["text"].find(name.rsplit(" [", 1)[0]),
        )
        assert path == str(valid) and first.split()[0].startswith(lines[int(line) - 1].split()[0])
