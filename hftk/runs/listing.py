"""`hftk runs`: every run under a folder in one table, and two runs side by side (README: Looking at a model).

A run is read from what its folder says about itself, never from the process that trained it: recipe.yaml (the
settings), metrics.json (scores, rows, steps, time). A cross-validation (metrics.json with per_fold) and a study
(study.db, its model in best/) are one row each; their fold and trial folders are theirs, not listed again. A
damaged file costs its row the cells it would fill, with one warning naming it, never the table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hftk.config.recipe import Recipe
from hftk.errors import HftkError
from hftk.files import CHECKPOINTS
from hftk.inference.exported import is_exported
from hftk.runs.folder import differing_settings, measured
from hftk.runs.folds import FoldsFolder
from hftk.runs.report import main_first, metric_names, score, short, text_table
from hftk.tasks import get_task, load_recipe
from hftk.tasks.metrics import undefined, why_undefined

logger = logging.getLogger("hftk")

RECIPE, METRICS = "recipe.yaml", "metrics.json"
# Settings with a column of their own in the table (a comparison of two runs lists them with the others).
_OWN_COLUMNS = ("task", "model", "data.train")


@dataclass
class Run:
    """One row: what a run's folder says about the model it holds."""

    folder: Path
    name: str  # as the table shows it: the path below the folder listed, or as given to --compare
    kind: str = "train"  # train, cross-validation, tune or export
    note: str = ""  # what the kind adds: "3 folds", "best of 8 trials"
    task: str | None = None
    model: str | None = None
    data: str | None = None  # the train file's name; a hub dataset's id and split
    rows: dict[str, int] = field(default_factory=dict)  # rows per split (a cross-validation: train only)
    settings: dict[str, Any] | None = None  # `measured` dotted settings; None while recipe.yaml is unreadable
    metrics: dict[str, Any] = field(default_factory=dict)  # eval_ and test_ scores (a cross-validation: means)
    main_metric: str | None = None  # what chose the best checkpoint, e.g. eval_accuracy
    greater_is_better: bool = True  # of the main metric
    best_step: int | None = None
    steps: int | None = None
    seconds: float | None = None
    date: datetime | None = None  # when metrics.json was written
    problems: list[str] = field(default_factory=list)  # a damaged file each, one line naming it
    unreadable: set[str] = field(default_factory=set)  # RECIPE, METRICS: their cells show "?"
    differs: dict[str, Any] = field(default_factory=dict)  # the settings that set it apart, filled by its table

    def value(self, metric: str | None) -> Any:
        return self.metrics.get(metric) if metric else None

    def record(self) -> dict[str, Any]:
        """Every column, for --json: numbers as numbers, the settings that differ by dotted key."""
        return {
            "run": self.name,
            "path": str(self.folder),
            "kind": self.kind,
            "note": self.note,
            "task": self.task,
            "model": self.model,
            "data": self.data,
            "rows": self.rows,
            "settings": self.differs,
            "main_metric": self.main_metric,
            "value": self.value(self.main_metric),
            "best_step": self.best_step,
            "steps": self.steps,
            "seconds": self.seconds,
            "date": self.date.astimezone().isoformat(timespec="seconds") if self.date else None,
            "metrics": self.metrics,
            "problems": self.problems,
        }


