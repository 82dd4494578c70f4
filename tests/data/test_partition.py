"""data.partition: the seeded held-out share (data.validation_fraction) and the folds cut by one rule."""

from __future__ import annotations

from collections import Counter

import pytest

from hftk.data.partition import Rule, hold_out
from hftk.data.records import Records
from hftk.errors import HftkError


def _records(labels: list[str]) -> Records:
    rows = [{"text": f"row {i}", "label": v} for i, v in enumerate(labels)]
    return Records("train.csv", rows, list(range(2, len(rows) + 2)), ["text", "label"])


def test_stratified_hold_out_keeps_each_label_share_within_one_row():
    labels = ["a"] * 37 + ["b"] * 11 + ["c"] * 5
    records = _records(labels)
    train, validation, how = hold_out(records, 0.2, 42, Rule(labels=labels))
    assert len(train) + len(validation) == len(records) and len(validation) == 11  # ceil(0.2 * 53)
    assert how.split == "stratified by label" and (how.train_rows, how.validation_rows) == (42, 11)
    held = Counter(row["label"] for row in validation.rows)
    for label, n in Counter(labels).items():
        assert abs(held[label] - n * len(validation) / len(records)) <= 1
    assert not {r["text"] for r in train.rows} & {r["text"] for r in validation.rows}
    # each side in file order, each row still at its own line
    lines = [int(validation.where(i).rsplit(":", 1)[1]) for i in range(len(validation))]
    assert lines == sorted(lines) and lines[0] == records.lines[records.rows.index(validation.rows[0])]


def test_same_seed_same_split_other_seed_another():
    labels = ["a", "b"] * 30
    cut = [hold_out(_records(labels), 0.25, seed, Rule(labels=labels))[1].rows for seed in (1, 1, 2)]
    assert cut[0] == cut[1] and cut[0] != cut[2]


def test_grouped_hold_out_puts_no_group_on_both_sides():
    groups = [f"context {i % 9}" for i in range(40)]
    train, validation, how = hold_out(_records(["x"] * 40), 0.3, 7, Rule(groups=groups, names=("question", "context")))
    index = {row["text"]: i for i, row in enumerate(_records(["x"] * 40).rows)}
    sides = [{groups[index[r["text"]]] for r in side.rows} for side in (train, validation)]
    assert sides[0] and sides[1] and not sides[0] & sides[1]
    assert how.split == "shuffled, questions of one context on one side"
    assert len(sides[1]) == 3  # the fraction is of the contexts: ceil(0.3 * 9)


@pytest.mark.parametrize(
    ("labels", "fraction", "message"),
    [
        (["a", "b"] * 10, 0.99, "20 rows; validation_fraction 0.99 leaves none to train on"),
        (["a"] * 10 + ["b"] * 10 + ["c"], 0.3, "label 'c' has 1 row"),
        (["a", "b", "c"] * 10, 0.05, "leaves 2 of 30 rows for validation, fewer than the 3 labels"),
    ],
)
def test_a_fraction_that_cannot_be_cut_says_why(labels, fraction, message):
    with pytest.raises(HftkError, match=message) as e:
        hold_out(_records(labels), fraction, 42, Rule(labels=labels))
    assert str(e.value).startswith("train.csv: ") and "\n" not in str(e.value)
