"""hftk/inference/predict.py: the batched Predictor on a trained SST-2 model: progress, and the device and precision
it picks for this machine."""

import pytest

from hftk import HftkError, Predictor


def test_long_inputs_show_progress_short_ones_stay_quiet(sst2_model, capsys):
    from hftk import Predictor
    from hftk.inference.predict import PROGRESS_FROM

    predictor = Predictor(sst2_model)
    assert predictor.model is not None  # loaded (transformers' own bar) before what is measured
    capsys.readouterr()
    predictor.predict(["A fine film."] * 3)
    assert capsys.readouterr().err == ""
    predictor.predict(["A fine film."] * PROGRESS_FROM)
    bar = capsys.readouterr().err
    assert f"/{PROGRESS_FROM} [" in bar and "input/s" in bar  # count, elapsed, ETA and rate


def test_inference_precision_is_this_machines_not_the_training_runs(sst2_model, tmp_path):
    """A recipe that trained in fp16 on a GPU still predicts on a CPU (auto); --precision fp16 here is an error."""
    import shutil

    from hftk.models.loading import device_policy

    folder = tmp_path / "gpu-trained"
    shutil.copytree(sst2_model, folder)
    recipe = folder / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("precision: auto", "precision: fp16"))
    predictor = Predictor(folder)
    assert predictor.policy == device_policy("auto") and len(predictor.predict(["fine"])) == 1
    assert Predictor(folder, precision="fp32").policy.precision == "fp32"
    with pytest.raises(HftkError, match="fp16 needs a CUDA GPU"):
        Predictor(folder, precision="fp16")


def test_predict_reads_a_model_folders_recipe_without_trainers_stack(tmp_path):
    # hftk predict's start-up (issue 29): a trained folder's recipe.yaml was checked when it trained; building
    # TrainingArguments again (for training: and for each search: value) imported Trainer's stack (peft, pandas,
    # sklearn: most of 12-35 s here). A recipe a user gives is still checked against TrainingArguments.
    import subprocess
    import sys

    from ..helpers import RECIPE_YAML, ROOT

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE_YAML + "search:\n  training.learning_rate: {low: 1.0e-5, high: 1.0e-4, log: true}\n")
    heavy = ("optuna", "matplotlib", "peft", "sklearn", "pandas", "datasets", "fastapi", "transformers.training_args")
    probe = (
        "import sys; import hftk.inference.predict; from hftk.tasks import load_recipe; "
        f"load_recipe({str(recipe)!r}, trained={{}}); print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )

    def imported(trained: bool) -> str:
        run = subprocess.run(
            [sys.executable, "-c", probe.format(trained)], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return run.stdout.strip()

    assert imported(True) == "[]"
    assert "'transformers.training_args'" in imported(False)