@dataclass
class RunsTable:
    """`hftk runs`' rows, and the settings that tell them apart."""

    folder: Path
    runs: list[Run]
    settings: list[str] = field(default_factory=list)  # dotted keys whose values differ between the runs
    sort: str | None = None  # the metric the rows are ordered by, as metrics.json names it

    def __post_init__(self) -> None:
        known = [run for run in self.runs if run.settings is not None]
        differing = differing_settings([run.settings or {} for run in known])
        self.settings = [key for key in differing if key not in _OWN_COLUMNS]
        for key in self.settings:
            for run, value in zip(known, differing[key]):
                run.differs[key] = value

    def order(self, metric: str) -> None:
        """Best first by `metric` (`accuracy`, `eval_accuracy`, `test_f1`): highest first, lowest first for a
        loss or a task's lower-is-better main metric (perplexity); runs without a value last, by name.

        Raises:
            HftkError: no run has the metric; the message lists those they have.
        """
        names = {m for run in self.runs for m in metric_names(run.metrics)}
        key = metric if metric in names else f"eval_{metric}"
        if key not in names:
            there = ", ".join(sorted(short(m) for m in names))
            if not there:
                raise HftkError(
                    f"--sort {metric}: no run under {self.folder} has evaluation metrics (each trained without a "
                    "validation split); drop --sort"
                )
            raise HftkError(f"--sort {metric}: no run under {self.folder} has it; choose one of {there}")
        kind = key.split("_", 1)[-1]
        lower = kind == "loss" or any(
            run.main_metric and run.main_metric.split("_", 1)[-1] == kind and not run.greater_is_better
            for run in self.runs
        )

        def rank(run: Run) -> tuple[bool, float, str]:
            value = run.metrics.get(key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return True, 0.0, run.name
            return False, value if lower else -value, run.name

        self.runs.sort(key=rank)
        self.sort = key

    def table(self) -> str:
        """The rows as an aligned table for the console: a metric shared by every run gets its name as the
        column's head, else each cell names its own."""
        mains = {run.main_metric for run in self.runs if run.main_metric}
        shared = next(iter(mains)) if len(mains) == 1 else None
        extra = self.sort if self.sort and self.sort != shared else None
        head = [
            "run",
            "task",
            "model",
            "data",
            "rows",
            *(key.removeprefix("training.") for key in self.settings),
            short(shared) if shared else "main metric",
            *([short(extra)] if extra else []),
            "best step",
            "time",
            "date",
        ]
        lines = [self._cells(run, shared, extra) for run in self.runs]
        return "\n".join(text_table(head, lines))

    def _cells(self, run: Run, shared: str | None, extra: str | None) -> list[str]:
        recipe = "?" if RECIPE in run.unreadable else "-"
        metrics = "?" if METRICS in run.unreadable else "-"
        main = _metric_cell(run, run.main_metric, metrics)
        if not shared and run.main_metric:
            main = f"{short(run.main_metric)} {main}"
        steps = metrics if run.steps is None else f"{run.steps} (last)"
        return [
            run.name + _kind(run),
            run.task or recipe,
            _short_path(run.model) if run.model else recipe,
            run.data or recipe,
            "/".join(str(n) for n in run.rows.values()) or metrics,
            *(_setting_cell(key, run.differs[key]) if key in run.differs else recipe for key in self.settings),
            main,
            *([_metric_cell(run, extra, metrics)] if extra else []),
            str(run.best_step) if run.best_step is not None else steps,
            _duration(run.seconds) if run.seconds is not None else metrics,
            run.date.strftime("%Y-%m-%d %H:%M") if run.date else metrics,
        ]

    def records(self) -> list[dict[str, Any]]:
        """One object per row (every column, and each run's every metric), for --json."""
        return [run.record() for run in self.runs]


@dataclass
class Comparison:
    """Two runs side by side: the settings that differ, and every metric of either with B minus A."""

    a: Run
    b: Run
    settings: dict[str, list[Any]] | None  # dotted key -> [A's, B's]; None when a recipe.yaml is unreadable
    metrics: list[str]  # every metric either has, the main one first

    def difference(self, metric: str) -> float | None:
        first, second = self.a.metrics.get(metric), self.b.metrics.get(metric)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (first, second)):
            return None
        return second - first  # type: ignore[operator]

    def table(self) -> str:
        """Which run is A and which B, then the two tables, for the console."""
        lines = [f"A: {self.a.folder}{_kind(self.a)}", f"B: {self.b.folder}{_kind(self.b)}", ""]
        if self.settings is None:
            lines.append("settings: unknown (a recipe.yaml is unreadable; see the warning above)")
        elif not self.settings:
            lines.append("settings: the same")
        else:
            rows = [[key, *(_value(v) for v in values)] for key, values in self.settings.items()]
            lines += text_table(["setting", "A", "B"], rows)
        lines.append("")
        if not self.metrics:
            lines.append("metrics: neither run has evaluation metrics")
        else:
            rows = [
                [
                    short(m),
                    *(_metric_cell(run, m, "-") for run in (self.a, self.b)),
                    "-" if (d := self.difference(m)) is None else f"{d:+.4f}",
                ]
                for m in self.metrics
            ]
            lines += text_table(["metric", "A", "B", "B - A"], rows)
        return "\n".join(lines)

    def record(self) -> dict[str, Any]:
        """For --json: both runs' names, each differing setting and each metric with its difference."""
        return {
            "a": self.a.name,
            "b": self.b.name,
            "settings": None
            if self.settings is None
            else [{"setting": key, "a": a, "b": b} for key, (a, b) in self.settings.items()],
            "metrics": [
                {"metric": m, "a": self.a.metrics.get(m), "b": self.b.metrics.get(m), "difference": self.difference(m)}
                for m in self.metrics
            ],
        }


