from hftk import load_recipe
from hftk.models.loading import DevicePolicy
from hftk.tasks import get_task
from hftk.training.prepare import training_arguments

from ..helpers import MINILM, RECIPE_YAML, ROOT, recipe_error, write_recipe


def test_valid_recipe_is_typed(tmp_path):
    r = load_recipe(write_recipe(tmp_path, RECIPE_YAML))
    assert r.task == "text-classification" and r.model == MINILM
    assert r.data.column("text") == "sentence" and r.data.column("label") == "label"
    assert r.problem_type == "single_label"
    args = training_arguments(get_task(r.task)(r, None), DevicePolicy("cpu", "fp32"), tmp_path, has_eval=True)
    assert args.learning_rate == 3e-5
    assert args.train_sampling_strategy == "group_by_length"  # hftk default kept


def test_misspelled_key_names_line_and_suggests(tmp_path):
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML + "max_lenght: 128\n"))
    expected = "max_lenght: unknown key (did you mean 'max_length'?); remove it or fix its spelling"
    assert msg == f"{tmp_path / 'recipe.yaml'}:8: {expected}"


def test_misspelled_nested_key(tmp_path):
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML.replace("  columns:", "  colums:")))
    assert ":5: data.colums: unknown key (did you mean 'columns'?)" in msg


def test_missing_required_and_unknown_task(tmp_path):
    assert "model: required; add it to the recipe" in recipe_error(
        write_recipe(tmp_path, RECIPE_YAML.replace("model:", "#"))
    )
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML.replace("text-classification", "text-clasification")))
    assert ":1: task: 'text-clasification' is not a task hftk knows (did you mean 'text-classification'?)" in msg


def test_tracking_takes_one_name_or_a_list_and_no_tracker_is_the_default(tmp_path):
    assert load_recipe(write_recipe(tmp_path, RECIPE_YAML)).tracking == []
    assert load_recipe(write_recipe(tmp_path, RECIPE_YAML + "tracking: mlflow\n")).tracking == ["mlflow"]
    both = load_recipe(write_recipe(tmp_path, RECIPE_YAML + "tracking: [tensorboard, trackio, tensorboard]\n"))
    assert both.tracking == ["tensorboard", "trackio"]
    assert load_recipe(write_recipe(tmp_path, RECIPE_YAML + "tracking: none\n")).tracking == []
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML + "tracking: {mlflow: true}\n"))
    assert ":8: tracking: give a tracker's name or a list of them" in msg
    # Trainer's own key, as recipes and saved model folders said it before tracking: existed, is read as tracking:
    text = RECIPE_YAML.replace("training:\n", "training:\n  report_to: [tensorboard]\n")
    legacy = load_recipe(write_recipe(tmp_path, text))
    assert legacy.tracking == ["tensorboard"] and legacy.training == {"learning_rate": 3e-5}


def test_every_shipped_recipe_validates():
    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert recipes, "no recipes found"
    for path in recipes:
        recipe = load_recipe(path)
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("#"), f"{path} should open with a comment showing its run command"
        assert f"hftk train recipes/{path.relative_to(ROOT / 'recipes')}" in path.read_text(), path
        assert recipe.output_dir.startswith("runs/"), path
