"""`hftk tune`: the recipe's `search:` space searched by Optuna, each trial one `hftk train` run (README:
Hyper-parameter search).

The study lives in OUTPUT/study.db, so `--resume` never runs a finished trial again and reruns the one a kill
interrupted with its values. The median pruner stops a trial below the others at the same evaluation, once enough
trials have finished and the trial has been evaluated more than a warm-up (both scaled to the budget); the first
trial is the recipe's own values where the space holds them; a space of `choices` only is a grid, each point once.
Only the running trial's folder lives in trials/: the best so far becomes best/ (with best-recipe.yaml), the others
are deleted, their scores kept. `--backend ray` runs the same trials through Ray Tune (tune_ray.py).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from hftk.config.reading import read_recipe
from hftk.config.recipe import Recipe, SearchSpace
from hftk.errors import HftkError
from hftk.files import atomic_write_text
from hftk.runs.folder import RunsFolder, settings, trained_with
from hftk.runs.report import (
    TuneResult,
    best_recipe,
    csv_text,
    importances,
    plot_study,
    shown_params,
    trial_rows,
)
from hftk.tasks.metrics import why_undefined
from hftk.training.output import relocate, remove_whole
from hftk.training.prepare import prepare, training_arguments
from hftk.training.steps import total_steps
from hftk.training.train import train
from hftk.training.trainer import EvaluationReport

logger = logging.getLogger("hftk")

STUDY = "study.db"
BEST = "best"
TRIALS = "trials"
_UNSET = object()
_OURS = (STUDY, BEST, TRIALS, "best-recipe.yaml", "trials.csv", "tune.png", "tune.json", "ray")


def tune(
    recipe: Recipe | str | Path | dict[str, Any],
    *,
    trials: int | None = None,
    overrides: dict[str, Any] | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    prune: bool = True,
    backend: str = "optuna",
) -> TuneResult:
    """Search the recipe's `search:` space: `trials` trials in all (a resumed study counts those it has).

    Args:
        recipe: a Recipe, a YAML path or a dict, with a `search:` block.
        trials: how many trials the study holds when done (complete, pruned or failed). Default: the whole
            grid when every searched key is a list of `choices` (each point once, as JGLUE's grid), else 10.
        overrides: dotted keys set before validation, for every trial.
        output_dir: where the study goes (default: the recipe's output_dir).
        resume: continue the study in output_dir.
        overwrite: replace a study (or a run) in output_dir.
        prune: stop trials below the median of the others at the same evaluation.
        backend: "optuna" (this process) or "ray" (Ray Tune, on a local or existing Ray cluster).
    """
    if trials is not None and trials < 1:
        raise HftkError(f"--trials {trials}: a search needs at least one trial")
    source, recipe = recipe, Study.begin(recipe, overrides, output_dir, resume=resume, overwrite=overwrite)
    if not recipe.search:
        raise HftkError(
            "recipe: no search: block to tune; add one, e.g. search: {training.learning_rate: "
            "{low: 1.0e-5, high: 1.0e-4, log: true}, training.num_train_epochs: {choices: [2, 3]}}"
        )
    prepared = prepare(recipe)  # the data checked once, before any trial; and the metric trials are scored on
    if not prepared.has_eval:
        raise HftkError("recipe: tune compares trials on the validation metric; give data.validation")
    task = prepared.task
    evaluations = evaluations_per_trial(prepared)
    study = Study(
        Path(recipe.output_dir),
        recipe,
        base=read_recipe(source, overrides).data if isinstance(source, (str, Path)) else recipe.model_dump(mode="json"),
        metric=f"eval_{task.main_metric}",
        direction="maximize" if task.greater_is_better else "minimize",
    )
    trials = study.trial_count(trials)
    with study.held(resume=resume, overwrite=overwrite):
        study.settle(resume=resume)
        if prune and (off := study.plan_pruning(trials, evaluations)):  # once the folder and study are good
            logger.warning("hftk tune: pruning is off: %s", off)
            prune = False
        start = time.perf_counter()
        if backend == "ray":
            from hftk.runs.tune_ray import run_ray

            run_ray(study, trials, resume=resume, prune=prune)
        elif backend == "optuna":
            study.run(trials, resume=resume, prune=prune)
        else:
            raise HftkError(f"--backend {backend}: choose optuna or ray")
        return study.finish(time.perf_counter() - start)


class Study(RunsFolder):
    """One search's folder and its Optuna study: trials asked, run as `hftk train`, told, tidied up."""

    marker, what, command = STUDY, "a study", "hftk tune"
    noun, purpose, serial = "study", "tune", "hftk tune runs its trials one after another in one process"

    def __init__(self, out: Path, recipe: Recipe, *, base: dict[str, Any], metric: str, direction: str) -> None:
        super().__init__(out)
        self.recipe, self.base = recipe, base
        self.metric, self.direction = metric, direction
        self.space: dict[str, SearchSpace] = recipe.search
        self.startup_trials, self.warmup_evaluations = self.pruning_warmup(10, None)

    # -- optuna ----------------------------------------------------------------------------------------
    def settle(self, *, resume: bool) -> None:
        """A new study records what its trials are trained with (the recipe, the data's content); a resumed one
        must have been trained with the same, or its ranking would compare trials of other settings. Only
        --trials may grow (and pruning, logging, the card change nothing measured)."""
        record = trained_with(self.recipe)
        if not resume:
            self.load(create=True).set_user_attr("trained_with", record)
            return
        try:
            saved = self.optuna_study().user_attrs.get("trained_with")
        except Exception:  # not an SQLite database, or no study "hftk" in it: Optuna's and SQLAlchemy's errors
            raise HftkError(
                f"{self.out / STUDY}: not a study hftk can read; start anew with --overwrite, or choose another "
                "--output"
            ) from None
        mixed = "ran its trials with other settings ({shown}), and its ranking cannot mix them"
        self.same_settings(saved, record, mixed=mixed, allowed=" (only --trials may grow)")

    def load(self, *, create: bool, seed_offset: int = 0, prune: bool = True, trials: int = 10) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.out.mkdir(parents=True, exist_ok=True)
        sampler = self.sampler(seed_offset=seed_offset, trials=trials)
        pruner = (
            # The evaluation warm-up is counted by optuna_report (steps differ between trials); Optuna's is in steps.
            optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials) if prune else optuna.pruners.NopPruner()
        )
        return optuna.create_study(
            storage=self.storage,
            study_name="hftk",
            direction=self.direction,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=not create,
        )

    @property
    def grid(self) -> dict[str, list[Any]] | None:
        """The search as a grid when every key lists its choices: a few values each, all worth trying."""
        if all(space.choices is not None for space in self.space.values()):
            return {key: list(space.choices or ()) for key, space in self.space.items()}
        return None

    def trial_count(self, trials: int | None) -> int:
        """--trials, or the grid's size; never more than the grid has points (each would be a repeat)."""
        size = math.prod(len(v) for v in self.grid.values()) if self.grid is not None else None
        if size is not None and (trials is None or trials > size):
            if trials is not None:
                logger.warning("hftk tune: the grid has %d points; %d trials run, not %d", size, size, trials)
            return size
        return trials or 10

    def sampler(self, *, seed_offset: int = 0, trials: int = 10) -> Any:
        """Every point of a grid of choices once (in a seeded order); else TPE after a few random trials. The
        seed moves on with the trials done, so a resumed study does not draw the first trials' values again."""
        import optuna

        seed = self.recipe.seed + seed_offset
        if self.grid is not None:
            return _grid_sampler()(self.grid, seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(3, trials // 2)))

    def pruning_warmup(self, trials: int, evaluations: int | None) -> tuple[int, int]:
        """(finished trials, evaluations of the trial itself) before the pruner may stop a trial. A median of one or
        two runs, or a trial's first evaluation, is noise at a few steps: on 3 trials of 12 steps, both trials after
        the recipe's were once pruned at their first evaluation. So: 2 finished trials when the first is the recipe's
        own values (else 3), a quarter of the budget for larger ones (at most 5); and a third of a trial's
        evaluations, at least its first."""
        startup = max(2 if self.recipe_point is not None else 3, min(5, trials // 4))
        warmup = max(1, (evaluations or 0) // 3)
        return startup, warmup

    def plan_pruning(self, trials: int, evaluations: int | None) -> str | None:
        """Set the pruner's warm-up for a budget of `trials` of about `evaluations` each (None: unknown); the
        reason pruning is off when no trial could be stopped before its end, else None."""
        self.startup_trials, self.warmup_evaluations = self.pruning_warmup(trials, evaluations)
        if trials <= self.startup_trials:
            return (
                f"{trials} trial{'s' * (trials != 1)} leave none to prune after the {self.startup_trials} finished "
                f"trials it waits for; give --trials {self.startup_trials + 2} or more"
            )
        if evaluations is not None and evaluations <= self.warmup_evaluations + 1:
            return (
                f"a trial evaluates about {evaluations} time{'s' * (evaluations != 1)}, and stopping one is no saving "
                f"before its evaluation {self.warmup_evaluations + 1} or at its last; evaluate more often "
                "(training.eval_strategy: steps, a smaller training.eval_steps)"
            )
        return None

    @functools.cached_property
    def recipe_point(self) -> dict[str, Any] | None:
        """The recipe's own values of the searched keys, where each is one the search could propose: the first
        trial, so the best found is never below the recipe on the validation metric. None for a grid (it visits
        every point anyway) or when a value lies outside the space."""
        if self.grid is not None:
            return None
        values = settings(self.recipe, every=True)
        point = {key: values.get(key, _UNSET) for key in self.space}
        return point if all(space.contains(point[key]) for key, space in self.space.items()) else None

    def distributions(self) -> dict[str, Any]:
        return {key: space.distribution() for key, space in self.space.items()}

    def run(self, trials: int, *, resume: bool, prune: bool) -> None:
        import optuna
        from optuna.trial import TrialState

        study = self.load(create=False, prune=prune, trials=trials)  # created by settle()
        if not resume and (point := self.recipe_point) is not None:
            study.enqueue_trial(point)
            logger.warning("hftk tune: trial 0 runs the recipe's own values, so the search starts from them")
        if resume:
            self._recover(study)
            study = self.load(create=False, seed_offset=len(study.trials), prune=prune, trials=trials)
        distributions = self.distributions()
        while (done := sum(map(_counts, study.trials))) < trials:
            trial = study.ask(distributions)
            logger.warning(
                "hftk tune: trial %d (%d of %d): %s", trial.number, done + 1, trials, shown_params(trial.params)
            )
            started = time.perf_counter()
            try:
                report = optuna_report(trial, self.warmup_evaluations)
                value = self.value_of(self.train_trial(trial.number, trial.params, report), trial.number)
                state, why = TrialState.COMPLETE, ""
            except optuna.TrialPruned as pruned:
                value, state, why = None, TrialState.PRUNED, f"pruned ({pruned})"
            except HftkError as e:  # this trial's values fail (a NaN loss at a high rate); the others may not
                value, state, why = None, TrialState.FAIL, f"failed: {str(e).splitlines()[0]}"
                trial.set_user_attr("error", str(e).splitlines()[0])
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            study.tell(trial, value, state=state)
            if state == TrialState.COMPLETE:
                self.keep_if_best(trial.number, study.best_trial.number)
            else:
                logger.warning("hftk tune: trial %d %s", trial.number, why)
                self.remove_trial(trial.number)
        if not any(t.state == TrialState.COMPLETE for t in study.trials):
            errors = [t.user_attrs.get("error") for t in study.trials if t.user_attrs.get("error")]
            raise HftkError(f"every trial failed; the first: {errors[0]}" if errors else "no trial completed")

    def _recover(self, study: Any) -> None:
        """A killed search left its running trial RUNNING: mark it failed and ask for its values again; a
        finished trial whose folder was never tidied is kept (the best) or removed."""
        from optuna.trial import TrialState

        for t in study.trials:
            if t.state == TrialState.RUNNING:
                study.tell(t.number, state=TrialState.FAIL)
                study.enqueue_trial(t.params, skip_if_exists=False)
                self.remove_trial(t.number)
        for t in study.trials:
            if t.state == TrialState.COMPLETE and self.trial_dir(t.number).exists():
                self.keep_if_best(t.number, study.best_trial.number)

    # -- trials ----------------------------------------------------------------------------------------
    def trial_dir(self, number: int | str) -> Path:
        """Where trial `number` (Optuna's trial number, or Ray's trial id) trains."""
        name = f"trial-{number:03d}" if isinstance(number, int) else f"trial-{number}"
        return self.out / TRIALS / name

    def train_trial(self, number: int | str, params: dict[str, Any], report: EvaluationReport) -> Any:
        """One `hftk train` of the recipe with `params` set, into trial `number`'s folder, each evaluation
        reported (Optuna's pruner, or Ray's scheduler, decides from those)."""
        overrides = {**params, "keep_checkpoints": False, "search": {}}
        return train(
            self.recipe, overrides=overrides, output_dir=self.trial_dir(number), overwrite=True, callbacks=[report]
        )

    def value_of(self, result: Any, trial: int | str) -> float:
        """The objective of a trial's run; an error (the trial fails, unranked) where it is undefined or not finite."""
        scores = result.metrics.get("eval") or {}
        value = scores.get(self.metric)
        if value is None and (why := why_undefined(scores, self.metric)):
            raise HftkError(f"trial {trial}: {self.metric} is undefined ({why}); the trial is not ranked")
        if value is None or not math.isfinite(value):
            raise HftkError(f"trial {trial}: the run reported no finite {self.metric}")
        return float(value)

    def keep_if_best(self, number: int, best: int) -> None:
        """The trial's model becomes best/ when it is the study's best; otherwise its folder goes."""
        if number == best and self.trial_dir(number).exists():
            self.keep(self.trial_dir(number), number)
        self.remove_trial(number)

    def keep(self, folder: Path, number: int) -> None:
        """`folder` (trial `number`'s model) becomes best/, replacing the model there."""
        relocate(folder, self.out / BEST)
        self.write_best_recipe(number)

    def remove_trial(self, number: int) -> None:
        remove_whole([self.trial_dir(number)])
        with contextlib.suppress(OSError):
            (self.out / TRIALS).rmdir()  # once no trial is left in it

    def ours(self) -> list[Path]:
        return [self.out / name for name in _OURS]

    # -- results ---------------------------------------------------------------------------------------
    def write_best_recipe(self, number: int) -> None:
        trial = self.optuna_study().trials[number]
        text = best_recipe(self.base, trial.params, self.out / BEST, self.out / "best-recipe.yaml")
        head = f"# The best recipe of `hftk tune` (trial {number}, {self.metric} {trial.value:.4g}); "
        atomic_write_text(self.out / "best-recipe.yaml", head + text)

    def optuna_study(self) -> Any:
        import optuna

        return optuna.load_study(study_name="hftk", storage=self.storage)

    @property
    def storage(self) -> str:
        """The study's SQLite database, as Optuna (and Ray's OptunaSearch) open it."""
        return f"sqlite:///{(self.out / STUDY).resolve()}"

    def finish(self, seconds: float) -> TuneResult:
        """trials.csv, tune.png, tune.json, from the study as it stands."""
        study = self.optuna_study()
        rows = trial_rows(study, self.metric, list(self.space))
        atomic_write_text(self.out / "trials.csv", csv_text(rows))
        best = study.best_trial if any(t.value is not None for t in study.trials) else None
        result = TuneResult(
            self.out,
            self.metric,
            self.direction,
            best.value if best else None,
            best.params if best else {},
            self.out / BEST if best else None,
            rows,
            round(seconds, 1),
            *importances(study),
        )
        summary = {k: str(v) if isinstance(v, Path) else v for k, v in vars(result).items() if k != "trials"}
        summary["best_trial"] = best.number if best else None
        summary["states"] = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail")}
        atomic_write_text(self.out / "tune.json", json.dumps(summary, indent=2) + "\n")
        plot_study(study, self.metric, self.out / "tune.png", result.importances, result.importance_note)
        return result


def optuna_report(trial: Any, warmup: int = 1) -> EvaluationReport:
    """Reports to an Optuna trial; raises `optuna.TrialPruned` out of the run when the pruner says so, never at the
    trial's first `warmup` evaluations."""
    import optuna

    reported = 0

    def send(value: float, step: int) -> None:
        nonlocal reported
        trial.report(value, step)
        reported += 1
        if reported > warmup and trial.should_prune():
            raise optuna.TrialPruned(f"{value:.4g} at step {step}, below the median of the other trials")

    return EvaluationReport(send)


# ----------------------------------------------------------------------------------------------- helpers


def evaluations_per_trial(prepared: Any) -> int | None:
    """About how many evaluations a trial reports, by the recipe's own settings (a searched max_steps, epochs or
    eval_steps moves it); None where the run's length is unknown (a stream) or evaluation is by epoch within
    max_steps."""
    task = prepared.task
    train_split = prepared.splits["train"]
    rows = len(train_split) if hasattr(train_split, "__len__") else None
    args = training_arguments(task, task.device_policy(), prepared.recipe.output_dir, has_eval=True)
    total = total_steps(args, rows)
    strategy = str(getattr(args.eval_strategy, "value", args.eval_strategy))
    if total is None or strategy not in ("steps", "epoch"):
        return None
    if strategy == "epoch":
        return math.ceil(args.num_train_epochs) if args.max_steps <= 0 else None
    every = args.eval_steps if args.eval_steps >= 1 else math.ceil(total * args.eval_steps)
    return math.ceil(total / every)


def _counts(trial: Any) -> bool:
    """Whether a trial counts towards --trials: finished, and not one a kill interrupted (it is run again)."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or "error" in trial.user_attrs


def _grid_sampler() -> type:
    import optuna

    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid, without its stop() once every point ran: that works inside study.optimize only, and
        hftk's loop (and Ray's) count the trials themselves."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return Grid