def list_runs(folder: str | Path = "runs", *, sort: str | None = None) -> RunsTable:
    """Every run below `folder` in one table, so the best of many, and what set it apart, show at once.

    Args:
        folder: searched recursively; what a run holds (checkpoints, folds, trials) is not searched.
        sort: an evaluation metric (`accuracy`, `eval_accuracy`, `test_f1`) to order the runs by, best first;
            None keeps them by path.

    Raises:
        HftkError: no such folder, no run in it, or a `sort` metric no run has.
    """
    root = Path(folder)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise HftkError(f"{root}: {what}; name the folder your runs are in (hftk runs FOLDER)")
    runs = [read_run(path, _below(path, root)) for path in find_runs(root)]
    if not runs:
        raise HftkError(f"no hftk runs under {root}; train one with hftk train RECIPE")
    _warn(runs)
    table = RunsTable(root, runs)
    if sort is not None:
        table.order(sort)
    return table


def compare_runs(a: str | Path, b: str | Path, *, folder: str | Path = "runs") -> Comparison:
    """Two runs' recipe and metric differences, to see what one change did.

    Args:
        a, b: run folders: a path, or a name as `hftk runs` shows it (below `folder`).
        folder: where names that are not paths from here are looked for.

    Raises:
        HftkError: a folder that does not exist or holds no run.
    """
    first, second = (read_run(locate(name, folder), str(name)) for name in (a, b))
    _warn([first, second])
    settings = None
    if first.settings is not None and second.settings is not None:
        settings = differing_settings([first.settings, second.settings])
    both = first.metrics | {k: v for k, v in second.metrics.items() if k not in first.metrics}
    metrics = main_first(metric_names(both), first.main_metric or second.main_metric or "")
    return Comparison(first, second, settings, metrics)


def locate(name: str | Path, folder: str | Path) -> Path:
    """The run folder `name` names: the path from here, else the same path below `folder` (where the table's
    names start)."""
    for path in (Path(name), Path(folder) / name):
        if is_run(path):
            return path
    if Path(name).exists() or (Path(folder) / name).exists():
        raise HftkError(
            f"{name}: not an hftk output folder (no recipe.yaml and metrics.json in it); compare two folders that "
            "hftk runs lists"
        )
    raise HftkError(f"{name}: no such folder, here or in {folder}; compare two folders that hftk runs lists")


def find_runs(root: Path) -> list[Path]:
    """The run folders at or below `root`, by path; a run's own folders are not searched."""
    found = []
    for here, dirs, _ in os.walk(root):
        if is_run(Path(here)):
            found.append(Path(here))
            dirs.clear()
        else:  # a training's staging folder and locks are hidden; checkpoints are a run's own
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != CHECKPOINTS]
    return sorted(found)


def is_run(folder: Path) -> bool:
    """Whether `folder` holds a run: `hftk train`'s recipe.yaml and metrics.json, a cross-validation or a study."""
    if not folder.is_dir():
        return False
    from hftk.runs.tune import STUDY  # imports the Trainer: not on `import hftk`

    if (folder / STUDY).is_file():
        return True
    return (folder / METRICS).is_file() and ((folder / RECIPE).is_file() or FoldsFolder(folder).found())


def read_run(folder: Path, name: str) -> Run:
    """The row of the run in `folder`; what a damaged file would have said is left empty, and `problems` says
    which file."""
    from hftk.runs.tune import STUDY

    if (folder / STUDY).is_file():
        return _study(folder, name)
    if (summary := FoldsFolder(folder).saved()) is not None:
        return _cross_validation(folder, name, summary)
    run = Run(folder, name, kind="export" if is_exported(folder) else "train")
    recipe = _read_recipe(run, folder / RECIPE)
    saved = _read_metrics(run, folder / METRICS)
    if recipe is not None and saved is not None and "eval" in saved and "main_metric" not in saved:
        # written before metrics.json named it: the task's own, as training_arguments chose it
        with contextlib.suppress(HftkError):
            run.main_metric = f"eval_{get_task(recipe.task)(recipe, None).main_metric}"
    return run


# ------------------------------------------------------------------------------------------ kinds of run


def _read_recipe(run: Run, path: Path) -> Recipe | None:
    try:
        recipe = load_recipe(path)
    except HftkError as e:
        lines = str(e).splitlines()
        more = f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else ""
        _damaged(run, RECIPE, f"{lines[0]}{more}; its row shows what metrics.json says")
        return None
    run.task, run.model = recipe.task, recipe.model
    data = recipe.data
    train: Any = data.train
    if data.hub:
        run.data = f"{data.hub}[{train}]"
    elif train is not None:
        run.data = ", ".join(Path(t).name for t in (train if isinstance(train, list) else [train]))
    run.settings = measured(recipe, ("search",))  # `hftk train` ignores a search: block
    run.greater_is_better = get_task(recipe.task).greater_is_better
    return recipe


