"""`hftk tune`: a real Optuna study of real MiniLM runs on SST-2 rows; resumed, killed, pruned."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

import hftk
from hftk.cli import main as cli_main
from hftk.runs.tune import optuna_report, tune

from ..helpers import (
    DATA,
    ROOT,
    TUNE_QUICK,
    TUNE_SPACE,
    cli_error,
    head,
    sst2_recipe,
    study_trials,
    tune_recipe,
    unremovable,
)


def test_study_keeps_the_best_model_and_resume_never_redoes_a_trial(small, tmp_path):
    out = tmp_path / "study"
    first = tune(tune_recipe(small, out, per_device_train_batch_size=16), trials=2, prune=False)  # pruning: below
    # trial 0 is the recipe's own values (both lie in the space), so the search starts from them
    assert study_trials(out)[0].params == {"training.learning_rate": 1e-4, "training.per_device_train_batch_size": 16}
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["complete", "complete"]
    values = [float(r["eval_accuracy"]) for r in rows]
    assert first.best_value == max(values)
    best = values.index(max(values))
    assert first.best_params == study_trials(out)[best].params
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best", "best-recipe.yaml", "study.db", "trials.csv", "tune.json", "tune.png"]
    )  # no trial folders left: the best was moved, the other deleted
    # best/ is a model folder that predicts, and says it was trained with the best values
    saved = yaml.safe_load((out / "best" / "recipe.yaml").read_text())
    assert saved["training"]["learning_rate"] == pytest.approx(first.best_params["training.learning_rate"])
    assert saved["output_dir"] == str(out / "best")
    assert json.loads((out / "best" / "metrics.json").read_text())["eval"]["eval_accuracy"] == first.best_value
    preds = hftk.Predictor(out / "best").predict(["a wonderful film", "a dull, tedious mess"])
    assert all(p["label"] in ("negative", "positive") for p in preds)
    # best-recipe.yaml: the recipe with the best values, loadable from any folder, no search block
    again = hftk.load_recipe(out / "best-recipe.yaml")
    assert again.search == {}
    assert again.training["learning_rate"] == pytest.approx(first.best_params["training.learning_rate"])
    assert again.training["per_device_train_batch_size"] == first.best_params["training.per_device_train_batch_size"]
    assert os.path.samefile(again.data.train, small["train"])
    # --resume to 3 trials: one more trial; the first two keep their values and times
    before = [(t.params, t.user_attrs["seconds"]) for t in study_trials(out)]
    with pytest.raises(hftk.HftkError, match="holds a study"):
        tune(tune_recipe(small, out, per_device_train_batch_size=16), trials=3)
    second = tune(tune_recipe(small, out, per_device_train_batch_size=16), trials=3, resume=True, prune=False)
    after = study_trials(out)
    assert len(after) == 3 and [(t.params, t.user_attrs["seconds"]) for t in after[:2]] == before
    assert second.best_value == max(t.value for t in after)
    assert json.loads((out / "tune.json").read_text())["states"] == {"complete": 3, "pruned": 0, "fail": 0}
    # --resume with another fixed setting or other validation rows would rank trials of other runs together:
    # refused before any trial, naming each change; only --trials may grow
    other = {**small, "validation": head(DATA / "en/sst2/dev.tsv", small["validation"].parent / "dev60.tsv", 60)}
    changed = sst2_recipe(
        other, out, max_length=32, training={**TUNE_QUICK["training"], "max_steps": 16}, search=TUNE_SPACE
    )
    with pytest.raises(hftk.HftkError) as refused:
        tune(changed | {"training": changed["training"] | {"per_device_train_batch_size": 16}}, trials=4, resume=True)
    assert str(refused.value) == (
        f"{out}: the study there ran its trials with other settings (data.validation: other file content, "
        "training.max_steps 8 -> 16), and its ranking cannot mix them; resume with its settings (only --trials may "
        "grow), start anew with --overwrite, or choose another --output"
    )
    assert len(study_trials(out)) == 3


@pytest.mark.slow  # 32 s; make test-slow runs it (keeps make test under CI's 30 minutes)
def test_a_killed_trial_runs_again_with_its_values(small, tmp_path):
    out = tmp_path / "study"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tune_recipe(small, out, max_steps=40)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hftk", "tune", str(recipe), "--trials", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = out / "trials" / "trial-000" / "checkpoints"
    deadline = time.monotonic() + 180
    while not (checkpoints.is_dir() and any(checkpoints.iterdir())) and proc.poll() is None:
        assert time.monotonic() < deadline, "the trial never wrote a checkpoint"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # mid-trial, as a kill -9 or a lost machine would
    proc.wait()
    killed = study_trials(out)
    assert [t.state.name for t in killed] == ["RUNNING"]
    result = tune(recipe, trials=1, resume=True)  # the same settings: another max_steps would be refused
    trials = study_trials(out)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == killed[0].params  # the interrupted values, run again
    assert result.best_params == killed[0].params
    assert not (out / "trials").exists()


def test_overwrite_removes_a_link_itself_and_nothing_when_something_cannot_go(small, tmp_path, capsys):
    from hftk.runs.tune import Study

    out, outside = tmp_path / "study", tmp_path / "outside"
    outside.mkdir()
    (outside / "model.safetensors").write_text("a model the study does not own")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tune_recipe(small, out)))
    study = Study(out, hftk.load_recipe(recipe), base={}, metric="eval_accuracy", direction="maximize")
    study.settle(resume=False)  # a real study.db
    (out / "best").mkdir()
    (out / "best" / "model.safetensors").write_text("the best trial's model")
    (out / "trials.csv").write_text("trial\n0\n")
    # one file that cannot be removed: --overwrite refuses before removing anything
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with unremovable(out / "best" / "model.safetensors"):
        error = cli_error(capsys, "tune", recipe, "--overwrite", "--trials", 1)
    assert "best" in error and "cannot be removed" in error and "nothing was removed" in error
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # best/ a link out of the folder: the link goes, never what it points to; the user's own file stays
    import shutil

    shutil.rmtree(out / "best")
    (out / "best").symlink_to(outside, target_is_directory=True)
    (out / "notes.txt").write_text("the user's")
    study.clear()
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (outside / "model.safetensors").read_text() == "a model the study does not own"


@pytest.mark.parametrize(
    ("space", "point"),
    [
        ({"training.learning_rate": {"low": 1e-5, "high": 3e-4, "log": True}}, {"training.learning_rate": 1e-4}),
        # not set in the recipe: hftk's default (weight_decay 0.01), else TrainingArguments' (linear)
        (
            {"training.weight_decay": {"low": 0.0, "high": 0.1}, "training.lr_scheduler_type": {"choices": ["linear"]}},
            {"training.weight_decay": 0.01, "training.lr_scheduler_type": "linear"},
        ),
        ({"max_length": {"low": 32, "high": 128, "step": 32}}, {"max_length": 64}),
        ({"training.learning_rate": {"low": 2e-4, "high": 3e-4}}, None),  # outside the range
        ({"max_length": {"low": 32, "high": 128, "step": 48}}, None),  # off the range's steps
        ({"training.per_device_train_batch_size": {"choices": [8, 16]}}, None),  # not a choice (32)
        ({"training.learning_rate": {"choices": [1e-4, 5e-5]}}, None),  # a grid visits it anyway
    ],
)
def test_the_search_starts_from_the_recipes_values_where_the_space_has_them(small, tmp_path, space, point):
    from hftk.runs.tune import Study

    recipe = hftk.load_recipe(sst2_recipe(small, tmp_path, search=space))
    assert Study(tmp_path, recipe, base={}, metric="eval_accuracy", direction="maximize").recipe_point == point


def test_a_trial_below_the_median_is_pruned_at_its_evaluation():
    import optuna
    from transformers import TrainerControl, TrainerState, TrainingArguments

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    for value in (0.80, 0.84):  # two finished trials, scoring this at step 4
        trial = study.ask()
        trial.report(value, 4)
        study.tell(trial, value)
    args = TrainingArguments(output_dir="unused", metric_for_best_model="accuracy", report_to="none")
    state, control = TrainerState(global_step=4), TrainerControl()
    good_trial = study.ask()
    good = optuna_report(good_trial)
    good.on_evaluate(args, state, control, metrics={"eval_accuracy": 0.9})  # above the median: runs on
    bad = optuna_report(study.ask(), warmup=0)
    with pytest.raises(optuna.TrialPruned, match=r"0\.5 at step 4, below the median"):
        bad.on_evaluate(args, state, control, metrics={"eval_accuracy": 0.5})
    # the final evaluation repeats the best step's: reported once, never pruned twice
    good.on_evaluate(args, state, control, metrics={"eval_accuracy": 0.9})
    assert study.trials[good_trial.number].intermediate_values == {4: 0.9}


@pytest.mark.slow  # 31 s; make test-slow runs it (keeps make test under CI's 30 minutes)
def test_a_grid_of_choices_runs_each_point_once(small, tmp_path):
    out = tmp_path / "study"
    grid = {"training.learning_rate": {"choices": [5.0e-5, 1.0e-4]}, "training.max_steps": {"choices": [4, 6]}}
    recipe = sst2_recipe(small, out, max_length=32, training=TUNE_QUICK["training"], search=grid)
    result = tune(recipe, trials=9, prune=False)  # more than the grid holds: each point once, no repeat
    points = sorted((t.params["training.learning_rate"], t.params["training.max_steps"]) for t in study_trials(out))
    assert points == [(5.0e-5, 4), (5.0e-5, 6), (1.0e-4, 4), (1.0e-4, 6)]
    assert len(result.trials) == 4


def test_an_undefined_objective_fails_the_trial_and_is_never_ranked(small, tmp_path):
    from hftk.runs.tune import Study
    from hftk.training.train import TrainResult

    recipe = hftk.load_recipe(sst2_recipe(small, tmp_path, search={"training.learning_rate": {"choices": [1e-4]}}))
    study = Study(tmp_path, recipe, base={}, metric="eval_f1", direction="maximize")

    def run(scores: dict) -> TrainResult:
        return TrainResult(tmp_path, {"eval": scores}, 1, 0)

    assert study.value_of(run({"eval_f1": 0.75}), 3) == 0.75
    why = "no row has label 1, in the gold labels or the predictions: F1 is 0/0"
    with pytest.raises(hftk.HftkError, match=rf"^trial 3: eval_f1 is undefined \({why}\); the trial is not ranked$"):
        study.value_of(run({"eval_f1": None, "eval_f1_undefined": why}), 3)
    with pytest.raises(hftk.HftkError, match="no finite eval_f1"):
        study.value_of(run({"eval_f1": float("inf")}), 3)


def test_pruning_waits_for_a_trials_second_evaluation():
    import optuna
    from transformers import TrainerControl, TrainerState, TrainingArguments

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    for value in (0.80, 0.84):  # two finished trials, evaluated at steps 4 and 8
        trial = study.ask()
        trial.report(value, 4)
        trial.report(value, 8)
        study.tell(trial, value)
    args = TrainingArguments(output_dir="unused", metric_for_best_model="accuracy", report_to="none")
    bad = optuna_report(study.ask())  # the default warm-up: its first evaluation
    bad.on_evaluate(args, TrainerState(global_step=4), TrainerControl(), metrics={"eval_accuracy": 0.5})
    with pytest.raises(optuna.TrialPruned, match=r"0\.5 at step 8"):  # below at its second: stopped there
        bad.on_evaluate(args, TrainerState(global_step=8), TrainerControl(), metrics={"eval_accuracy": 0.5})


@pytest.mark.parametrize(
    ("trials", "evaluations", "point", "warmup", "off"),
    [
        (3, 3, True, (2, 1), None),  # the budget: only the third trial may stop, at its 2nd evaluation
        (2, 3, True, (2, 1), "2 trials leave none to prune after the 2 finished trials it waits for"),
        (3, 3, False, (3, 1), "3 trials leave none to prune after the 3 finished trials it waits for"),
        (6, 2, True, (2, 1), "a trial evaluates about 2 times, and stopping one is no saving before its evaluation 2"),
        (6, None, True, (2, 1), None),  # evaluations unknown (a stream): the first is the warm-up
        (40, 12, True, (5, 4), None),  # a larger budget waits for more evidence
    ],
)
def test_the_pruners_warm_up_scales_with_the_budget(small, tmp_path, trials, evaluations, point, warmup, off):
    from hftk.runs.tune import Study

    space = TUNE_SPACE if point else {"training.learning_rate": {"low": 2e-4, "high": 3e-4}}
    recipe = hftk.load_recipe(tune_recipe(small, tmp_path, per_device_train_batch_size=16) | {"search": space})
    study = Study(tmp_path, recipe, base={}, metric="eval_accuracy", direction="maximize")
    said = study.plan_pruning(trials, evaluations)
    assert (study.startup_trials, study.warmup_evaluations) == warmup
    assert said is None if off is None else said.startswith(off)


def test_a_small_budget_explores_prunes_late_and_leaves_out_importances(small, tmp_path, capsys, caplog):
    # The budget, shortened: trials of 3 steps, evaluated at each. Two trials leave none to prune (and the
    # run says so); resumed to three, the first two (the recipe's values and one draw) have finished and the third
    # is never stopped before its second evaluation; importances wait for 4 finished trials.
    out = tmp_path / "study"
    recipe = tmp_path / "recipe.yaml"
    settings = {"max_steps": 3, "eval_steps": 1, "save_steps": 1, "per_device_train_batch_size": 16}
    recipe.write_text(yaml.safe_dump(tune_recipe(small, out, **settings)))
    assert cli_main(["tune", str(recipe), "--trials", "2"]) == 0
    printed = capsys.readouterr()
    assert "hftk tune: pruning is off: 2 trials leave none to prune after the 2 finished trials" in caplog.text
    assert "parameter importances need 4 finished trials; this study has 2" in printed.out
    caplog.clear()
    assert cli_main(["tune", str(recipe), "--trials", "3", "--resume"]) == 0
    printed = capsys.readouterr()
    assert "pruning is off" not in caplog.text
    trials = study_trials(out)
    assert [t.state.name for t in trials[:2]] == ["COMPLETE", "COMPLETE"]
    assert len(trials) == 3 and len(trials[2].intermediate_values) >= 2  # 3 evaluations, or stopped at the 2nd
    complete = sum(t.state.name == "COMPLETE" for t in trials)
    note = f"parameter importances need 4 finished trials; this study has {complete}"
    assert note in printed.out
    summary = json.loads((out / "tune.json").read_text())
    assert summary["importances"] == {} and summary["importance_note"].startswith(note)
