"""What a many-runs command shows its user: the console table of its runs, a cross-validation's mean ± sd and card,
a study's trials.csv and plot. Kept apart from the commands so `folds.py` is the fold plan and `tune.py` the search."""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hftk.config.reading import read_recipe
from hftk.config.recipe import Recipe
from hftk.report.page import TIMINGS
from hftk.tasks.base import Task
from hftk.tasks.metrics import undefined, why_undefined
from hftk.training.output import card_metadata


def text_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """Console table lines: each column padded to its widest cell, two spaces between columns, no trailing
    spaces (a table pasted into a README or a diff stays clean)."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in (head, *rows)]


def short(metric: str) -> str:
    return metric.removeprefix("eval_")


def main_first(metrics: Any, main: str) -> list[str]:
    """The main metric first, then the loss, then the others as the task reports them (a stable sort)."""
    return sorted(metrics, key=lambda m: (m != main, m != "eval_loss"))


# ------------------------------------------------------------------------------------- cross-validation


@dataclass
class FoldsResult:
    """A cross-validation's scores: each metric's mean, sample standard deviation and per-fold values."""

    output_dir: Path
    folds: int
    metric: str  # the task's main metric as metrics.json names it, e.g. eval_accuracy
    metrics: dict[str, dict[str, Any]]  # metric -> {"mean", "sd", "values"}
    per_fold: list[dict[str, Any]] = field(default_factory=list)  # metrics.json's per_fold
    seconds: float = 0.0

    @property
    def mean(self) -> float:
        return self.metrics[self.metric]["mean"]

    @property
    def sd(self) -> float | None:
        return self.metrics[self.metric]["sd"]

    def table(self) -> str:
        """One line per fold (its rows, steps and main scores), then mean ± sd: for the console."""
        shown = main_first(self.metrics, self.metric)[:4]
        head = ["fold", "train", "held out", "steps", *map(short, shown)]
        lines = [
            [str(f["fold"]), str(f["train_rows"]), str(f["held_out_rows"]), str(f["global_step"])]
            + [score(f["eval"].get(m), why_undefined(f["eval"], m)) for m in shown]
            for f in self.per_fold
        ]
        text = text_table(head, lines)
        text.append("mean ± sd: " + ", ".join(f"{short(m)} {mean_sd(self.metrics[m])}" for m in shown))
        return "\n".join(text)


def aggregate(scores: list[dict[str, Any]], folds: int) -> dict[str, dict[str, Any]]:
    """metric -> {mean, sd (sample, n - 1), values} over the folds' evaluations; a metric a fold lacks (a type its
    held-out part does not have) or that is undefined there is None and left out of its mean; `undefined` (only
    when one is) gives each fold's reason, or None."""
    names = [m for s in scores for m in metric_names(s)]
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        values = [s.get(name) for s in scores]
        present = [float(v) for v in values if isinstance(v, (int, float))]
        out[name] = {
            "mean": statistics.fmean(present) if present else None,
            "sd": statistics.stdev(present) if len(present) > 1 else None,
            "values": values,
        }
        if any(why := [why_undefined(s, name) for s in scores]):
            out[name]["undefined"] = why
    return out


def metric_names(scores: dict[str, Any]) -> list[str]:
    """The metrics of one evaluation (`eval_accuracy`, `eval_loss`), defined or undefined, without its timings."""
    return [
        m
        for m, v in scores.items()
        if (isinstance(v, (int, float)) or why_undefined(scores, m)) and m.split("_", 1)[-1] not in TIMINGS
    ]


def score(value: Any, why: str | None = None) -> str:
    """One fold's score as a table cell: four decimals, "undefined" where the metric is, "-" where it is missing."""
    if why:
        return "undefined"
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def mean_sd(stats: dict[str, Any]) -> str:
    mean, sd, undefined = stats["mean"], stats["sd"], sum(map(bool, stats.get("undefined", [])))
    if mean is None:
        return "undefined" if undefined else "-"
    shown = f"{mean:.4f} ± {sd:.4f}" if sd is not None else f"{mean:.4f}"
    return shown + (f" ({undefined} undefined)" if undefined else "")


