"""The command line: exit status 2 and one line per problem for bad input, never a traceback."""

import os
import subprocess
import sys
import time

import pytest

from .helpers import DATA, ROOT, assert_user_error, cli_error, hftk


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


GARBAGE = {
    "missing": None,
    "folder": "dir",
    "empty": b"",
    "binary": bytes(range(256)) * 8,
    "broken yaml": b"task: [text-classification\nmodel: {",
    "a number": b"42\n",
}


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_every_command_given_garbage_says_one_line_and_exits_2(kind, sst2_model, capsys, tmp_path, monkeypatch):
    """Garbage in every place a command takes a path: one `hftk: error:` line, exit 2, never a traceback."""
    monkeypatch.chdir(tmp_path)
    spec = GARBAGE[kind]
    garbage = tmp_path / "garbage.yaml"
    if spec == "dir":
        garbage.mkdir()
    elif spec is not None:
        garbage.write_bytes(spec)
    good = tmp_path / "in.txt"
    good.write_text("a fine film\n")
    model = str(sst2_model)
    commands = [
        ["train", garbage],
        ["check", garbage],
        ["train", garbage, "--resume"],
        ["predict", garbage, "--input", good, "--output", "out.jsonl"],
        ["predict", model, "--input", garbage, "--output", "out.jsonl"],
        ["evaluate", garbage, "--data", DATA / "en/sst2/dev.tsv"],
        ["evaluate", model, "--data", garbage],
        ["embed", garbage, "--input", good, "--output", "out.npy"],
        ["embed", model, "--input", garbage, "--output", "out.npy"],
        ["runs", garbage],
        ["runs", "--compare", garbage, garbage],
    ]
    for command in commands:
        message = cli_error(capsys, *command)
        assert str(garbage.name) in message or "garbage" in message, (command, message)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == (["garbage.yaml", "in.txt"] if spec is not None else ["in.txt"])  # nothing written


def test_tasks_lists_every_task_and_each_example_recipe_validates(capsys):
    import yaml

    from hftk import load_recipe
    from hftk.tasks import get_task, task_names

    from .helpers import cli

    cli("tasks")
    listing = capsys.readouterr().out
    for name in task_names():
        assert name in listing
        cli("tasks", name)
        example = capsys.readouterr().out
        if get_task(name).trainable:  # a recipe that validates as it stands, roles as columns
            recipe = load_recipe(yaml.safe_load(example))
            assert recipe.task == name and recipe.data.train
            assert all(f"{role}: {role}" in example for role in get_task(name).input_roles)
        else:
            assert f"--task {get_task(name).pipeline_task}" in example
    assert "roles: text, [text_pair], label" in listing


def test_train_and_predict_of_an_unreachable_hub_model_fail_fast_with_the_fix(tmp_path, capsys):
    """No HF offline switch, a Hub that refuses connections: one probe, then the error, not retries (~80 s)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # discard port: refused at once, with or without a network
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hftk", "train", "recipes/jsick-ja.yaml", "--output", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    unreachable = "cl-tohoku/bert-base-japanese-v3: no model folder here, and the Hugging Face Hub cannot be reached"
    assert_user_error(proc, unreachable, "--set model=")
    assert len(proc.stderr.strip().splitlines()) == 1 and time.perf_counter() - start < 45
    assert not (tmp_path / "run").exists()
    (tmp_path / "in.txt").write_text("猫が好きです。\n", encoding="utf-8")
    for command in (["predict", "--output", tmp_path / "out.jsonl"], ["evaluate", "--data"]):
        args = [command[0], "cl-tohoku/bert-base-japanese-v3", "--task", "text-classification", *command[1:]]
        if command[0] == "evaluate":
            args.append(tmp_path / "in.txt")
        else:
            args += ["--input", tmp_path / "in.txt"]
        assert "the Hugging Face Hub cannot be reached" in cli_error(capsys, *args)
