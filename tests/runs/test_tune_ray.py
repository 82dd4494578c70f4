"""hftk/runs/tune_ray.py: the Ray Tune backend of `hftk tune`, on a local Ray instance (slow: `make test-slow`)."""

from __future__ import annotations

import pytest
import yaml

import hftk
from hftk.runs.tune import tune

from ..helpers import study_trials, tune_recipe


@pytest.mark.slow
def test_ray_backend_runs_the_study_on_a_local_ray_instance(small, tmp_path):
    pytest.importorskip("ray.tune")
    out = tmp_path / "study"
    result = tune(tune_recipe(small, out), trials=2, backend="ray")
    trials = study_trials(out)  # Ray's OptunaSearch writes into the same study.db
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    assert result.best_value == max(t.value for t in trials)
    assert not (out / "trials").exists() and (out / "ray").is_dir()
    saved = yaml.safe_load((out / "best" / "recipe.yaml").read_text())
    assert saved["training"]["learning_rate"] == pytest.approx(result.best_params["training.learning_rate"])
    assert hftk.Predictor(out / "best").predict(["a wonderful film"])[0]["label"] in ("negative", "positive")
