"""`hftk train RECIPE --folds K`: k-fold cross-validation of the train split (README: Cross-validation).

The split is read once and cut by the task's own rule (stratified by label, questions of one context together, or
shuffled; seeded). Fold k is an ordinary `hftk train` of the recipe on the other folds, scored on fold k, from JSON
Lines files in OUTPUT/data/fold-k/, so everything `hftk train` checks and writes holds for each fold. What the whole
split teaches the task is fixed for every fold (same head, same metrics). The held-out fold chooses no checkpoint
unless the recipe asks (then the card says the scores are optimistic). metrics.json is written after every fold:
`--resume` skips the folds it holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hftk.config.recipe import Recipe
from hftk.data.partition import assign_folds
from hftk.data.records import Records
from hftk.errors import HftkError
from hftk.files import atomic_write_text
from hftk.runs.folder import RunsFolder, trained_with
from hftk.runs.report import FoldsResult, aggregate, folds_card, main_first, short
from hftk.tasks.metrics import shown as metric_text
from hftk.training.output import remove_whole
from hftk.training.prepare import Prepared, prepare
from hftk.training.train import train

logger = logging.getLogger("hftk")

KEEP = ("all", "none")
METRICS = "metrics.json"
DATA = "data"
_FOLD = re.compile(r"^fold-\d+$")


@dataclass
class FoldPlan:
    """Which train rows each fold holds out, and how they were drawn."""

    held_out: list[np.ndarray]  # row indices of each fold, sorted
    how: str  # "stratified by label", "shuffled", "shuffled, questions of one context together"
    rows: int

    def train_rows(self, k: int) -> np.ndarray:
        """Rows fold `k` (0-based) trains on: every row the fold does not hold out, in file order."""
        mask = np.ones(self.rows, dtype=bool)
        mask[self.held_out[k]] = False
        return np.flatnonzero(mask)


def cross_validate(
    recipe: Recipe | str | Path | dict[str, Any],
    *,
    folds: int = 5,
    keep: str = "all",
    overrides: dict[str, Any] | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> FoldsResult:
    """Train one model per fold of the recipe's train split and score it on the fold it did not see.

    Args:
        recipe: a Recipe, a YAML path or a dict.
        folds: K, at least 2 (and, stratified, at most the rows of the rarest label).
        keep: "all" keeps each fold's model in OUTPUT/fold-k; "none" keeps only the scores.
        overrides: dotted keys set before validation, for every fold.
        output_dir: where the cross-validation goes (default: the recipe's output_dir).
        resume: continue a killed cross-validation: finished folds are skipped, the unfinished one continues
            from its last checkpoint.
        overwrite: replace a cross-validation (or a run) in output_dir.
    """
    if keep not in KEEP:
        raise HftkError(f"--keep {keep}: choose all (every fold's model) or none (only the scores)")
    if folds < 2:
        raise HftkError(f"--folds {folds}: cross-validation needs at least 2 folds; give --folds 5 (or drop it)")
    recipe = FoldsFolder.begin(recipe, overrides, output_dir, resume=resume, overwrite=overwrite)
    if recipe.data.streaming:
        raise HftkError(
            "recipe: data.streaming: --folds reads the train split whole (it is for small data sets); "
            "remove data.streaming"
        )
    folder = FoldsFolder(Path(recipe.output_dir))
    folder.check(resume=resume, overwrite=overwrite)
    prepared = prepare(_train_only(recipe), splits=("train",))  # every row checked before any fold trains
    plan = plan_folds(prepared, folds)
    with folder.held(resume=resume, overwrite=overwrite):
        run = _Run(folder, recipe, prepared, plan, keep)
        run.start(resume=resume)
        for k in range(folds):
            run.fold(k, resume=resume)
        return run.finish()


class FoldsFolder(RunsFolder):
    """A cross-validation's folder: fold-k/ models, data/ files, metrics.json (with per_fold) and the card."""

    marker, what, command = METRICS, "a cross-validation", "hftk train --folds"
    noun, purpose, serial = "run", "cross-validate", "--folds trains its folds one after another in one process"

    def saved(self) -> dict[str, Any] | None:
        """metrics.json when it is a cross-validation's (it has per_fold), else None."""
        try:
            saved = json.loads((self.out / METRICS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return saved if isinstance(saved, dict) and isinstance(saved.get("per_fold"), list) else None

    def found(self) -> bool:
        return self.saved() is not None

    def missing(self) -> str:
        return f"{METRICS} with per_fold is missing"

    def ours(self) -> list[Path]:
        return [
            path
            for path in self.out.iterdir()
            if ((path.is_dir() or path.is_symlink()) and (_FOLD.match(path.name) or path.name == DATA))
            or path.name in (METRICS, "README.md")
        ]


# What a resumed cross-validation may change beyond folder.UNMEASURED: what its folds do not use.
# Settings a fold does not train with: its own data files stand in for them.
NOT_RECORDED = ("search", "data.validation", "data.test", "data.validation_fraction")


# ------------------------------------------------------------------------------------------ the folds


def plan_folds(prepared: Prepared, folds: int) -> FoldPlan:
    """The folds of `prepared`'s train split: stratified for single-label classification, by context for QA.

    Raises:
        HftkError: more folds than rows (contexts, or rows of the rarest label when stratified).
    """
    records, task, seed = prepared.splits["train"].whole(), prepared.task, prepared.recipe.seed
    where = f"--folds {folds}: train ({records.source})"
    rule = task.split_rule(records)
    how = rule.how("in the same fold")
    if rule.labels is not None:
        rarest, count = min(Counter(rule.labels).items(), key=lambda item: (item[1], item[0]))
        if count < folds:
            raise HftkError(
                f"{where} has {count} row(s) of label {rarest!r}; stratified folds need at least {folds} rows of "
                "every label: lower --folds or add rows"
            )
    elif rule.groups is not None:
        row, group = rule.names
        if len(set(rule.groups)) < folds:
            raise HftkError(
                f"{where} has {len(set(rule.groups))} distinct {group}(s), and the {row}s of one {group} stay in one "
                "fold: lower --folds or add rows"
            )
    elif len(records) < folds:
        raise HftkError(f"{where} has {len(records)} row(s); every fold needs one: lower --folds or add rows")
    held = assign_folds(len(records), folds, seed, labels=rule.labels, groups=rule.groups)
    return FoldPlan(held, how, len(records))


def _train_only(recipe: Recipe) -> Recipe:
    """The recipe reading only its train split, whole: no validation drawn from it (validation_fraction) and
    nothing that needs a validation split yet."""
    drop: dict[str, Any] = {"validation": None, "test": None, "validation_fraction": None}
    return recipe.model_copy(update={"data": recipe.data.model_copy(update=drop), "early_stopping_patience": None})


def _fold_overrides(recipe: Recipe, train_file: Path, held_out_file: Path, keep: str) -> dict[str, Any]:
    """What a fold's run changes in the recipe: its data files (JSON Lines: no hub, no CSV header names, no
    held-out share), and the model it keeps."""
    data: dict[str, Any] = {
        "data.train": str(train_file),
        "data.validation": str(held_out_file),
        "data.test": None,
        "data.hub": None,
        "data.hub_config": None,
        "data.column_names": None,
        "data.validation_fraction": None,
    }
    if not _chooses_on_held_out(recipe):
        data["training.load_best_model_at_end"] = False  # the last step: the held-out fold chooses nothing
    if keep == "none":
        data["keep_checkpoints"] = False
    return data


def _chooses_on_held_out(recipe: Recipe) -> bool:
    """Whether the recipe itself asks for the best checkpoint (or early stopping), which the held-out fold decides."""
    return bool(recipe.training.get("load_best_model_at_end", recipe.early_stopping_patience is not None))


def write_rows(records: Records, index: np.ndarray, path: Path) -> None:
    """The rows at `index` as JSON Lines, keyed by the columns the recipe maps (a value JSON cannot hold, such as a
    date, as its text)."""
    lines = (json.dumps(records.rows[i], ensure_ascii=False, default=str) for i in index)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def _fingerprint(records: Records, plan: FoldPlan, seed: int) -> str:
    """The train rows and their folds: a resumed cross-validation must hold out the same rows in each fold."""
    digest = hashlib.sha256(f"{len(plan.held_out)} {seed} {plan.how}\n".encode())
    for row in records.rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
    for held in plan.held_out:
        digest.update(held.astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


class _Run:
    """One cross-validation's folder: the folds trained (or skipped), metrics.json after each, the card at the end."""

    def __init__(self, folder: FoldsFolder, recipe: Recipe, prepared: Prepared, plan: FoldPlan, keep: str) -> None:
        self.folder, self.out, self.recipe, self.prepared, self.plan, self.keep = (
            folder,
            folder.out,
            recipe,
            prepared,
            plan,
            keep,
        )
        self.records, self.k = prepared.splits["train"].whole(), len(plan.held_out)  # written into each fold's files
        self.fixed = prepared.task.learnt_fields()  # what the whole train split teaches, the same for every fold
        self.fingerprint = _fingerprint(self.records, plan, recipe.seed)
        self.trained_with = trained_with(recipe, NOT_RECORDED)  # every fold's settings, but for its own data files
        self.optimistic = _chooses_on_held_out(recipe)
        self.done: dict[int, dict[str, Any]] = {}  # fold number (1-based) -> its per_fold entry
        self.device: dict[str, Any] = {}

    def start(self, *, resume: bool) -> None:
        saved = self.folder.saved() if resume else None
        if saved is not None:
            if saved.get("folds") != self.k:
                raise HftkError(
                    f"{self.out}: the cross-validation there has {saved.get('folds')} folds; resume with --folds "
                    f"{saved.get('folds')}, or start anew with --overwrite"
                )
            mixed = "was trained with other settings ({shown}), and one mean ± sd cannot mix them"
            self.folder.same_settings(saved.get("trained_with"), self.trained_with, mixed=mixed)
            if saved.get("fingerprint") != self.fingerprint:
                raise HftkError(
                    f"{self.out}: the train rows (or the seed) differ from the cross-validation there, so its folds "
                    "would hold out other rows; resume with the same recipe, or start anew with --overwrite"
                )
            self.done = {entry["fold"]: entry for entry in saved["per_fold"]}
            self.device = saved.get("device") or {}
        self.out.mkdir(parents=True, exist_ok=True)
        self.write_metrics()  # from here on the folder is a cross-validation that --resume continues

    def fold(self, k: int, *, resume: bool) -> None:
        """Train and score fold k (0-based), unless its scores are stored."""
        number = k + 1
        if number in self.done:
            logger.warning("hftk: fold %d of %d finished before; skipped", number, self.k)
            return
        train_rows, held = self.plan.train_rows(k), self.plan.held_out[k]
        files = self.out / DATA / f"fold-{number}"
        write_rows(self.records, train_rows, files / "train.jsonl")
        write_rows(self.records, held, files / "held_out.jsonl")
        folder = self.out / f"fold-{number}"
        where = f"fold {number} of {self.k}"
        logger.warning(
            "hftk: %s: train on %d rows, score on %d held out -> %s", where, len(train_rows), len(held), folder
        )
        started = time.perf_counter()
        again = resume and folder.exists()  # killed during this fold: continue from its last checkpoint
        overrides = _fold_overrides(self.recipe, files / "train.jsonl", files / "held_out.jsonl", self.keep)
        result = train(
            self.recipe, overrides=self.fixed | overrides, output_dir=folder, resume=again, overwrite=not again
        )
        scores = result.metrics.get("eval") or {}
        self.device = self.device or result.metrics.get("device", {})
        self.done[number] = {
            "fold": number,
            "train_rows": len(train_rows),
            "held_out_rows": len(held),
            "global_step": result.global_step,
            "seconds": round(time.perf_counter() - started, 1),
            "folder": folder.name if self.keep == "all" else None,
            "eval": scores,
        }
        self.write_metrics()  # the fold's scores are stored before its folder can go
        if self.keep == "none":
            remove_whole([folder])
        shown = main_first(aggregate([f["eval"] for f in self.done.values()], self.k), self.metric)[:4]
        logger.warning(
            "hftk: %s: %s", where, ", ".join(f"{short(m)} {metric_text(scores, m)}" for m in shown if m in scores)
        )

    def finish(self) -> FoldsResult:
        summary = self.write_metrics()
        card = folds_card(summary, self.recipe, _train_only(self.recipe), self.prepared.task, self.out, self.optimistic)
        atomic_write_text(self.out / "README.md", card)
        if self.keep == "none":
            remove_whole([self.out / DATA])
        seconds = round(sum(f["seconds"] for f in summary["per_fold"]), 1)
        return FoldsResult(self.out, self.k, self.metric, summary["metrics"], summary["per_fold"], seconds)

    @property
    def metric(self) -> str:
        return f"eval_{self.prepared.task.main_metric}"

    def write_metrics(self) -> dict[str, Any]:
        """metrics.json as the folds stand: written after each, so --resume knows which are done."""
        per_fold = [self.done[n] for n in sorted(self.done)]
        summary = {
            "folds": self.k,
            "complete": len(per_fold) == self.k,
            "keep": self.keep,
            "split": self.plan.how,
            "seed": self.recipe.seed,
            "rows": self.plan.rows,
            "source": self.records.source,
            "fingerprint": self.fingerprint,
            "trained_with": self.trained_with,
            "main_metric": self.metric,
            "scored_on": "each fold's held-out part; the recipe's validation and test splits are not used",
            "model": "the best checkpoint by the held-out fold (optimistic)"
            if self.optimistic
            else "each fold's last step",
            "metrics": aggregate([f["eval"] for f in per_fold], self.k),
            "per_fold": per_fold,
            "device": self.device,
        }
        atomic_write_text(self.out / METRICS, json.dumps(summary, indent=2) + "\n")
        return summary
