"""hftk/config/yaml.py: YAML 1.2's plain values, no Python objects, duplicate keys and syntax errors with their
lines."""

from hftk import load_recipe
from hftk.config.reading import parse_overrides

from ..helpers import RECIPE_YAML, recipe_error, write_recipe


def test_bad_yaml_names_line(tmp_path):
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML + "labels: [a, b\n"))
    assert msg.startswith(f"{tmp_path / 'recipe.yaml'}:") and "invalid YAML" in msg


def test_yaml_tags_are_not_executed(tmp_path):
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML + "x: !!python/object/apply:os.system ['echo hacked']\n"))
    assert "invalid YAML" in msg


def test_yaml_is_read_as_yaml_1_2_so_what_is_typed_arrives(tmp_path):
    """YAML 1.1 (PyYAML's default) turns no/yes/on/off into booleans, 1:30 into 90 and dates into dates."""
    from hftk.config.yaml import safe_load

    values = safe_load("a: no\nb: on\nc: 1:30\nd: 2026-12-02\ne: 3e-5\nf: true\ng: 0x10\nh: ~\n")
    assert values == {"a": "no", "b": "on", "c": "1:30", "d": "2026-12-02", "e": 3e-5, "f": True, "g": 16, "h": None}
    # YAML 1.2 integers: a leading zero is decimal (1.1 read 017 as octal 15); octal is 0o, hex 0x, unsigned
    ints = safe_load("a: 017\nb: 0o17\nc: -010\nd: +7\ne: -0x1F\n")
    assert ints == {"a": 17, "b": 15, "c": -10, "d": 7, "e": "-0x1F"}
    overrides = parse_overrides(["x=#", "y=|", "z=null", "w=no", "v=[a, b]", "u=''"])
    assert overrides == {"x": "#", "y": "|", "z": None, "w": "no", "v": ["a", "b"], "u": ""}
    r = load_recipe(
        write_recipe(
            tmp_path, RECIPE_YAML + "  save_strategy: no\n  eval_strategy: no\n  load_best_model_at_end: false\n"
        )
    )
    assert r.training["eval_strategy"] == "no"


def test_a_key_given_twice_is_an_error_with_both_lines(tmp_path):
    msg = recipe_error(write_recipe(tmp_path, RECIPE_YAML + "training:\n  num_train_epochs: 2\n"))
    assert "invalid YAML: key 'training' given twice (first on line" in msg
