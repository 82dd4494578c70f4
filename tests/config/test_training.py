"""hftk/config/training.py: a recipe's training: block checked against TrainingArguments itself."""

from ..helpers import RECIPE_YAML, recipe_error, write_recipe


def test_training_key_checked_against_training_arguments(tmp_path):
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML.replace("learning_rate:", "learnig_rate:")))
    assert ":7: training.learnig_rate: not a TrainingArguments field (did you mean 'learning_rate'?)" in msg


def test_training_value_type_and_value_checked(tmp_path):
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML.replace("3.0e-5", "fast")))
    assert "training.learning_rate: expected float, got 'fast'" in msg
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML + "  eval_strategy: sometimes\n"))
    assert "training: sometimes is not a valid IntervalStrategy" in msg


def test_output_dir_belongs_to_hftk(tmp_path):
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML + "  output_dir: elsewhere\n"))
    assert "training.output_dir: set by hftk" in msg
