"""hftk/training/tracking.py: what each tracker holds after a run, read back with its own reader, and the trackers
refused before any weights load."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from hftk import load_recipe, train
from hftk.errors import HftkError
from hftk.tasks import get_task
from hftk.training import tracking

from ..helpers import QUICK, sst2_recipe, sst2_sample

TRAINING = {
    "max_steps": 4,
    "per_device_train_batch_size": 8,
    "logging_steps": 1,
    "eval_strategy": "steps",
    "eval_steps": 2,
    "save_strategy": "steps",
    "save_steps": 4,
    "disable_tqdm": True,
}


def _recipe(tmp_path, trackers):
    return load_recipe(sst2_recipe(sst2_sample(tmp_path, 4, 4), tmp_path / "out", tracking=trackers))


@pytest.fixture
def own_settings(monkeypatch):
    """None of the trackers' own settings from the environment: each writes where hftk puts it."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "TENSORBOARD_LOGGING_DIR", "TRACKIO_SPACE_ID"):
        monkeypatch.delenv(name, raising=False)


def test_each_tracker_holds_the_logged_losses_the_parameters_and_the_final_metrics(tmp_path, own_settings):
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from trackio import Api
    from trackio.sqlite_storage import SQLiteStorage

    out = tmp_path / "run"
    project = f"test-{tmp_path.name}"  # trackio's store is the test session's (conftest): a project of its own
    recipe = sst2_recipe(
        sst2_sample(tmp_path, 32, 8), out, tracking=["tensorboard", "mlflow", "trackio"], training=TRAINING
    )
    recipe["training"]["project"] = project
    result = train(recipe)
    state = json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    losses = {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}
    assert sorted(losses) == [1, 2, 3, 4]
    accuracy = result.metrics["eval"]["eval_accuracy"]  # of the best checkpoint, evaluated after training

    events = EventAccumulator(str(out / "tracking" / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    as_written = {step: float(np.float32(loss)) for step, loss in losses.items()}  # TensorBoard keeps float32
    assert {e.step: e.value for e in events.Scalars("train/loss")} == as_written
    assert events.Scalars("final/eval_accuracy")[-1].value == float(np.float32(accuracy))
    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["rows.train"].number_value == 32 and hparams["recipe.task"].string_value == "text-classification"

    client = MlflowClient(f"sqlite:///{out}/tracking/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name(project).experiment_id])
    assert (run.info.run_name, run.info.status) == ("run", "FINISHED")
    assert {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")} == losses
    params = run.data.params
    assert (
        params["recipe.training.learning_rate"] == "0.0001"
        and params["recipe.tracking"] == '["tensorboard", "mlflow", "trackio"]'
    )
    assert (params["rows.train"], params["rows.validation"]) == ("32", "8")
    assert run.data.metrics["final/eval_accuracy"] == accuracy
    # The evaluation after training is the same run's, not a second one's.
    assert {m.step for m in client.get_metric_history(run.info.run_id, "eval_accuracy")} == {2, 4}
    # hftk's store was this run's only: the next run in this process (a tune trial) gets its own.
    assert "MLFLOW_TRACKING_URI" not in os.environ

    (logged,) = Api().runs(project)
    assert logged.name == "run" and logged.config["rows.train"] == 32
    logs = SQLiteStorage.get_logs(project, "run", run_id=logged.id)  # by trackio's count; transformers' step beside
    assert {row["train/global_step"]: row["train/loss"] for row in logs if "train/loss" in row} == losses
    final = [(row["train/global_step"], row["final/eval_accuracy"]) for row in logs if "final/eval_accuracy" in row]
    assert final == [(4, accuracy)]


def test_a_run_trained_again_with_overwrite_is_a_new_run_in_each_tracker(tmp_path, own_settings):
    """transformers' trackio callback would add the second run's steps to the first run of the same name."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from trackio import Api
    from trackio.sqlite_storage import SQLiteStorage

    out, project = tmp_path / "run", f"test-{tmp_path.name}"
    recipe = sst2_recipe(sst2_sample(tmp_path, 16, 4), out, tracking=["tensorboard", "trackio"], training=QUICK)
    recipe["training"] |= {"logging_steps": 1, "project": project}
    train(recipe)
    train(recipe | {"training": recipe["training"] | {"max_steps": 3}}, overwrite=True)
    events = EventAccumulator(str(out / "tracking" / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]  # the first run's events went with it
    first, second = Api().runs(project)
    steps = [
        sorted(
            row["train/global_step"]
            for row in SQLiteStorage.get_logs(project, "run", run_id=run.id)
            if "train/loss" in row
        )
        for run in (first, second)
    ]
    assert steps == [[1, 2], [1, 2, 3]]


def test_a_tracker_does_not_change_the_features_cache_key(tmp_path, tok):
    plain, tracked = (_recipe(tmp_path, trackers) for trackers in ([], ["tensorboard", "mlflow"]))
    settings = [get_task(r.task)(r, tok).feature_settings() for r in (plain, tracked)]
    assert settings[0] == settings[1]


def test_a_missing_package_is_one_line_naming_the_extra(tmp_path, own_settings, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets where it is not installed
    with pytest.raises(HftkError) as e:
        tracking.check(_recipe(tmp_path, ["tensorboard", "mlflow"]))
    assert str(e.value) == "tracking: mlflow needs the mlflow package; pip install 'hftk[tracking]'"


def test_wandb_without_an_account_is_refused_and_offline_needs_none(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setitem(sys.modules, "wandb", None)
    recipe = _recipe(tmp_path, "wandb")
    with pytest.raises(HftkError, match="no W&B account is set up here: set WANDB_API_KEY") as e:
        tracking.check(recipe)
    assert "WANDB_MODE=offline" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(HftkError, match=r"^tracking: wandb needs the wandb package; pip install 'hftk\[wandb\]'$"):
        tracking.check(recipe)


def test_an_mlflow_server_out_of_reach_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(HftkError, match=r"^tracking: mlflow cannot reach http://127.0.0.1:9 \(.*\); start the server"):
        tracking.check(_recipe(tmp_path, ["mlflow"]))
