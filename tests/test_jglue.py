"""The JGLUE suite: its five recipes follow JGLUE's protocol and validate with their data, and bench/jglue.py trains
and scores all five on the Tohoku-format fixture and prints JGLUE's table."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest

import hftk
from hftk.tasks import get_task
from hftk.training.prepare import training_arguments

from .helpers import ROOT

# recipe -> (max_length, train rows, dev rows): JGLUE's max_length per task (fine-tuning/README.md of JGLUE).
RECIPES = {
    "jsts-ja.yaml": (128, 12451, 1457),
    "jnli-ja.yaml": (128, 5000, 2434),  # JSICK's train pairs, JNLI's dev
    "jsquad-ja.yaml": (384, 4057, 4442),  # JaQuAD's questions, JSQuAD's dev
    "jcqa-ja.yaml": (64, 8939, 1119),
    "chabsa-ja.yaml": (128, 2248, 508),
}
# JGLUE's grid: learning rate {5e-5, 3e-5, 2e-5} x epochs {3, 4}, searched on dev.
GRID = {"training.learning_rate": [5e-5, 3e-5, 2e-5], "training.num_train_epochs": [3, 4]}
TASKS = ("JSTS", "JNLI", "JSQuAD", "JCommonsenseQA", "chABSA")


@pytest.mark.parametrize("name", RECIPES)
def test_jglue_recipe_validates_with_jglues_protocol(name, tmp_path):
    max_length, train_rows, dev_rows = RECIPES[name]
    report = hftk.check(ROOT / "recipes" / name)  # the hub model is not here: recipe and data are still validated
    assert (report["train"]["rows"], report["validation"]["rows"]) == (train_rows, dev_rows)
    recipe = hftk.load_recipe(ROOT / "recipes" / name)
    assert recipe.model == "cl-tohoku/bert-base-japanese-v3"
    assert {key: space.choices for key, space in recipe.search.items()} == GRID
    # The arguments `hftk train` builds: batch 32, 10 % warm-up whatever the step count, the last epoch's model.
    task = get_task(recipe.task)(recipe, None)
    args = training_arguments(task, task.device_policy(), tmp_path, has_eval=True)
    assert task.max_length == max_length
    assert args.per_device_train_batch_size == 32 and not args.load_best_model_at_end
    assert (args.get_warmup_steps(840), args.get_warmup_steps(1120)) == (84, 112)
    # The recipe's own values (hftk train, --no-grid) are a point of the grid.
    assert (
        args.learning_rate in GRID["training.learning_rate"]
        and args.num_train_epochs in GRID["training.num_train_epochs"]
    )


def test_chabsa_split_keeps_each_document_on_one_side():
    def documents(split):
        rows = [json.loads(line) for line in (ROOT / f"data/ja/chabsa/{split}.jsonl").read_text("utf-8").splitlines()]
        assert {r["label"] for r in rows} == {"positive", "negative"}
        assert all(r["id"].startswith(r["document_id"] + "-") for r in rows)
        return {r["document_id"] for r in rows}

    train, dev = documents("train"), documents("dev")
    assert not train & dev and len(train | dev) == 230


@pytest.fixture
def bench(monkeypatch):
    """bench/jglue.py as a module (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location("jglue_bench", ROOT / "bench" / "jglue.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_runs_the_suite_on_the_fixture(bench, tmp_path, capsys):
    """bench/jglue.py fixture: every task trains a few steps on a few rows and scores on dev; JGLUE's table has every
    task, with finite scores in range, beside the published numbers."""
    capsys.readouterr()
    assert bench.main(["fixture", "--rows", "32", "--steps", "3", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert lines[0] == "|Model|" + "|".join(TASKS) + "|"
    assert lines[2] == "||Pearson/Spearman|acc|EM/F1|acc|acc|"
    ours = next(line for line in lines if line.startswith("|fixture ("))
    cells = ours.strip("|").split("|")[1:]
    assert len(cells) == len(TASKS)
    for task, cell in zip(TASKS, cells):
        values = [float(v) for v in cell.split("/")]
        assert len(values) == (2 if task in ("JSTS", "JSQuAD") else 1)
        low = -1.0 if task == "JSTS" else 0.0  # Pearson and Spearman correlations
        assert all(math.isfinite(v) and low <= v <= 1.0 for v in values), (task, cell)
    jglue = next(line for line in lines if line.startswith("|Tohoku BERT base ("))
    assert jglue.endswith("|0.909/0.868|0.899|0.871/0.941|0.808|—|")

    report = json.loads((tmp_path / "jglue.json").read_text(encoding="utf-8"))
    assert list(report["tasks"]) == list(TASKS) and report["quick"] and not report["grid"]
    for task in TASKS:
        metrics = json.loads((tmp_path / task / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["train"]["global_step"] == 3
        assert metrics["data"]["validation"] <= 40  # the quick subset (QA: whole paragraphs), not the whole dev
        assert metrics["eval"] == report["tasks"][task]["eval"]


@pytest.mark.slow
def test_bench_grid_runs_every_point_and_reports_the_best(bench, tmp_path, capsys):
    """--grid: `hftk tune` runs each of JGLUE's 6 points once, unpruned, and the task's score is the best run's."""
    args = ["fixture", "--grid", "--tasks", "chabsa", "--rows", "16", "--steps", "2", "--output", str(tmp_path)]
    assert bench.main(args) == 0
    report = json.loads((tmp_path / "jglue.json").read_text(encoding="utf-8"))["tasks"]["chABSA"]
    trials = report["trials"]
    points = {(t["training.learning_rate"], t["training.num_train_epochs"]) for t in trials}
    assert len(trials) == 6 and points == {(lr, ep) for lr in GRID["training.learning_rate"] for ep in (3, 4)}
    assert all(t["state"] == "complete" for t in trials)
    assert report["eval"]["eval_accuracy"] == max(t["eval_accuracy"] for t in trials)
