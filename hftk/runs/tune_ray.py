"""`hftk tune --backend ray`: the same study through Ray Tune, for searches spread over a Ray cluster.

Ray runs each trial (`hftk train` with the trial's values) in a worker of a Ray instance: the cluster named by
RAY_ADDRESS, else a local one started here. Optuna still proposes the values (Ray's `OptunaSearch`, writing into
the same OUTPUT/study.db) and Ray's median stopping rule ends trials below the median of the others at the same
evaluation. Each trial takes one GPU where there are GPUs, else every CPU of its node: trials on one machine run
one after another, a cluster runs as many at once as it has GPUs or nodes. On a cluster, data paths and OUTPUT
must be on storage every node sees. `--resume` continues an interrupted experiment (OUTPUT/ray) with its own
trial count; a trial the scheduler stopped counts as complete with its last evaluation (Ray's way).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from hftk.errors import HftkError
from hftk.training.output import remove_whole
from hftk.training.trainer import EvaluationReport


def run_ray(study: Any, trials: int, *, resume: bool, prune: bool) -> None:
    """Run `trials` trials of `study` (hftk.runs.tune.Study) on Ray; the best model ends in the study's best/."""
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import FIFOScheduler, MedianStoppingRule
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise HftkError("--backend ray needs Ray Tune: pip install 'ray[tune]'") from None
    import optuna
    import torch

    # Trials read the recipe's paths from hftk's working folder, not from Ray's trial folders.
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    try:
        mode = "max" if study.direction == "maximize" else "min"
        trainable = tune.with_resources(
            tune.with_parameters(_trial, study=study),
            {"gpu": 1, "cpu": 1} if torch.cuda.is_available() else {"cpu": os.cpu_count() or 1},
        )
        path = (study.out / "ray").resolve()
        if resume and tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        else:
            search = OptunaSearch(
                study.distributions(),
                metric=study.metric,
                mode=mode,
                sampler=study.sampler(trials=trials),
                points_to_evaluate=[point] if (point := study.recipe_point) is not None else None,
                study_name="hftk",
                storage=optuna.storages.RDBStorage(study.storage),
            )
            scheduler = (
                MedianStoppingRule(  # the pruner's warm-up: its finished trials, and the trial's own evaluations
                    time_attr="training_iteration",
                    grace_period=study.warmup_evaluations + 1,
                    min_samples_required=study.startup_trials,
                )
                if prune
                else FIFOScheduler()
            )
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    metric=study.metric, mode=mode, search_alg=search, scheduler=scheduler, num_samples=trials
                ),
                run_config=tune.RunConfig(name="ray", storage_path=str(study.out.resolve()), verbose=0),
            )
        results = tuner.fit()
        done = [r for r in results if r.metrics and study.metric in r.metrics and r.error is None]
        if not done:
            errors = [str(r.error).strip().splitlines()[-1] for r in results if r.error is not None]
            raise HftkError(f"every trial failed; the first: {errors[0]}" if errors else "no trial completed")
        best = results.get_best_result(study.metric, mode, scope="last")
        number = study.optuna_study().best_trial.number
        study.keep(study.trial_dir(best.metrics["trial_id"]), number)
    finally:
        with contextlib.suppress(HftkError):  # the trials that were not the best; never masks the run's error
            remove_whole([study.trial_dir(0).parent])
        if started:
            ray.shutdown()


def _trial(config: dict[str, Any], study: Any) -> None:
    """One trial in a Ray worker: `hftk train` with the trial's values, each evaluation reported to Ray."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    report = EvaluationReport(lambda value, step: tune.report({study.metric: value, "step": step}))
    result = study.train_trial(trial_id, config, report)
    if study.metric in (result.metrics.get("eval") or {}):  # undefined: an error, so Ray ranks no earlier value
        tune.report({study.metric: study.value_of(result, trial_id), "step": result.global_step})
