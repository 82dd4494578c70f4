"""The command line: exit status 2 and one line per problem for bad input, never a traceback."""

from .helpers import DATA, ROOT, assert_user_error, hftk


def test_bad_recipe_key_exit_2_one_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text((ROOT / "recipes/sst2-minilm.yaml").read_text().replace("max_length", "max_lenght"))
    assert_user_error(hftk("check", str(recipe)), "r.yaml:12: max_lenght: unknown key (did you mean 'max_length'?)")


def test_unseen_validation_label(tmp_path):
    dev = tmp_path / "dev.tsv"
    dev.write_text((DATA / "en/sst2/dev.tsv").read_text().replace("\t1\n", "\t2\n", 1))
    proc = hftk("check", "recipes/sst2-minilm.yaml", "--set", f"data.validation={dev}")
    assert_user_error(proc, f"{dev}:2: label '2' is not among the training labels")


def test_missing_data_file():
    proc = hftk("check", "recipes/sst2-minilm.yaml", "--set", "data.train=nope.tsv")
    assert_user_error(proc, "nope.tsv: data file not found")


def test_bad_override_and_missing_model_dir(tmp_path):
    assert_user_error(hftk("train", "recipes/sst2-minilm.yaml", "--set", "oops"), "expected KEY=VALUE")
    empty = tmp_path / "model"
    empty.mkdir()
    assert_user_error(hftk("predict", str(empty), "--input", "x.txt", "--output", "y.jsonl"), "no config.json")


def test_version():
    proc = hftk("--version")
    assert proc.returncode == 0 and proc.stdout.strip().startswith("hftk 0.")
