"""Crash safety: a run killed with SIGKILL resumes to the same result; checkpoints count only when complete;
replacing a model never leaves old and new files mixed in a folder that loads."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hftk import HftkError, Predictor, train
from hftk.files import checkpoint_problem, last_complete_checkpoint, remove_incomplete_checkpoints, replace_model

from .conftest import DATA, ROOT, head, sst2_recipe

# ------------------------------------------------------------------------------------ SIGKILL and resume

STEPS, SAVE_EVERY, KILL_AFTER = 20, 4, 12  # 8 steps per epoch: killed in epoch 2, resumed through epoch 3


def _hftk_train(recipe: Path, out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["OMP_NUM_THREADS"] = "1"  # on a small shared CPU, spinning OpenMP threads cost more than they give
    cmd = [sys.executable, "-m", "hftk", "train", str(recipe), "--output", str(out), *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-4000:]


def _losses(out: Path) -> list[tuple[int, float]]:
    state = json.loads((out / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h]


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    rows = {
        "train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 128),
        "validation": head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 48),
    }
    training = {
        "max_steps": STEPS,
        "per_device_train_batch_size": 16,
        "eval_strategy": "steps",
        "eval_steps": SAVE_EVERY,
        "save_strategy": "steps",
        "save_steps": SAVE_EVERY,
        "logging_steps": 2,
    }
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(sst2_recipe(rows, tmp_path / "unused", training=training)))

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _finish(_hftk_train(recipe, whole))

    proc = _hftk_train(recipe, killed)
    deadline = time.monotonic() + 600
    target = killed / "checkpoints" / f"checkpoint-{KILL_AFTER}"
    while checkpoint_problem(target) is not None:  # poll until the checkpoint is complete, then kill at once
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "config.json").exists()  # no final model from the killed run

    # The kill lands wherever it lands; add a checkpoint cut short as a kill mid-save leaves one: every file
    # but trainer_state.json, the last one Trainer writes. Resuming from it would crash or go wrong.
    last = last_complete_checkpoint(killed / "checkpoints")
    assert last is not None and KILL_AFTER <= int(last.name.split("-")[1]) < STEPS
    partial = killed / "checkpoints" / f"checkpoint-{int(last.name.split('-')[1]) + SAVE_EVERY}"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(last, partial)
    (partial / "trainer_state.json").unlink()

    _finish(_hftk_train(recipe, killed, "--resume"))

    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    print("uninterrupted:", a["train"], a["eval"], "\nresumed:", b["train"], b["eval"])
    assert b["train"]["resumed_from_step"] == int(last.name.split("-")[1])
    assert a["train"]["global_step"] == b["train"]["global_step"] == STEPS
    assert b["eval"]["eval_accuracy"] == a["eval"]["eval_accuracy"]
    assert b["eval"]["eval_loss"] == pytest.approx(a["eval"]["eval_loss"], abs=1e-5)
    # The same optimizer steps on the same batches: every logged training loss agrees, before and after the kill.
    assert [s for s, _ in _losses(killed)] == [s for s, _ in _losses(whole)]
    assert [x for _, x in _losses(killed)] == pytest.approx([x for _, x in _losses(whole)], abs=1e-5)

    assert not partial.exists() or checkpoint_problem(partial) is None  # removed, or rewritten whole
    for out in (whole, killed):
        assert not (out / ".staging").exists()
        assert not list(out.rglob("training_args.bin"))  # no pickled arguments, in checkpoints either
    assert Predictor(killed).predict(["A gorgeous, witty film."])[0]["label"] in ("negative", "positive")


# ------------------------------------------------------------------------------------ complete checkpoints


def _checkpoint(folder: Path, step: int) -> Path:
    """A checkpoint folder in Trainer's layout, written with the same writers (safetensors, torch.save)."""
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32).reshape(8, 8)}, path / "model.safetensors")
    (path / "config.json").write_text("{}")
    torch.save({"state": {0: {"exp_avg": torch.ones(8, 8)}}}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    torch.save({"python": (3, (1, 2), None)}, path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: (p / "trainer_state.json").unlink(), "no trainer_state.json"),
        (lambda p: _truncate(p / "trainer_state.json"), "trainer_state.json is truncated"),
        (lambda p: (p / "trainer_state.json").write_text('{"global_step": 3}'), "does not belong to this step"),
        (lambda p: _truncate(p / "model.safetensors"), "model.safetensors is truncated"),
        (lambda p: (p / "model.safetensors").unlink(), "no model weights"),
        (lambda p: _truncate(p / "optimizer.pt"), "optimizer.pt is truncated"),
        (lambda p: _truncate(p / "rng_state.pth"), "rng_state.pth is truncated"),
    ],
)
def test_an_incomplete_checkpoint_is_skipped_and_removed(tmp_path, damage, problem):
    older, newer = _checkpoint(tmp_path, 10), _checkpoint(tmp_path, 20)
    assert checkpoint_problem(newer) is None and last_complete_checkpoint(tmp_path) == newer
    damage(newer)
    assert problem in checkpoint_problem(newer)
    assert last_complete_checkpoint(tmp_path) == older
    remove_incomplete_checkpoints(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-10"]


def test_sharded_checkpoint_needs_every_shard(tmp_path):
    path = _checkpoint(tmp_path, 5)
    (path / "model.safetensors").rename(path / "model-00001-of-00002.safetensors")
    shutil.copy(path / "model-00001-of-00002.safetensors", path / "model-00002-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert checkpoint_problem(path) is None
    (path / "model-00002-of-00002.safetensors").unlink()
    assert "model-00002-of-00002.safetensors is missing" in checkpoint_problem(path)


# ------------------------------------------------------------------------------------ replacing a model


def _tiny_model(path: Path, labels: list[str], seed: int) -> None:
    """A real BERT classifier, tiny, saved with save_pretrained, plus hftk's run files."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(path)
    for name in ("metrics.json", "recipe.yaml", "README.md"):
        (path / name).write_text(f"{name} of the {'new' if labels[0] == 'a' else 'old'} model\n")


class _Killed(BaseException):
    pass


def test_replace_model_killed_at_any_step_leaves_old_new_or_nothing(tmp_path, monkeypatch):
    """Stop `replace_model` before each of its file operations in turn (as SIGKILL would) and load the folder
    with the Auto class and with the concrete class (which loads weights even without config.json): it is the
    whole old model, the whole new one, or nothing loads."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

    labels = {"old": ["negative", "positive"], "new": ["a", "b"]}  # same shapes: a mix would load silently
    _tiny_model(tmp_path / "old", labels["old"], seed=0)
    (tmp_path / "old" / "vocab.txt").write_text("[PAD]\n")  # a file the new model does not have
    (tmp_path / "old" / "predictions.jsonl").write_text("mine\n")  # the user's, not the model's
    _tiny_model(tmp_path / "new", labels["new"], seed=1)
    weights = {
        name: BertForSequenceClassification.from_pretrained(tmp_path / name).classifier.weight.detach().clone()
        for name in ("old", "new")
    }

    def load(out: Path, cls: type) -> str:
        try:
            model = cls.from_pretrained(out)
        except (OSError, RuntimeError, ValueError):
            return "nothing"
        which = "new" if model.config.id2label[0] == "a" else "old"
        assert torch.equal(model.classifier.weight, weights[which]), f"config of {which}, weights of the other"
        assert (out / "metrics.json").read_text() == f"metrics.json of the {which} model\n"
        return which

    operations, kill_at = 0, -1

    def counted(real):
        def op(*args, **kwargs):
            nonlocal operations
            if operations == kill_at:
                raise _Killed
            operations += 1
            return real(*args, **kwargs)

        return op

    monkeypatch.setattr(os, "replace", counted(os.replace))
    monkeypatch.setattr(Path, "unlink", counted(Path.unlink))
    seen = []
    for kill_at in range(30):
        operations = 0
        out = tmp_path / f"kill{kill_at}" / "out"
        shutil.copytree(tmp_path / "old", out)
        shutil.copytree(tmp_path / "new", out / ".staging")
        try:
            replace_model(out / ".staging", out)
            finished = True
        except _Killed:
            finished = False
        auto, concrete = load(out, AutoModelForSequenceClassification), load(out, BertForSequenceClassification)
        assert auto == concrete, (kill_at, auto, concrete)
        assert (out / "predictions.jsonl").read_text() == "mine\n"
        seen.append(auto)
        if finished:
            assert auto == "new" and not (out / "vocab.txt").exists() and not (out / ".staging").exists()
            break
    assert finished and seen[0] == "old" and set(seen) == {"old", "nothing", "new"}, seen


# ------------------------------------------------------------------------------------ --overwrite


def test_overwrite_replaces_the_old_run_and_an_interrupted_finish_resumes(tmp_path):
    rows = {"train": head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", 32), "validation": None}
    out = tmp_path / "run"
    _tiny_model(out, ["x", "y", "z"], seed=0)
    (out / "model.safetensors").rename(out / "model-00001-of-00001.safetensors")  # an old sharded layout
    (out / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    (out / "checkpoints" / "checkpoint-99").mkdir(parents=True)
    (out / "predictions.jsonl").write_text("mine\n")
    training = {"max_steps": 2, "save_steps": 2, "save_strategy": "steps", "eval_strategy": "no"}
    recipe = sst2_recipe(rows, out, training={**training, "load_best_model_at_end": False})
    recipe["data"].pop("validation")
    train(recipe, overwrite=True)
    names = {p.name for p in out.iterdir()}
    assert "checkpoint-99" not in {p.name for p in (out / "checkpoints").glob("*")}
    assert not {"model-00001-of-00001.safetensors", "model.safetensors.index.json"} & names  # stale shards gone
    assert "predictions.jsonl" in names
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}
    assert Predictor(out).predict(["fine"])[0]["label"] in ("negative", "positive")

    # Killed after the old weights went and before the new ones arrived: nothing loads, --resume finishes it.
    (out / "model.safetensors").unlink()
    with pytest.raises(HftkError, match="no model weights"):
        Predictor(out).predict(["fine"])
    result = train(recipe, resume=True)
    assert (result.start_step, result.global_step) == (2, 2)
    assert Predictor(out).predict(["fine"])[0]["label"] in ("negative", "positive")
