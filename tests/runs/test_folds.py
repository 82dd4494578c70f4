"""`hftk train --folds`: fold assignment, real MiniLM runs per fold, the summary and card, resume, bad inputs."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from collections import Counter

import numpy as np
import pytest

import hftk.runs.folds
from hftk.runs.folds import assign_folds, plan_folds
from hftk.tasks import load_recipe
from hftk.training.prepare import prepare

from ..helpers import MINILM, QUICK, cli, cli_error, sst2_recipe, sst2_sample, unremovable


def _covers(held: list[np.ndarray], rows: int) -> None:
    """Every row is held out by exactly one fold."""
    together = np.concatenate(held)
    assert len(together) == rows and sorted(together.tolist()) == list(range(rows))


# ------------------------------------------------------------------------------------ fold assignment


def test_stratified_folds_are_disjoint_cover_every_row_and_keep_the_label_shares():
    labels = [0] * 30 + [1] * 12 + [2] * 6  # 5 : 2 : 1
    rng = np.random.default_rng(0)
    labels = [labels[i] for i in rng.permutation(len(labels))]
    held = assign_folds(len(labels), 3, seed=7, labels=labels)
    assert len(held) == 3
    _covers(held, len(labels))
    for fold in held:
        assert Counter(labels[i] for i in fold) == {0: 10, 1: 4, 2: 2}
        assert list(fold) == sorted(fold)
    # seeded: the same seed draws the same folds, another seed others
    assert all((a == b).all() for a, b in zip(held, assign_folds(len(labels), 3, seed=7, labels=labels)))
    assert any(set(a) != set(b) for a, b in zip(held, assign_folds(len(labels), 3, seed=8, labels=labels)))


def test_plain_and_grouped_folds():
    held = assign_folds(10, 4, seed=1)
    _covers(held, 10)
    assert sorted(map(len, held)) == [2, 2, 3, 3]
    groups = [f"context {i // 3}" for i in range(21)]  # 7 contexts, 3 questions each
    held = assign_folds(21, 3, seed=1, groups=groups)
    _covers(held, 21)
    seen = [{groups[i] for i in fold} for fold in held]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])  # no context in two folds


def test_question_answering_keeps_the_questions_of_a_context_together(tmp_path):
    rows = [
        {"id": f"q{c}-{q}", "question": f"who is {q}?", "context": f"context {c}: Ann met Bob.", "answers":
         {"text": ["Ann"], "answer_start": [len(f"context {c}: ")]}}
        for c in range(6) for q in range(1 + c % 3)
    ]  # fmt: skip
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = load_recipe({"task": "question-answering", "model": MINILM, "data": {"train": str(path)}})
    plan = plan_folds(prepare(recipe, splits=("train",)), 3)
    assert plan.how.startswith("shuffled, questions of one context")
    _covers(plan.held_out, len(rows))
    contexts = [{rows[i]["context"] for i in fold} for fold in plan.held_out]
    assert sum(map(len, contexts)) == 6  # each context in exactly one fold
    with pytest.raises(hftk.HftkError, match="has 6 distinct context"):
        plan_folds(prepare(recipe, splits=("train",)), 7)


# ------------------------------------------------------------------------------------ real runs


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return sst2_sample(tmp_path_factory.mktemp("sst2_folds"), 36, 8)


def _recipe(small, out, tmp_path):
    """A YAML recipe without `labels:` (learnt from train, then fixed for every fold)."""
    import yaml

    recipe = sst2_recipe(small, out, max_length=32, training=QUICK)
    del recipe["labels"]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_three_folds_keep_all_then_resume_trains_only_the_unfinished_fold(small, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cv"
    recipe = _recipe(small, out, tmp_path)
    cli("train", recipe, "--folds", 3)
    printed = capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["folds"] == 3 and summary["complete"] and summary["split"] == "stratified by label"
    assert summary["main_metric"] == "eval_accuracy"
    per_fold = summary["per_fold"]
    assert [f["fold"] for f in per_fold] == [1, 2, 3]
    # every metric: the mean and sample sd of the per-fold values, which are each fold's own held-out score
    assert {"eval_accuracy", "eval_loss", "eval_f1_macro"} <= set(summary["metrics"])
    for metric, stats in summary["metrics"].items():
        values = [f["eval"][metric] for f in per_fold]
        assert stats["values"] == values
        assert stats["mean"] == pytest.approx(statistics.fmean(values))
        assert stats["sd"] == pytest.approx(statistics.stdev(values))
    # the folds: disjoint held-out parts that together are train, each model trained on the rest
    train_rows = _rows_of_tsv(small["train"])
    held = []
    for k in (1, 2, 3):
        fold = out / f"fold-{k}"
        assert (fold / "model.safetensors").is_file() and (fold / "README.md").is_file()
        own = json.loads((fold / "metrics.json").read_text())
        trained, scored = _rows(out / f"data/fold-{k}/train.jsonl"), _rows(out / f"data/fold-{k}/held_out.jsonl")
        assert own["eval"] == per_fold[k - 1]["eval"]
        assert own["data"] == {"train": 36 - per_fold[k - 1]["held_out_rows"], "validation": len(scored)}
        assert sorted(map(_key, trained + scored)) == sorted(map(_key, train_rows))
        for label, n in Counter(r["label"] for r in train_rows).items():  # stratified: a third of each label
            assert abs(sum(r["label"] == label for r in scored) - n / 3) < 1
        held += scored
    assert sorted(map(_key, held)) == sorted(map(_key, train_rows))  # each row held out once
    # labels learnt from the whole train split and fixed: every fold's head is the same
    assert {json.loads((out / f"fold-{k}/config.json").read_text())["id2label"]["0"] for k in (1, 2, 3)} == {"0"}
    # the card: mean ± sd of every metric, and what was scored
    card = (out / "README.md").read_text()
    for metric, stats in summary["metrics"].items():
        assert f"| {metric.removeprefix('eval_')} | {stats['mean']:.4f} ± {stats['sd']:.4f} |" in card
    assert "validation split was not used" in card and "last training step" in card
    # the console: a line per fold, then mean ± sd
    assert "mean ± sd: accuracy" in printed
    assert [ln.split()[:2] for ln in printed.splitlines() if re.match(r"^[123] ", ln)] == [
        [str(f["fold"]), str(f["train_rows"])] for f in per_fold
    ]

    # A kill after fold 2: fold 3's scores never stored, its folder gone. --resume trains fold 3 alone.
    truncated = {**summary, "per_fold": per_fold[:2], "complete": False}
    (out / "metrics.json").write_text(json.dumps(truncated))
    shutil.rmtree(out / "fold-3")
    kept = {k: (out / f"fold-{k}/model.safetensors").stat().st_mtime_ns for k in (1, 2)}
    trained_folds = []
    real_train = hftk.runs.folds.train

    def counting(recipe, **kwargs):
        trained_folds.append(kwargs["output_dir"].name)
        return real_train(recipe, **kwargs)

    monkeypatch.setattr(hftk.runs.folds, "train", counting)
    cli("train", recipe, "--folds", 3, "--resume")
    assert trained_folds == ["fold-3"]
    assert {k: (out / f"fold-{k}/model.safetensors").stat().st_mtime_ns for k in (1, 2)} == kept
    again = json.loads((out / "metrics.json").read_text())
    assert again["complete"] and [f["eval"] for f in again["per_fold"][:2]] == [f["eval"] for f in per_fold[:2]]
    redone, before = again["per_fold"][2]["eval"], per_fold[2]["eval"]  # the same fold, seeded: the same run
    assert redone["eval_accuracy"] == before["eval_accuracy"]
    assert redone["eval_loss"] == pytest.approx(before["eval_loss"], abs=1e-3)

    # a finished cross-validation is continued only with --resume (or replaced with --overwrite)
    capsys.readouterr()
    assert "holds a cross-validation" in cli_error(capsys, "train", recipe, "--folds", 3)
    assert "resume with --folds 3" in cli_error(capsys, "train", recipe, "--folds", 4, "--resume")
    # another learning rate or max_length would average other models into one mean ± sd: refused, naming each
    error = cli_error(capsys, "train", recipe, "--folds", 3, "--resume", "--set", "training.learning_rate=2e-4",
                      "--set", "max_length=48")  # fmt: skip
    assert "trained with other settings (max_length 32 -> 48, training.learning_rate 0.0001 -> 0.0002)" in error
    assert error.endswith("start anew with --overwrite, or choose another --output")
    # --keep may change: nothing is trained again, the rows go, the models stay and the card says so
    cli("train", recipe, "--folds", 3, "--resume", "--keep", "none")
    assert trained_folds == ["fold-3"]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "fold-1", "fold-2", "fold-3", "metrics.json"]
    assert "`fold-1/`, `fold-2/`, `fold-3/`: the folds' model folders" in (out / "README.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["per_fold"] == again["per_fold"]

    # --overwrite removes all or nothing: a file that cannot go stops it before anything goes
    before = sorted(str(p) for p in out.rglob("*"))
    with unremovable(out / "fold-2" / "config.json"):
        error = cli_error(capsys, "train", recipe, "--folds", 3, "--overwrite")
    assert "fold-2" in error and "cannot be removed" in error and "nothing was removed" in error
    assert sorted(str(p) for p in out.rglob("*")) == before
    # a fold folder that is a link out of the folder: the link goes, never what it points to
    outside = tmp_path / "elsewhere"
    shutil.move(out / "fold-1", outside)
    (out / "fold-1").symlink_to(outside, target_is_directory=True)
    (out / "notes.txt").write_text("the user's")
    hftk.runs.folds.FoldsFolder(out).clear()
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (outside / "model.safetensors").is_file()


def test_keep_none_keeps_only_the_scores(small, tmp_path, capsys):
    out = tmp_path / "cv"
    recipe = _recipe(small, out, tmp_path)
    result = hftk.runs.folds.cross_validate(recipe, folds=2, keep="none")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "metrics.json"]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["keep"] == "none" and [f["folder"] for f in summary["per_fold"]] == [None, None]
    assert result.mean == pytest.approx(statistics.fmean(summary["metrics"]["eval_accuracy"]["values"]))
    assert result.sd == summary["metrics"]["eval_accuracy"]["sd"]
    assert "Only the scores were kept" in (out / "README.md").read_text()


def _rows_of_tsv(path):
    lines = path.read_text().splitlines()
    names = lines[0].split("\t")
    return [dict(zip(names, line.split("\t"))) for line in lines[1:]]


def _key(row):
    return (row["sentence"], str(row["label"]))


# ------------------------------------------------------------------------------------ bad inputs


def test_folds_refuses_torchrun_and_keep_without_folds(small, tmp_path, capsys, monkeypatch):
    recipe = _recipe(small, tmp_path / "cv", tmp_path)
    assert "--keep none: applies to cross-validation only; add --folds K" in cli_error(
        capsys, "train", recipe, "--keep", "none"
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "start it without torchrun" in cli_error(capsys, "train", recipe, "--folds", 3)
    assert not (tmp_path / "cv").exists()
