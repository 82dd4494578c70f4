"""hftk/runs/folder.py: the life of a folder of many runs (refuse, resume, lock, clear) and the record of what its
runs were trained with, which a resumed command compares."""

from __future__ import annotations

import shutil

import pytest

import hftk
from hftk import HftkError
from hftk.runs.folder import RunsFolder, changed_settings, settings, trained_with
from hftk.tasks import load_recipe

from ..helpers import sst2_recipe


class Batch(RunsFolder):
    """A command whose folder holds runs/ and summary.json."""

    marker, what, command = "summary.json", "a batch", "hftk batch"
    noun, purpose, serial = "batch", "batch", "hftk batch runs one after another"

    def ours(self):
        return [self.out / "runs", self.out / "summary.json"]


def test_a_folder_of_runs_is_refused_resumed_locked_and_cleared_of_its_own_files_only(tmp_path):
    out = tmp_path / "out"
    folder = Batch(out)
    with pytest.raises(HftkError, match=r"no batch to resume \(summary.json is missing\)"):
        folder.check(resume=True, overwrite=False)
    (out / "runs" / "run-1").mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    (out / "notes.txt").write_text("the user's own")
    with pytest.raises(HftkError, match=r"holds a batch \(summary.json\); pass --resume"):
        folder.check(resume=False, overwrite=False)
    # a second command on the folder stops at once
    with (
        folder.held(resume=True, overwrite=False),
        pytest.raises(HftkError, match="hftk batch"),
        Batch(out).held(resume=True, overwrite=False),
    ):
        pass
    with folder.held(resume=False, overwrite=True):
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["notes.txt"]
    # a folder of something else is `hftk train`'s rule: not empty, so refused
    with pytest.raises(HftkError, match="output directory is not empty"):
        Batch(out).check(resume=False, overwrite=False)


def test_begin_refuses_both_flags_torchrun_and_a_task_that_does_not_train(monkeypatch, tmp_path):
    recipe = sst2_recipe({"train": tmp_path / "t.csv", "validation": tmp_path / "v.csv"}, tmp_path / "out")
    with pytest.raises(HftkError, match="--resume continues the batch in the output directory, --overwrite"):
        Batch.begin(recipe, None, None, resume=True, overwrite=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(HftkError, match="hftk batch runs one after another; start it without torchrun"):
        Batch.begin(recipe, None, None, resume=False, overwrite=False)
    monkeypatch.delenv("WORLD_SIZE")
    embed = {"task": "feature-extraction", "model": recipe["model"], "data": {"train": str(tmp_path / "t.txt")}}
    with pytest.raises(HftkError, match="there is nothing to batch"):
        Batch.begin(embed, None, None, resume=False, overwrite=False)


def test_trained_with_records_data_by_content_and_names_each_change(small, tmp_path):
    moved = {"train": tmp_path / "elsewhere.csv", "validation": small["validation"]}
    shutil.copy(small["train"], moved["train"])
    base = load_recipe(sst2_recipe(small, tmp_path / "a"))
    # another folder, another path to the same bytes, more logging, a tracker: nothing measured changed
    same = load_recipe(sst2_recipe(moved, tmp_path / "b", training={"logging_steps": 3}, tracking=["mlflow"]))
    assert trained_with(base) == trained_with(same)
    moved["train"].write_text(small["train"].read_text().replace("\n", "\r\n"))
    faster = load_recipe(sst2_recipe(moved, tmp_path / "b", training={"learning_rate": 3e-4}))
    assert changed_settings(trained_with(base), trained_with(faster)) == [
        "data.train: other file content",
        "training.learning_rate 0.0001 -> 0.0003",
    ]
    # a training argument left at transformers' default equals one set to it
    assert changed_settings({"training.adam_beta1": 0.9}, {}) == []
    assert changed_settings({}, {"training.adam_beta1": 0.8}) == ["training.adam_beta1 0.9 -> 0.8"]


def test_settings_fill_in_hftks_defaults_and_on_request_transformers_own(small, tmp_path):
    recipe = hftk.load_recipe(sst2_recipe(small, tmp_path / "out"))
    assert settings(recipe)["training.learning_rate"] == 1e-4  # the recipe's
    assert settings(recipe)["training.weight_decay"] == 0.01  # hftk's default
    assert "training.adam_beta1" not in settings(recipe)
    assert settings(recipe, every=True)["training.adam_beta1"] == 0.9  # TrainingArguments' default
    assert settings(recipe)["data.columns.text"] == "sentence"