def folds_card(
    summary: dict[str, Any], recipe: Recipe, trained: Recipe, task: Task, out: Path, optimistic: bool
) -> str:
    """A cross-validation's README.md: the Hub metadata of `hftk train`'s card (`trained`, the recipe each fold
    ran, with the means as results), how the folds were drawn, every metric's mean ± sd and per-fold values, and
    what the folder keeps. `optimistic`: each fold's checkpoint was chosen on its held-out part."""
    k, main = summary["folds"], summary["main_metric"]
    means: dict[str, Any] = {}
    for m, stats in summary["metrics"].items():
        means[m] = stats["mean"]
        if stats["mean"] is None and any(stats.get("undefined", [])):  # in every fold
            undefined(means, m, "undefined in every fold: " + next(w for w in stats["undefined"] if w))
    local = recipe.model.startswith((".", "/", "package:")) or Path(recipe.model).exists()
    split = {"eval": f"train ({k}-fold cross-validation)"}
    header = card_metadata(trained, task, {"eval": means}, None if local else recipe.model, split)
    base = recipe.model if not local or recipe.model.startswith("package:") else Path(recipe.model).name
    unused = [s for s in ("validation", "test") if getattr(recipe.data, s)]
    tuned = task.tuned_on_validation()
    held = [f["held_out_rows"] for f in summary["per_fold"]]
    span = f"{min(held):,}" if min(held) == max(held) else f"{min(held):,}-{max(held):,}"
    folds = [f"fold {f['fold']}" for f in summary["per_fold"]]
    rows = [
        f"| {short(m)} | {mean_sd(s)} | " + " | ".join(map(score, s["values"], s.get("undefined", []))) + " |"
        for m, s in ((m, summary["metrics"][m]) for m in main_first(summary["metrics"], main))
    ]
    lines = [
        "---",
        header.to_yaml(),
        "---",
        "",
        f"# {out.name}",
        "",
        f"`{base}` fine-tuned for **{task.pipeline}** with hftk and scored by {k}-fold cross-validation of its "
        f"training data (`hftk train RECIPE --folds {k}`).",
        "",
        "## Cross-validation",
        "",
        f"{summary['rows']:,} train rows in {k} folds ({summary['split']}, seed {summary['seed']}); each model "
        f"trained on the other {k - 1} folds and was scored on its own ({span} rows), "
        "as scikit-learn's `cross_validate` scores the held-out fold."
        + (f" The recipe's {' and '.join(unused)} split was not used." if unused else ""),
        "",
        "Each fold's model is its best checkpoint by the held-out fold's metric, so the scores are optimistic."
        if optimistic
        else "Each fold's model is its last training step (no checkpoint was chosen on the held-out fold).",
        *([f"{tuned} were tuned on each held-out fold, so those scores are optimistic."] if tuned else []),
        "",
        "## Metrics",
        "",
        f"Mean ± sample standard deviation over the {k} held-out folds; a metric undefined on a fold "
        "(a correlation of constant values, an F1 with nothing to find) is left out of its mean, and "
        "metrics.json says why.",
        "",
        "| metric | mean ± sd | " + " | ".join(folds) + " |",
        "|---|---|" + "---|" * len(folds),
        *rows,
        "",
        "## Folds",
        "",
        _kept(summary["per_fold"], summary["keep"]),
        "",
    ]
    return "\n".join(lines)


def _kept(per_fold: list[dict[str, Any]], keep: str) -> str:
    """What the folder holds besides the scores: each fold's model as its run kept it (--keep may change on
    --resume), and the rows of each fold while --keep is all."""
    folders = [f"`{f['folder']}/`" for f in per_fold if f["folder"]]
    rows = " `data/fold-k/` holds the rows each trained on and was scored on." if keep == "all" else ""
    if not folders:
        return f"Only the scores were kept (`--keep none`): `metrics.json` has every figure above.{rows}"
    which = "the folds'" if len(folders) == len(per_fold) else "the only"
    return (
        f"{', '.join(folders)}: {which} model folders, each with its card.{rows} `metrics.json` has every figure above."
    )


# ------------------------------------------------------------------------------------------------ a study


@dataclass
class TuneResult:
    """The search's outcome: the best trial's values and score, where its model is, and every trial."""

    output_dir: Path
    metric: str  # e.g. eval_accuracy
    direction: str  # maximize or minimize
    best_value: float | None
    best_params: dict[str, Any]
    best_dir: Path | None
    trials: list[dict[str, Any]] = field(default_factory=list)  # trials.csv's rows
    seconds: float = 0.0
    importances: dict[str, float] = field(default_factory=dict)  # searched key -> share; {} with a note why not
    importance_note: str | None = None

    def table(self) -> str:
        """The trials as an aligned table, the best marked, for the console."""
        if not self.trials:
            return "no trials"
        keys = [k for k in self.trials[0] if k != "error"]

        def cell(v: Any) -> str:
            return f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v)

        head, *lines = text_table(keys, [[cell(r[k]) for k in keys] for r in self.trials])
        best = next((i for i, r in enumerate(self.trials) if r[self.metric] == self.best_value), None)
        return "\n".join(["  " + head, *(("* " if i == best else "  ") + line for i, line in enumerate(lines))])


