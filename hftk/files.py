"""Crash-safe files: atomic writes, complete checkpoints, and swapping a model directory's contents.

A process can be killed (SIGKILL, OOM killer, a preempted node) between any two system calls. Everything hftk
leaves on disk is therefore either complete or recognisably incomplete: files are written under a temporary
name and renamed, a Trainer checkpoint counts only once its last file is in place and every file in it reads
back whole, and a final model has weights (so loads at all) only once all of it is in place.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import struct
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from hftk.errors import HftkError

try:
    import fcntl
except ImportError:  # Windows: runs are not locked there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("hftk")

# An output directory: the final model at the top, Trainer's checkpoints below it, the next model staged beside.
CHECKPOINTS = "checkpoints"
TRACKING = "tracking"  # what the recipe's trackers write here (TensorBoard events, MLflow's database)
STAGING = ".staging"
LOCK = ".hftk-lock"  # inside an output directory while a run writes it
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

# Files `save_pretrained` (model and tokenizer) and hftk write at the top of an output directory. Replacing a
# model removes the old ones the new model does not have, so no stale weight shard or vocabulary stays behind;
# anything else there (a user's predictions file, say) is left alone.
_MODEL_FILE = re.compile(
    r"^(config|generation_config|tokenizer(_config)?|special_tokens_map|added_tokens|preprocessor_config"
    r"|chat_template|vocab|merges|spiece|sentencepiece\.bpe|metrics|recipe|README|training_curve|hftk-export)"
    r"\.(json|txt|model|jinja|yaml|md|png)$"
    r"|\.safetensors(\.index\.json)?$|^pytorch_model.*\.bin(\.index\.json)?$|^training_args\.bin$|^model\.onnx$"
)
# Weights: every loader needs them (a concrete model class loads weights without config.json, with a default
# config), so they are the commit point of a model folder: removed first, moved in last. Entry points (a single
# file, or the index of a sharded one) go before their shards on the way out and after them on the way in.
_WEIGHTS = re.compile(r"\.safetensors(\.index\.json)?$|^pytorch_model.*\.bin(\.index\.json)?$|^model\.onnx$")
_SHARD = re.compile(r"-\d{5}-of-\d{5}\.")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a prefix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp's 0600 would hide the file from the user's group and others
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), since a thread writing
    files meanwhile would get the temporary value."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share(path: Path) -> None:
    """Give `path` (and all below it, for a folder hftk wrote) the modes the user's umask gives any new file.

    Writers that go through a temporary file (`mkstemp`, `mkdtemp`, safetensors' `save_file`) create 0600 files
    and 0700 folders, so another user of a shared model folder would find it unreadable."""
    mask = umask()
    below = [] if path.is_symlink() or not path.is_dir() else os.walk(path)  # links are neither followed nor changed
    entries = [path, *(Path(folder) / name for folder, dirs, files in below for name in (*dirs, *files))]
    for entry in entries:
        if not entry.is_symlink():
            os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)


# A work folder: `.<name>.<pid>.tmp`, locked (flock on its SCRATCH_LOCK) by the process working in it.
_SCRATCH = re.compile(r"^\.(.+)\.(\d+)\.tmp$")
SCRATCH_LOCK = ".lock"
_STARTING = 60  # seconds a work folder may be without its lock (just made) before its process id decides


@contextlib.contextmanager
def scratch(parent: Path, name: str, unwritable: Callable[[OSError], HftkError]) -> Iterator[Path]:
    """A fresh work folder `parent/.<name>.<pid>.tmp`, held by this process while it works there and removed
    after: what it builds is moved out of it by one rename, and a process killed half-way (SIGKILL, OOM) leaves a
    folder that `sweep` recognises as dead by its free lock. `unwritable` turns a failure to make it into the
    command's own error."""
    work = parent / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)  # a dead run's that had this process id
    try:
        work.mkdir(parents=True)
        lock = os.open(work / f"{SCRATCH_LOCK}.new", os.O_CREAT | os.O_RDWR, 0o666)
    except OSError as e:
        raise unwritable(e) from None
    try:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        os.replace(work / f"{SCRATCH_LOCK}.new", work / SCRATCH_LOCK)  # appears held: a sweep never finds it free
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(lock)


def sweep(parent: Path, name: re.Pattern[str], note: Callable[[str], None]) -> None:
    """Remove the `scratch` folders in `parent` whose `name` matches and whose process died: ones whose lock no
    process holds. A live one, here or on another host sharing the folder, holds its lock, so it stays."""
    try:
        found = [p for p in parent.iterdir() if (m := _SCRATCH.match(p.name)) and name.fullmatch(m[1]) and p.is_dir()]
    except OSError:
        return
    for work in found:
        with contextlib.suppress(OSError):
            if _abandoned(work):
                size = sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
                shutil.rmtree(work)
                note(f"removed {work} ({size / 1e6:.1f} MB), left by a run that did not finish")


def _abandoned(work: Path) -> bool:
    """Whether no live process works in `work`: its lock is free, or, without a lock (one just made, Windows),
    the process its name gives is gone and the folder is a minute old."""
    if fcntl is not None and (work / SCRATCH_LOCK).exists():
        fd = os.open(work / SCRATCH_LOCK, os.O_RDWR)  # not read-only: over NFS an exclusive lock needs write access
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True
    if time.time() - work.stat().st_mtime < _STARTING:
        return False
    pid = int(_SCRATCH.match(work.name)[2])  # type: ignore[index]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        pass
    return False


@functools.lru_cache(maxsize=256)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """The file's content hash (read once per process for an unchanged file: size and mtime key the memo)."""
    p = Path(path).resolve()
    st = p.stat()
    return _digest_of(str(p), st.st_size, st.st_mtime_ns)


