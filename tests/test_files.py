"""hftk.files: checkpoints count only when complete (every file whole, every shard present), and replacing a model
never leaves old and new files mixed in a folder that loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hftk.files import checkpoint_problem, last_complete_checkpoint, remove_incomplete_checkpoints, replace_model

from .helpers import tiny_model

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


class _Killed(BaseException):
    pass


def test_replace_model_killed_at_any_step_leaves_old_new_or_nothing(tmp_path, monkeypatch):
    """Stop `replace_model` before each of its file operations in turn (as SIGKILL would) and load the folder
    with the Auto class and with the concrete class (which loads weights even without config.json): it is the
    whole old model, the whole new one, or nothing loads."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

    labels = {"old": ["negative", "positive"], "new": ["a", "b"]}  # same shapes: a mix would load silently
    tiny_model(tmp_path / "old", labels["old"], seed=0)
    (tmp_path / "old" / "vocab.txt").write_text("[PAD]\n")  # a file the new model does not have
    (tmp_path / "old" / "predictions.jsonl").write_text("mine\n")  # the user's, not the model's
    tiny_model(tmp_path / "new", labels["new"], seed=1)
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


# ----------------------------------------------------------------------------------------------- locks


def test_a_held_lock_names_its_holder_and_goes_with_its_process(tmp_path):
    import signal
    import subprocess
    import sys

    from hftk import HftkError
    from hftk.files import locked

    lock = tmp_path / "run" / ".hftk-lock"
    with locked(lock, "hftk train"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        held = rf"^{tmp_path / 'run'}: in use by hftk train \(pid {os.getpid()} on "
        with pytest.raises(HftkError, match=held), locked(lock, "hftk train"):
            pass
    assert not lock.exists() and not lock.parent.exists()  # nothing was written: no folder left either

    # A holder killed outright leaves its file behind, but not its lock: the next run takes over.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from hftk.files import locked\n"
            f"with locked(Path({str(lock)!r}), 'hftk predict'):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(HftkError, match=rf"in use by hftk predict \(pid {holder.pid} "), locked(lock, "hftk train"):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock.exists()  # stale
    with locked(lock, "hftk train"):
        assert json.loads(lock.read_text())["command"] == "hftk train"


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    from hftk import HftkError
    from hftk.files import locked

    (tmp_path / "notes.txt").write_text("a file, where the run wants a folder")
    out = tmp_path / "notes.txt" / "run"
    message = rf"^{out}: cannot write here \(Not a directory\); choose a writable folder"
    with pytest.raises(HftkError, match=message), locked(out / ".hftk-lock", "hftk train"):
        pass


# ------------------------------------------------------------------------------------------------- modes


def test_atomic_writes_and_replaced_models_get_the_users_umask(tmp_path):
    """Every file hftk writes through a temporary one (predictions, metrics.json, cards, folds' and tune's
    outputs) or moves in from a staging folder (safetensors writes 0600) gets the modes of the user's umask."""
    from hftk.files import atomic_write_text

    staging = tmp_path / "staging"
    staging.mkdir(mode=0o700)
    (staging / "model.safetensors").write_bytes(b"w")
    (staging / "model.safetensors").chmod(0o600)
    (staging / "adapter").mkdir(mode=0o700)
    (staging / "adapter" / "adapter_config.json").write_text("{}")
    (tmp_path / "out").mkdir()
    for mask, file_mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(mask)
        try:
            atomic_write_text(tmp_path / "out" / "metrics.json", "{}")
            assert (tmp_path / "out" / "metrics.json").stat().st_mode & 0o777 == file_mode
        finally:
            os.umask(old)
    old = os.umask(0o022)
    try:
        replace_model(staging, tmp_path / "out")
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert (out / "adapter").stat().st_mode & 0o777 == 0o755
    assert (out / "adapter" / "adapter_config.json").stat().st_mode & 0o777 == 0o644
