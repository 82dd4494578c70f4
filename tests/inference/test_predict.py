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