def best_recipe(base: dict[str, Any], params: dict[str, Any], model: Path, path: Path) -> str:
    """best-recipe.yaml (the first line's start is the caller's): the recipe as its user wrote it with the best
    trial's values set, its data paths as seen from `path`'s folder, training into `model`."""
    mapping = read_recipe(base, params).data
    mapping.pop("search", None)
    mapping["output_dir"] = str(model)
    data = mapping.get("data")
    if isinstance(data, dict) and not data.get("hub"):  # relative paths in a recipe start at its own folder
        for split in ("train", "validation", "test"):
            value = data.get(split)
            if isinstance(value, str) and not Path(value).is_absolute() and Path(value).exists():
                data[split] = os.path.relpath(Path(value).resolve(), path.parent.resolve())
    head = f"its model is {model}.\n# Train it again: hftk train {path} --output NEW_DIR\n"
    return head + yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True)


def shown_params(params: dict[str, Any]) -> str:
    """A trial's values for its log line: `learning_rate=3e-05, num_train_epochs=2`."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={f'{v:.3g}' if isinstance(v, float) else v}" for k, v in params.items())


def trial_rows(study: Any, metric: str, keys: list[str]) -> list[dict[str, Any]]:
    """trials.csv's rows: each trial's state, score (a pruned one's last evaluation), searched values, seconds."""
    rows = []
    for t in study.trials:
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower(), metric: t.value}
        if t.value is None and t.intermediate_values:
            row[metric] = t.intermediate_values[max(t.intermediate_values)]
        row |= {key: t.params.get(key) for key in keys}
        row["seconds"] = t.user_attrs.get("seconds")
        row["error"] = t.user_attrs.get("error", "")
        rows.append(row)
    return rows


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["trial"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


IMPORTANCE_TRIALS = 4  # fewer finished trials give each parameter an equal share (0.5 / 0.5 from one trial)


def importances(study: Any) -> tuple[dict[str, float], str | None]:
    """The searched parameters' importances (Optuna's default evaluator) over the finished trials, for the
    parameters that varied among them; or ({}, the reason) when there are too few finished trials or none varied."""
    import optuna
    from optuna.trial import TrialState

    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if len(complete) < IMPORTANCE_TRIALS:
        return {}, (
            f"parameter importances need {IMPORTANCE_TRIALS} finished trials; this study has {len(complete)} "
            "(pruned and failed trials do not count)"
        )
    keys = dict.fromkeys(k for t in complete for k in t.params)
    varied = [k for k in keys if len({repr(t.params.get(k)) for t in complete}) > 1]
    if not varied:
        return {}, "parameter importances: no searched parameter varied among the finished trials"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study, params=varied)), None
    except (RuntimeError, ValueError) as e:  # a space the evaluator cannot split
        return {}, f"parameter importances: none computed ({e})"


def study_figure(study: Any, metric: str, weights: dict[str, float], note: str | None) -> Any:
    """tune.png's figure: the objective by trial (complete trials as dots, pruned ones as x at their last
    evaluation, the best complete so far as a line, each named in the legend) and the parameters' importances, or
    the note saying why there are none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete, pruned, best_line, best = [], [], [], None
    for t in study.trials:
        if t.state == TrialState.COMPLETE and t.value is not None:
            complete.append((t.number, t.value))
            if best is None or (t.value > best if maximize else t.value < best):
                best = t.value
        elif t.state == TrialState.PRUNED and t.intermediate_values:  # Optuna gives it its last value as well
            pruned.append((t.number, t.intermediate_values[max(t.intermediate_values)]))
        if best is not None:
            best_line.append((t.number, best))
    for points, style, label in (
        (complete, {"marker": "o", "color": "tab:blue"}, "complete"),
        (pruned, {"marker": "x", "color": "tab:gray"}, "pruned (last evaluation)"),
        (best_line, {"color": "tab:red"}, "best so far"),
    ):
        if points:
            xs, ys = zip(*points)
            left.plot(xs, ys, linestyle="-" if "marker" not in style else "none", label=label, **style)
    left.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    left.set(xlabel="trial", ylabel=metric, title="objective")
    if complete or pruned:
        left.legend()
    right.barh(list(weights)[::-1], list(weights.values())[::-1], color="tab:green")
    if note:
        right.text(0.5, 0.5, note, ha="center", va="center", wrap=True, transform=right.transAxes)
    right.set(xlabel="importance (Optuna's PED-ANOVA)", title="parameter importances")
    fig.tight_layout()
    return fig


def plot_study(study: Any, metric: str, path: Path, weights: dict[str, float], note: str | None) -> None:
    """tune.png (study_figure)."""
    import matplotlib.pyplot as plt

    fig = study_figure(study, metric, weights, note)
    fig.savefig(path, dpi=100)
    plt.close(fig)
