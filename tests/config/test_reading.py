"""hftk/config/reading.py: a recipe file read with every problem at once and located, --set, and the saved recipe."""

from pathlib import Path

import pytest

from hftk import HftkError, load_recipe
from hftk.config.reading import parse_overrides

from ..helpers import MINILM, RECIPE_YAML, recipe_error, write_recipe


def test_all_errors_reported_at_once(tmp_path):
    text = RECIPE_YAML.replace("learning_rate:", "learnig_rate:") + "max_length: -3\nbogus: 1\n"
    lines = recipe_error(write_recipe(tmp_path, text)).splitlines()
    assert len(lines) == 3
    assert any("max_length: Input should be greater than 0" in line for line in lines)
    assert any("bogus: unknown key" in line for line in lines)


def test_missing_file_and_not_a_mapping(tmp_path):
    assert "recipe file not found" in recipe_error(tmp_path / "nope.yaml")
    assert "a recipe is a YAML mapping" in recipe_error(write_recipe(tmp_path, "- a\n- b\n"))


def test_overrides_parse_yaml_values_and_apply(tmp_path):
    overrides = parse_overrides(["training.learning_rate=1e-4", "data.train=x.tsv", "labels=[a, b]"])
    assert overrides == {"training.learning_rate": 1e-4, "data.train": "x.tsv", "labels": ["a", "b"]}
    r = load_recipe(write_recipe(tmp_path, RECIPE_YAML), overrides)
    assert r.training["learning_rate"] == 1e-4 and r.data.train == "x.tsv" and r.labels == ["a", "b"]
    with pytest.raises(HftkError, match="expected KEY=VALUE"):
        parse_overrides(["training.learning_rate"])


def test_relative_data_paths_start_at_the_recipes_folder(tmp_path, monkeypatch):
    """A recipe works from any folder; paths given on the command line (--set) stay relative to the current one."""
    folder = tmp_path / "project" / "recipes"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("text\tlabel\na\tx\n")
    (tmp_path / "project" / "dev.tsv").write_text("text\tlabel\nb\ty\n")
    (tmp_path / "only-here.tsv").write_text("text\tlabel\nc\tz\n")
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        "task: text-classification\nmodel: m\ndata: {train: train.tsv, validation: ../dev.tsv, test: only-here.tsv}\n"
    )
    monkeypatch.chdir(tmp_path)
    data = load_recipe(recipe).data
    assert data.train == str(folder / "train.tsv") and data.validation == str(tmp_path / "project" / "dev.tsv")
    assert data.test == "only-here.tsv"  # not beside the recipe, found from the current folder: as before
    assert load_recipe(recipe, {"data.train": "mine.tsv"}).data.train == "mine.tsv"
    assert load_recipe(Path("project/recipes/recipe.yaml")).data.train == "project/recipes/train.tsv"


def test_a_saved_recipe_finds_its_data_from_any_folder_and_after_the_model_folder_moves(tmp_path, monkeypatch):
    """recipe.yaml in an output folder names its data by absolute paths: relative ones meant the training run's
    folder, so `hftk export`/`evaluate` run elsewhere found no validation file."""
    from hftk.config.reading import dump_recipe

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (project / "data" / name).write_text("text\tlabel\na\tx\n")
    monkeypatch.chdir(project)
    given = {"data": {"train": "data/train.tsv", "validation": "./data/dev.tsv"}, "output_dir": "out"}
    recipe = load_recipe({"task": "text-classification", "model": MINILM, **given})
    saved = tmp_path / "elsewhere" / "model" / "recipe.yaml"
    saved.parent.mkdir(parents=True)
    saved.write_text(dump_recipe(recipe), encoding="utf-8")
    monkeypatch.chdir(tmp_path / "elsewhere")
    data = load_recipe(saved).data
    assert data.train == str(project / "data/train.tsv") and data.validation == str(project / "data/dev.tsv")
    assert Path(data.validation).is_file() and load_recipe(saved).model == MINILM
