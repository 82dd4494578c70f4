"""`hftk push` (hftk/inference/push.py): what this machine can check without the Hub. The upload itself is one
`HfApi.upload_folder` call (one commit); what goes into it, and what stops a push before anything is sent, is
tested here."""

from __future__ import annotations

import shutil
from pathlib import Path

from huggingface_hub import ModelCard

from hftk import load_recipe
from hftk.inference.push import files_to_push, shared_recipe
from hftk.tasks import get_task
from hftk.training.output import model_card

from ..helpers import cli_error


def test_the_files_that_go_up_are_the_models_not_its_checkpoints_or_tracker_logs(sst2_model, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(sst2_model, folder)
    (folder / "checkpoints" / "checkpoint-9").mkdir(parents=True, exist_ok=True)
    (folder / "checkpoints" / "checkpoint-9" / "model.safetensors").write_bytes(b"x")
    (folder / ".hftk-lock").write_text("{}")
    (folder / ".staging").mkdir()
    (folder / "tracking" / "tensorboard").mkdir(parents=True)  # the trackers' logs: settings, this machine's paths
    (folder / "tracking" / "mlflow.db").write_bytes(b"x")
    figures = sorted(f"report/figures/{p.name}" for p in (folder / "report" / "figures").iterdir())
    assert figures  # the evaluation report goes up with the card that links it
    assert files_to_push(folder) == [
        "README.md",
        "config.json",
        "metrics.json",
        "model.safetensors",
        "recipe.yaml",
        *figures,
        "report/report.html",
        "report/report.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "training_curve.png",
    ]


def test_the_card_says_language_license_datasets_and_results(tmp_path):
    recipe = load_recipe(
        {
            "task": "text-classification",
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "data": {"train": "t.tsv", "validation": "d.tsv"},
            "card": {"language": "en", "license": "apache-2.0", "datasets": ["stanfordnlp/sst2"], "tags": ["sst2"]},
            "output_dir": str(tmp_path / "sst2-minilm"),
        }
    )
    task = get_task(recipe.task)(recipe, None)
    task.names = ["negative", "positive"]
    metrics = {"eval": {"eval_accuracy": 0.9, "eval_f1": 0.91, "eval_runtime": 3.0}, "test": {"test_accuracy": 0.88}}
    data = ModelCard(model_card(recipe, task, metrics)).data
    assert (data.language, data.license, data.datasets) == ("en", "apache-2.0", ["stanfordnlp/sst2"])
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and data.tags == ["hftk", "sst2"]
    assert data.model_name == "sst2-minilm"
    got = {(r.dataset_name, r.dataset_split, r.metric_type, r.metric_value) for r in data.eval_results}
    assert got == {
        ("stanfordnlp/sst2", "validation", "accuracy", 0.9),
        ("stanfordnlp/sst2", "validation", "f1", 0.91),
        ("stanfordnlp/sst2", "test", "accuracy", 0.88),
    }


def test_a_push_that_cannot_happen_stops_before_sending_anything(sst2_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = cli_error(capsys, "push", sst2_model, "me/sst2")
    assert "HF_HUB_OFFLINE is set: hftk push needs the network" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored token either
    err = cli_error(capsys, "push", sst2_model, "me/sst2")
    assert "no Hugging Face token: run `hf auth login` or set HF_TOKEN (nothing was sent)" in err
    err = cli_error(capsys, "push", tmp_path, "me/sst2")
    assert "no config.json here, so no model to push" in err


def test_the_recipe_goes_up_without_this_machines_paths(sst2_model):
    """The saved recipe.yaml keeps absolute paths (evaluate and export find the data from anywhere); the Hub's copy
    names files by their last part, as the card does."""
    import yaml

    saved = yaml.safe_load((sst2_model / "recipe.yaml").read_text())
    assert Path(saved["data"]["train"]).is_absolute()
    shared = yaml.safe_load(shared_recipe(sst2_model / "recipe.yaml"))
    assert shared["data"]["train"] == Path(saved["data"]["train"]).name == "train.tsv"
    assert shared["data"]["validation"] == "dev.tsv" and shared["output_dir"] == Path(saved["output_dir"]).name
    assert str(sst2_model.parent) not in shared_recipe(sst2_model / "recipe.yaml").decode()
    assert {k: v for k, v in shared.items() if k not in ("data", "output_dir")} == {
        k: v for k, v in saved.items() if k not in ("data", "output_dir")
    }
