"""`hftk runs`: the table of real MiniLM runs, --sort, --json, --compare, the kinds of run, damaged files."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

import hftk
from hftk.runs.folds import cross_validate
from hftk.runs.tune import tune

from ..helpers import MINILM, QUICK, assert_user_error, cli, cli_error, sst2_recipe, sst2_sample
from ..helpers import hftk as hftk_process

# Three runs that differ in two settings; the third one in a sub-folder, as runs are found recursively.
RUNS = {
    "sst2-a": {"learning_rate": 1e-4, "max_steps": 2},
    "sst2-b": {"learning_rate": 3e-4, "max_steps": 2},
    "longer/sst2-c": {"learning_rate": 3e-4, "max_steps": 4},
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return sst2_sample(tmp_path_factory.mktemp("sst2_runs"), 32, 16)


def _recipe(sample, out, **training):
    return sst2_recipe(sample, out, max_length=32, training={**QUICK, **training}, keep_checkpoints=False)


@pytest.fixture(scope="module")
def runs(sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("listing") / "runs"
    for name, training in RUNS.items():
        hftk.train(_recipe(sample, root / name, **training))
    saved = {name: json.loads((root / name / "metrics.json").read_text()) for name in RUNS}
    return SimpleNamespace(root=root, saved=saved)


def test_the_table_lists_each_run_once_with_what_its_folder_says(runs):
    table = hftk.list_runs(runs.root)
    assert [r.name for r in table.runs] == sorted(RUNS)
    for run in table.runs:
        saved = runs.saved[run.name]
        assert (run.kind, run.task, run.model, run.data) == ("train", "text-classification", MINILM, "train.tsv")
        assert run.rows == saved["data"] == {"train": 32, "validation": 16}
        assert run.main_metric == saved["main_metric"] == "eval_accuracy"
        assert run.value("eval_accuracy") == saved["eval"]["eval_accuracy"]
        assert run.metrics["eval_loss"] == saved["eval"]["eval_loss"] and "eval_runtime" not in run.metrics
        assert run.steps == saved["train"]["global_step"] == RUNS[run.name]["max_steps"]
        assert run.seconds == saved["train"]["train_runtime"] and run.problems == []
    # only the settings that differ, each run's own value
    assert table.settings == ["training.learning_rate", "training.max_steps"]
    assert {r.name: r.differs for r in table.runs} == {
        name: {f"training.{k}": v for k, v in training.items()} for name, training in RUNS.items()
    }
    head, *lines = table.table().splitlines()
    assert head.split() == [
        "run", "task", "model", "data", "rows", "learning_rate", "max_steps", "accuracy", "best", "step", "time", "date"
    ]  # fmt: skip
    for line, run in zip(lines, table.runs):
        cells = line.split()
        assert cells[:8] == [
            run.name, "text-classification", MINILM, "train.tsv", "32/16",
            f"{RUNS[run.name]['learning_rate']:g}", str(RUNS[run.name]["max_steps"]),
            f"{runs.saved[run.name]['eval']['eval_accuracy']:.4f}",
        ]  # fmt: skip
        assert cells[8:10] == [str(run.steps), "(last)"]  # no checkpoint was chosen: the model is the last step


def test_sort_orders_best_first_and_lower_is_better_for_the_loss(runs):
    by_loss = hftk.list_runs(runs.root, sort="loss")
    losses = [r.metrics["eval_loss"] for r in by_loss.runs]
    assert losses == sorted(losses) and by_loss.sort == "eval_loss"
    assert by_loss.table().splitlines()[0].split()[7:9] == ["accuracy", "loss"]  # the sort metric gets a column
    by_accuracy = hftk.list_runs(runs.root, sort="eval_accuracy")
    ranked = [(-r.metrics["eval_accuracy"], r.name) for r in by_accuracy.runs]
    assert ranked == sorted(ranked)  # highest first, ties by name


def test_json_holds_every_column(runs, capsys):
    cli("runs", runs.root, "--json", "--sort", "loss")
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(hftk.list_runs(runs.root, sort="loss").records()))
    for row in printed:
        saved = runs.saved[row["run"]]
        assert row["rows"] == saved["data"] and row["value"] == saved["eval"]["eval_accuracy"]
        assert row["settings"] == {f"training.{k}": v for k, v in RUNS[row["run"]].items()}
        assert (row["main_metric"], row["best_step"]) == ("eval_accuracy", None)
        assert row["steps"] == saved["train"]["global_step"]
        assert row["seconds"] == saved["train"]["train_runtime"] and row["date"][:2] == "20"
        assert row["metrics"]["eval_f1_macro"] == saved["eval"]["eval_f1_macro"]


def test_compare_shows_the_settings_that_differ_and_every_metric_b_minus_a(runs, capsys):
    a, b = runs.saved["sst2-a"]["eval"], runs.saved["longer/sst2-c"]["eval"]
    comparison = hftk.compare_runs("sst2-a", "longer/sst2-c", folder=runs.root)  # names as the table shows them
    assert comparison.settings == {"training.learning_rate": [1e-4, 3e-4], "training.max_steps": [2, 4]}
    assert comparison.metrics[:2] == ["eval_accuracy", "eval_loss"]
    assert set(comparison.metrics) == {"eval_accuracy", "eval_loss", "eval_f1", "eval_f1_macro"}
    for metric in comparison.metrics:
        assert comparison.difference(metric) == b[metric] - a[metric]
    cli("runs", "--compare", runs.root / "sst2-a", runs.root / "sst2-b")  # paths from here
    text = capsys.readouterr().out
    assert ["training.learning_rate", "0.0001", "0.0003"] in [line.split() for line in text.splitlines()]
    loss = runs.saved["sst2-b"]["eval"]["eval_loss"] - runs.saved["sst2-a"]["eval"]["eval_loss"]
    assert f"{loss:+.4f}" in text and "training.max_steps" not in text
    cli("runs", "--compare", runs.root / "sst2-a", runs.root / "sst2-b", "--json")
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"] == [{"setting": "training.learning_rate", "a": 1e-4, "b": 3e-4}]
    assert {m["metric"]: m["difference"] for m in printed["metrics"]}["eval_loss"] == loss


def test_the_command_line_prints_the_table_and_one_line_for_a_bad_sort(runs):
    proc = hftk_process("runs", str(runs.root))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 + len(RUNS) and lines[0].startswith("run ")
    assert [line.split()[0] for line in lines[1:]] == sorted(RUNS)
    proc = hftk_process("runs", str(runs.root), "--sort", "f2")
    assert_user_error(proc, f"--sort f2: no run under {runs.root} has it; choose one of accuracy, f1, f1_macro, loss")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_folders_are_one_line_each(runs, tmp_path, capsys):
    assert cli_error(capsys, "runs", tmp_path / "nowhere").endswith(
        "nowhere: no such folder; name the folder your runs are in (hftk runs FOLDER)"
    )
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    assert f"no hftk runs under {tmp_path / 'empty'}; train one with hftk train RECIPE" in cli_error(
        capsys, "runs", tmp_path / "empty"
    )
    error = cli_error(capsys, "runs", "--compare", runs.root / "sst2-a", tmp_path / "empty")
    assert "empty: not an hftk output folder (no recipe.yaml and metrics.json in it)" in error
    assert "sst2-z: no such folder, here or in" in cli_error(capsys, "runs", runs.root, "--compare", "sst2-a", "sst2-z")
    assert "--sort orders the table" in cli_error(capsys, "runs", "--compare", "a", "b", "--sort", "loss")


def test_a_damaged_file_costs_its_row_cells_not_the_table(runs, tmp_path, caplog):
    root = tmp_path / "runs"
    for name in ("old", "bad-metrics", "bad-recipe"):
        shutil.copytree(runs.root / "sst2-a", root / name, ignore=shutil.ignore_patterns("*.safetensors"))
    old = runs.saved["sst2-a"].copy()
    del old["main_metric"]  # written before metrics.json named it: the task's own main metric
    (root / "old" / "metrics.json").write_text(json.dumps(old))
    (root / "bad-metrics" / "metrics.json").write_text('{"train": {')
    (root / "bad-recipe" / "recipe.yaml").write_text("task: text-classification\nmodel: [\n")
    table = hftk.list_runs(root)
    rows = {r.name: r for r in table.runs}
    assert sorted(rows) == ["bad-metrics", "bad-recipe", "old"]
    assert rows["old"].main_metric == "eval_accuracy" and rows["old"].problems == []
    assert rows["bad-metrics"].task == "text-classification" and rows["bad-metrics"].metrics == {}
    assert rows["bad-recipe"].task is None and rows["bad-recipe"].value("eval_accuracy") == old["eval"]["eval_accuracy"]
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hftk: warning: ")]
    assert len(warnings) == 2
    assert f"{root / 'bad-metrics' / 'metrics.json'}: unreadable (" in warnings[0]
    assert f"{root / 'bad-recipe' / 'recipe.yaml'}:" in warnings[1] and "invalid YAML" in warnings[1]
    cells = {line.split()[0]: line.split() for line in table.table().splitlines()[1:]}
    assert cells["bad-metrics"][1:] == ["text-classification", MINILM, "train.tsv", "?", "?", "?", "?", "?"]
    assert cells["bad-recipe"][1:5] == ["?", "?", "?", "32/16"]


def test_a_cross_validation_and_a_study_are_one_row_each(sample, tmp_path):
    root = tmp_path / "runs"
    cross_validate(_recipe(sample, root / "cv"), folds=2)  # keeps fold-1/ and fold-2/: not listed again
    search = {"training.learning_rate": {"choices": [1e-4]}}
    tune(sst2_recipe(sample, root / "search", max_length=32, training=QUICK, search=search), trials=1)
    cv, study = hftk.list_runs(root).runs
    summary = json.loads((root / "cv" / "metrics.json").read_text())
    assert (cv.name, cv.kind, cv.note, cv.data) == ("cv", "cross-validation", "2 folds", "train.tsv")
    assert cv.rows == {"train": 32} and cv.main_metric == "eval_accuracy"
    assert cv.value("eval_accuracy") == summary["metrics"]["eval_accuracy"]["mean"]
    assert cv.seconds == pytest.approx(sum(f["seconds"] for f in summary["per_fold"]))
    best = json.loads((root / "search" / "best" / "metrics.json").read_text())
    assert (study.name, study.kind, study.note, study.rows) == ("search", "tune", "best of 1 trial", best["data"])
    assert study.value("eval_accuracy") == best["eval"]["eval_accuracy"]
    # the study's best ran the cross-validation's settings: what tells them apart is the validation split, which the
    # folds do not use
    assert hftk.list_runs(root).settings == ["data.validation"]
