"""A train split's rows cut by a seeded rule: into k folds (`hftk train --folds`) or into train and a held-out share
(`data.validation_fraction`).

Both cut the same way, as the task says (`Task.split_rule`): keeping each label's share (stratified), keeping a
group's rows together (a QA context's questions), or shuffling. scikit-learn's splitters draw, seeded, so every
run, resume and DDP rank of one recipe cuts the same rows.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hftk.data.records import Records
from hftk.errors import HftkError


@dataclass(frozen=True)
class Rule:
    """What ties rows when they are cut: each row's label (stratified) or group (kept together), or neither."""

    labels: list[Any] | None = None
    groups: list[Any] | None = None
    names: tuple[str, str] = ("row", "group")  # what a row and a group are called, e.g. question, context

    def how(self, together: str) -> str:
        """'stratified by label', 'shuffled, questions of one context {together}' or 'shuffled'."""
        if self.labels is not None:
            return "stratified by label"
        if self.groups is not None:
            return f"shuffled, {self.names[0]}s of one {self.names[1]} {together}"
        return "shuffled"

    def group_ids(self) -> list[int]:
        """Each row's group as an int (scikit-learn's group splitters want hashable, sortable ids)."""
        ids = {g: i for i, g in enumerate(dict.fromkeys(self.groups or ()))}
        return [ids[g] for g in self.groups or ()]


def assign_folds(
    rows: int, folds: int, seed: int, *, labels: list[Any] | None = None, groups: list[Any] | None = None
) -> list[np.ndarray]:
    """The held-out row indices of each fold (sorted): scikit-learn's StratifiedKFold when `labels` are given,
    GroupKFold when `groups` are (a group never spans two folds), KFold otherwise; shuffled with `seed`."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    index = np.zeros(rows)
    if labels is not None:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(index, labels)
    elif groups is not None:
        ids = Rule(groups=groups).group_ids()
        splits = GroupKFold(folds, shuffle=True, random_state=seed).split(index, groups=ids)
    else:
        splits = KFold(folds, shuffle=True, random_state=seed).split(index)
    return [np.sort(held) for _, held in splits]


@dataclass(frozen=True)
class HeldOut:
    """How `data.validation_fraction` drew the validation split: metrics.json, the card and `hftk check` say it."""

    fraction: float
    seed: int
    source: str  # the train split it was drawn from
    split: str  # Rule.how: stratified by label, grouped, shuffled
    train_rows: int
    validation_rows: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"drawn from {self.source}: validation_fraction {self.fraction:g}, seed {self.seed}, {self.split}; "
            f"train keeps {self.train_rows} rows"
        )


def hold_out(records: Records, fraction: float, seed: int, rule: Rule) -> tuple[Records, Records, HeldOut]:
    """(train, validation, how): a seeded `fraction` of `records` held out, each side in file order. Stratified, each
    label keeps its share on both sides; grouped, the fraction is of the groups, and no group is on both sides.

    Raises:
        HftkError: a side would be empty, or (stratified) hold fewer rows than there are labels, or a label has
            a single row.
    """
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit

    n = len(records)
    fix = "change data.validation_fraction or name a validation file (data.validation)"
    units, unit = (len(set(rule.groups)), f"{rule.names[1]}s") if rule.groups is not None else (n, "rows")
    held = math.ceil(fraction * units)  # as scikit-learn counts a float test_size
    if held >= units:
        raise HftkError(
            f"{records.source}: {units} {unit}; validation_fraction {fraction:g} leaves none to train on; {fix}"
        )
    index = np.zeros(n)
    if rule.labels is not None:
        _check_strata(records, rule.labels, fraction, held, fix)
        cut = StratifiedShuffleSplit(1, test_size=fraction, random_state=seed).split(index, rule.labels)
    elif rule.groups is not None:
        cut = GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(index, groups=rule.group_ids())
    else:
        cut = ShuffleSplit(1, test_size=fraction, random_state=seed).split(index)
    train, validation = (sorted(int(i) for i in side) for side in next(cut))
    how = HeldOut(fraction, seed, records.source, rule.how("on one side"), len(train), len(validation))
    return records.subset(train), records.subset(validation), how


def _check_strata(records: Records, labels: list[Any], fraction: float, held: int, fix: str) -> None:
    """What StratifiedShuffleSplit needs, said in the user's terms: two rows of every label and, on each side, at
    least one row per label."""
    counts = Counter(labels)
    rarest, count = min(counts.items(), key=lambda item: (item[1], str(item[0])))
    where = f"{records.source}: validation_fraction {fraction:g}"
    if count < 2:
        raise HftkError(
            f"{where} is stratified by label, and label {rarest!r} has 1 row (one for each side is the least); "
            f"add rows of it or name a validation file (data.validation)"
        )
    for side, rows in (("validation", held), ("train", len(labels) - held)):
        if rows < len(counts):
            raise HftkError(
                f"{where} leaves {rows} of {len(labels)} rows for {side}, fewer than the {len(counts)} labels each "
                f"side needs; {fix}"
            )