def _read_metrics(run: Run, path: Path) -> dict[str, Any] | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError(f"a {type(saved).__name__}, not an object")
    except (OSError, ValueError) as e:  # JSON's errors and a UnicodeDecodeError are ValueErrors
        _damaged(run, METRICS, f"{path}: unreadable ({e}); its row shows what recipe.yaml says")
        return None
    run.date = datetime.fromtimestamp(path.stat().st_mtime)
    train = saved.get("train") if isinstance(saved.get("train"), dict) else {}
    run.steps, run.best_step, run.seconds = train.get("global_step"), train.get("best_step"), train.get("train_runtime")
    run.rows = {k: n for k, n in (saved.get("data") or {}).items() if isinstance(n, int)}
    for split in ("eval", "test"):
        scores = saved.get(split)
        for m in metric_names(scores) if isinstance(scores, dict) else []:
            run.metrics[m] = scores[m]
            if (why := why_undefined(scores, m)) is not None:
                undefined(run.metrics, m, why)
    if isinstance(saved.get("main_metric"), str):
        run.main_metric = saved["main_metric"]
    return saved


def _cross_validation(folder: Path, name: str, summary: dict[str, Any]) -> Run:
    """A cross-validation's row: its settings and its means, from its metrics.json (the folds may be gone)."""
    trained = summary.get("trained_with")
    run = Run(folder, name, kind="cross-validation", note=f"{summary.get('folds')} folds")
    if isinstance(trained, dict):
        source = summary.get("source")
        run.settings = trained | ({"data.train": source} if source else {})  # its data by path, as a train run's
        run.task, run.model = trained.get("task"), trained.get("model")
        run.data = Path(str(source)).name if source else None
    else:
        _damaged(run, RECIPE, f"{folder / METRICS}: records no settings (an older hftk wrote it)")
    if run.task is not None:
        run.greater_is_better = get_task(str(run.task)).greater_is_better
    run.main_metric = summary.get("main_metric")
    run.rows = {"train": summary["rows"]} if isinstance(summary.get("rows"), int) else {}
    per_fold = summary["per_fold"]
    run.seconds = sum(f.get("seconds") or 0 for f in per_fold) if per_fold else None
    run.date = datetime.fromtimestamp((folder / METRICS).stat().st_mtime)
    for m, stats in (summary.get("metrics") or {}).items():
        run.metrics[m] = stats.get("mean")
        if stats.get("mean") is None and any(stats.get("undefined") or []):
            undefined(run.metrics, m, "undefined in every fold")
    return run


def _study(folder: Path, name: str) -> Run:
    """A study's row: its best model's (best/), with the trials it ran and the time the whole search took."""
    from hftk.runs.tune import BEST

    best = folder / BEST
    if not is_run(best):
        return Run(folder, name, kind="tune", note="no trial finished")
    run = read_run(best, name)
    run.folder, run.kind, run.note = folder, "tune", "best so far"
    path = folder / "tune.json"
    if path.is_file():  # written when the search ends
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            trials = sum(summary["states"].values())
            run.note = f"best of {trials} trial{'s' * (trials != 1)}"
            run.seconds = summary["seconds"]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            run.problems.append(f"{path}: unreadable ({e}); the row shows its best model, best/")
    return run


# ------------------------------------------------------------------------------------------ cells


def _damaged(run: Run, what: str, problem: str) -> None:
    run.unreadable.add(what)
    run.problems.append(problem)


def _warn(runs: list[Run]) -> None:
    for run in runs:
        for problem in run.problems:
            logger.warning("hftk: warning: %s", problem)


def _below(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _kind(run: Run) -> str:
    return f" ({run.kind}{', ' + run.note if run.note else ''})" if run.kind != "train" else ""


def _metric_cell(run: Run, metric: str | None, otherwise: str) -> str:
    if not metric or (metric not in run.metrics and otherwise == "?"):
        return otherwise
    return score(run.metrics.get(metric), why_undefined(run.metrics, metric))


def _short_path(value: str) -> str:
    """A local path by its last part (saved recipes hold absolute paths); a hub id or package:NAME as it is."""
    return Path(value).name if os.path.isabs(value) else value


def _setting_cell(key: str, value: Any) -> str:
    if key.startswith("data.") and isinstance(value, str):
        return _short_path(value)
    return _value(value)


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"