def _fsync_dir(path: Path) -> None:
    """Make renames in `path` survive a power cut too, not only a killed process (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------- checkpoints


def checkpoint_problem(path: Path) -> str | None:
    """Why a Trainer checkpoint folder cannot be resumed from, or None when it is complete.

    Trainer writes a checkpoint in this order: weights, config and tokenizer, optimizer, scheduler, RNG states,
    and `trainer_state.json` last (transformers 5, `Trainer._save_checkpoint`). A kill before the last write
    leaves no state file or a truncated one. Each weight and torch file present must also read back whole:
    that catches a file cut short by a crash of the machine, and an older folder half-deleted by checkpoint
    rotation.
    """
    match = CHECKPOINT.match(path.name)
    if match is None or not path.is_dir():
        return "not a checkpoint folder"
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no trainer_state.json (the save was interrupted)"
    except (OSError, ValueError):
        return "trainer_state.json is truncated or unreadable"
    if not isinstance(state, dict) or state.get("global_step") != int(match.group(1)):
        return "trainer_state.json does not belong to this step"
    try:
        names = sorted(p.name for p in path.iterdir() if p.is_file())
    except OSError:
        return "unreadable"
    weights = [n for n in names if n.endswith(".safetensors")]
    if not weights and not any(p.is_dir() for p in path.iterdir()):  # sharded (FSDP/DeepSpeed) states are folders
        return "no model weights"
    for name in names:
        if name.endswith(".safetensors") and not safetensors_whole(path / name):
            return f"{name} is truncated"
        if name.endswith((".pt", ".pth")) and not _zip_whole(path / name):
            return f"{name} is truncated"
        if name.endswith(".safetensors.index.json"):
            try:
                shards = set(json.loads((path / name).read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError):
                return f"{name} is truncated"
            if missing := shards - set(names):
                return f"weight shard {sorted(missing)[0]} is missing"
    return None


def safetensors_whole(path: Path) -> bool:
    """The header parses and the file is as long as the tensors it declares."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size == 8 + n + end
    except (OSError, ValueError, struct.error, KeyError, TypeError, MemoryError):
        return False


def _zip_whole(path: Path) -> bool:
    """`torch.save` files are zip archives; a cut-short one has no readable central directory."""
    try:
        with zipfile.ZipFile(path) as z:
            return bool(z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders in `folder`, oldest step first (complete or not)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if CHECKPOINT.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)))  # type: ignore[union-attr]


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint that can be resumed from; incomplete newer ones are skipped."""
    for path in reversed(checkpoints(folder)):
        if checkpoint_problem(path) is None:
            return path
    return None


def remove_incomplete_checkpoints(folder: Path) -> None:
    """Delete checkpoint folders a killed run left half-written (or half-deleted).

    Left in place, Trainer would later write the same step's files into a folder holding stale ones, and its
    checkpoint rotation (newest by modification time) could keep the wrong folder.
    """
    for path in checkpoints(folder):
        problem = checkpoint_problem(path)
        if problem is not None:
            logger.warning("hftk: %s is incomplete (%s); removing it", path, problem)
            shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------------- final model


def replace_model(staging: Path, out: Path) -> None:
    """Move a complete model from `staging` to the top of `out`, replacing the model there.

    Files are renamed, never rewritten, and the weights are the commit point: the old ones are removed before
    anything else changes and the new ones are moved in after everything else. Killed at any moment, `out`
    holds the whole old model, the whole new one, or no weights at all (nothing loads, and `hftk train
    --resume` finishes the job): never the config or tokenizer of one model with the weights of the other.
    """
    share(staging)
    staged = [p.name for p in staging.iterdir()]
    for name in staged:
        if (staging / name).is_file():
            _fsync_file(staging / name)  # the data is on disk before a rename can point at it
    old_weights = [p for p in out.iterdir() if p.is_file() and _WEIGHTS.search(p.name)]
    for path in sorted(old_weights, key=lambda p: (bool(_SHARD.search(p.name)), p.name)):  # entry points first
        path.unlink()
    _fsync_dir(out)
    for path in out.iterdir():
        if path.is_file() and _MODEL_FILE.search(path.name) and path.name not in staged:
            path.unlink()  # a vocabulary or tokenizer file the new model does not have
    for name in sorted(staged, key=_weights_last):
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(staging / name, target)
        if _WEIGHTS.search(name):
            _fsync_dir(out)
    _fsync_dir(out)
    staging.rmdir()


def _weights_last(name: str) -> tuple[int, str]:
    """Everything else, then weight shards, then the weights' entry point (single file or index)."""
    if not _WEIGHTS.search(name):
        return (0, name)
    return (1 if _SHARD.search(name) else 2, name)


# ----------------------------------------------------------------------------------------------- locks


@contextlib.contextmanager
def locked(path: Path, command: str, what: Path | None = None) -> Iterator[None]:
    """Hold `path` (a lock file) for one command, or fail naming who holds it and `what` it guards (by default
    the folder the lock file is in).

    The lock is the operating system's (`flock`) on the file, so a process that dies, even by SIGKILL, releases
    it with no stale lock to clean up; the file only tells the next user who held it. Unlocked on Windows.

    Raises:
        HftkError: another live process holds the lock.
    """
    if fcntl is None:
        yield
        return
    created = not path.parent.exists()
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise HftkError(f"{path.parent}: cannot write here ({e.strerror or e}); choose a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise HftkError(
                f"{what or path.parent}: in use by {holder}; wait for it to finish, or choose another output"
            ) from None
        try:  # the holder before us may have removed the file between our open and our lock: lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%F %T")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # before unlocking: a waiter then locks a fresh file, never this one
        os.close(fd)
        if created:  # a run that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                path.parent.rmdir()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{info['command']} (pid {info['pid']} on {info['host']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another hftk process"
