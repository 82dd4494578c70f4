"""The features cache (hftk/features/cache.py) trusts nothing it reads back: a damaged entry (cut short at or inside a
record batch, bytes changed in place, a manifest that lies or is garbage, a file missing) is never used but built
anew with one note; a dead build's work folder is swept while a live build's stays; an unwritable cache is one
error, and --no-cache does not write there at all."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hftk import HftkError, train
from hftk.cli import main
from hftk.data.readers import read_records
from hftk.features.cache import cache_root, cached_map, status

from ..bad_inputs.harness import set_writable
from ..helpers import DATA, MINILM, ROOT, classification, features, head, sst2_recipe, task_for

pytestmark = pytest.mark.usefixtures("own_cache")

ROWS = 1500  # two Arrow record batches: datasets writes 1000 rows a batch


@pytest.fixture
def rows(tmp_path) -> Path:
    return head(DATA / "en/sst2/train.tsv", tmp_path / "train.tsv", ROWS)


def entry() -> Path:
    (folder,) = [p for p in cache_root().iterdir() if not p.name.startswith(".")]
    return folder


def manifest(folder: Path) -> dict:
    return json.loads((folder / "hftk-features.json").read_text())


def edit_manifest(folder: Path, **fields) -> None:
    (folder / "hftk-features.json").write_text(json.dumps(manifest(folder) | fields))


def batch_ends(path: Path) -> list[int]:
    """Byte offsets where the Arrow stream's record batches end."""
    import pyarrow as pa

    ends = []
    with pa.OSFile(str(path)) as f:
        reader = pa.ipc.MessageReader.open_stream(f)
        while True:
            try:
                message = reader.read_next_message()
            except StopIteration:
                break
            if message is None:
                break
            if message.type == "record batch":
                ends.append(f.tell())
    return ends


def arrow(folder: Path) -> Path:
    return folder / manifest(folder)["files"][0]


def cut_at_batch(folder: Path) -> None:
    path = arrow(folder)
    ends = batch_ends(path)
    assert len(ends) == 2
    os.truncate(path, ends[0])
    from datasets import Dataset

    assert len(Dataset.from_file(str(path))) == 1000  # the silent kind: a valid stream of the first batch


def cut_mid_batch(folder: Path) -> None:
    path = arrow(folder)
    ends = batch_ends(path)
    os.truncate(path, (ends[0] + ends[1]) // 2)


def flip_bytes(folder: Path) -> None:
    """Bytes changed in place, size and modification time kept: only the hash can tell."""
    path = arrow(folder)
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


DAMAGES = {
    "cut at a batch boundary": cut_at_batch,
    "cut mid-batch": cut_mid_batch,
    "bytes flipped in place": flip_bytes,
    "manifest rows edited": lambda f: edit_manifest(f, rows=2 * ROWS),
    "garbage manifest": lambda f: (f / "hftk-features.json").write_bytes(b"\x00\xff{not json"),
    "manifest a list": lambda f: (f / "hftk-features.json").write_text("[1, 2]"),
    "no manifest": lambda f: (f / "hftk-features.json").unlink(),
    "missing file": lambda f: arrow(f).unlink(),
    "files []": lambda f: edit_manifest(f, files=[]),
    "file outside the entry": lambda f: edit_manifest(f, files=["../elsewhere.arrow"]),
    "no hashes": lambda f: edit_manifest(f, sums={}),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_entry_is_built_anew_with_one_note(rows, tok, caplog, damage):
    records = read_records(rows)
    task = classification(tok, records)
    cold, warm = features(task, records)
    assert not warm and len(cold) == ROWS
    expected = cold.to_dict()
    del cold  # memory-mapped: reading a file cut under it would be a bus error
    assert task.cache_status(records, evaluation=False) == "warm"
    folder = entry()
    damage(folder)
    assert task.cache_status(records, evaluation=False).startswith("damaged (")  # what `hftk check` shows
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hftk"):
        again, warm = features(task, records)
    assert not warm and len(again) == ROWS and again.to_dict() == expected
    notes = [r.getMessage() for r in caplog.records if " is damaged (" in r.getMessage()]
    assert len(notes) == 1 and str(folder) in notes[0], caplog.text
    assert features(task, records)[1]  # whole again: the next run reads it
    assert [p.name for p in cache_root().iterdir()] == [folder.name]  # no work folder left


def test_training_after_a_cut_at_a_batch_boundary_trains_on_every_row(rows, tmp_path, caplog):
    """The issue's case: a cache cut at a record-batch boundary used to train on 1000 of the 1500 rows."""
    from transformers import TrainerCallback

    seen: list[int] = []

    class Rows(TrainerCallback):
        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            seen.append(len(train_dataloader.dataset))

    paths = {"train": rows, "validation": head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 20)}
    recipe = sst2_recipe(paths, tmp_path / "out", training={"max_steps": 1})
    train(recipe, callbacks=[Rows()])
    (train_entry,) = [p for p in cache_root().iterdir() if manifest(p)["rows"] == ROWS]
    cut_at_batch(train_entry)
    with caplog.at_level(logging.WARNING, logger="hftk"):
        train(recipe, overwrite=True, callbacks=[Rows()])
    assert seen == [ROWS, ROWS]
    assert f"cache entry {train_entry} is damaged" in caplog.text
    assert f"{ROWS} rows tokenised" in caplog.text


def test_entries_get_the_users_umask(rows, tok):
    records = read_records(rows)
    old = os.umask(0o002)
    try:
        features(classification(tok, records), records)
    finally:
        os.umask(old)
    folder = entry()
    assert folder.stat().st_mode & 0o777 == 0o775
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o664}


# ------------------------------------------------------------------------------------------------ sweeping

# A build as a child process: slow enough (a sleep per batch of 10 rows) to be killed or overtaken mid-way.
CHILD = """
import sys, time
from datasets import Dataset
from hftk.features.cache import cached_map

def slow(batch):
    time.sleep(0.05)
    return {"y": [2 * x for x in batch["x"]]}

n = int(sys.argv[2])
cached_map(sys.argv[1], lambda work: Dataset.from_dict({"x": list(range(n))}), slow, what="probe", batched=True,
           batch_size=10)
"""


def start_build(name: str, rows: int) -> tuple[subprocess.Popen, Path]:
    """A child building entry `name`, once its work folder is locked (the build under way)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, name, str(rows)], env=env, stderr=subprocess.PIPE)
    work = cache_root() / f".{name}.{child.pid}.tmp"
    for _ in range(600):
        if (work / ".lock").exists() or child.poll() is not None:
            break
        time.sleep(0.1)
    assert (work / ".lock").exists(), child.communicate()[1].decode()[-2000:]
    return child, work


def small_build(name: str) -> tuple:
    from datasets import Dataset

    return cached_map(name, lambda work: Dataset.from_dict({"x": [1, 2]}), lambda b: b, what="small", batched=True)


def test_a_killed_builds_folder_is_swept_and_a_live_builds_kept(caplog):
    live, running = start_build("b" * 32, 4000)
    try:
        killed, dead = start_build("a" * 32, 2000)  # (a build started now would sweep what it finds)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert dead.is_dir()  # what a SIGKILLed build leaves
        with caplog.at_level(logging.WARNING, logger="hftk"):
            small_build("c" * 32)  # any build sweeps
        assert not dead.exists() and f"removed {dead}" in caplog.text
        assert running.is_dir()  # its lock is held: a concurrent build goes on
        assert live.wait(120) == 0, live.stderr.read().decode()[-2000:]
    finally:
        live.kill()
        live.wait()
    assert status("b" * 32) == "warm" and not running.exists()
    assert sorted(p.name for p in cache_root().iterdir()) == ["b" * 32, "c" * 32]


def test_a_folder_without_a_lock_goes_only_once_its_process_is_gone():
    """An older hftk's work folder names its process: swept when that process is gone and the folder a minute
    old; kept while the process lives, or while it may be a build about to take its lock."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    root = cache_root()
    old_dead, old_alive, new_dead = (
        root / f".{n * 32}.{pid}.tmp" for n, pid in (("d", gone.pid), ("e", os.getpid()), ("f", gone.pid))
    )
    for folder in (old_dead, old_alive, new_dead):
        (folder / "out").mkdir(parents=True)
        (folder / "out" / "data.arrow").write_bytes(b"x" * 1000)
    for folder in (old_dead, old_alive):
        os.utime(folder, (time.time() - 120, time.time() - 120))
    small_build("c" * 32)
    assert not old_dead.exists() and old_alive.is_dir() and new_dead.is_dir()


# ------------------------------------------------------------------------------------------------ unwritable


@pytest.fixture
def unwritable(own_cache):
    own_cache.mkdir()
    try:
        set_writable(own_cache, False)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot make a folder unwritable here")
    yield own_cache
    set_writable(own_cache, True)


def test_an_unwritable_cache_is_one_error_and_no_cache_does_not_write_there(rows, tok, unwritable):
    records = read_records(rows)
    task = classification(tok, records)
    with pytest.raises(
        HftkError,
        match=rf"^{unwritable}/hftk: the features cache folder cannot be written .*"
        "set HF_DATASETS_CACHE to a writable folder, or train without the cache \\(--no-cache",
    ):
        features(task, records)
    with pytest.raises(HftkError, match="cannot be written"):
        task.cache_status(records, evaluation=False)  # `hftk check` says so too
    dataset, warm = features(task, records, cache=False)
    assert not warm and len(dataset) == ROWS and list(unwritable.iterdir()) == []


def test_a_warm_cache_is_read_when_it_cannot_be_written(rows, tok, own_cache):
    records = read_records(rows)
    task = classification(tok, records)
    cold, _ = features(task, records)
    set_writable(cache_root(), False)
    try:
        again, warm = features(task, records)
        assert warm and again.to_dict() == cold.to_dict()
    finally:
        set_writable(cache_root(), True)


def test_train_no_cache_in_an_unwritable_cache(rows, tmp_path, unwritable, capsys):
    """`hftk train --no-cache` trains with HF_DATASETS_CACHE read-only, and writes nothing there."""
    import yaml

    paths = {"train": rows, "validation": head(DATA / "en/sst2/dev.tsv", tmp_path / "dev.tsv", 20)}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(sst2_recipe(paths, tmp_path / "out", training={"max_steps": 1})))
    assert main(["train", str(recipe), "--no-cache"]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert list(unwritable.iterdir()) == []
    assert main(["train", str(recipe), "--overwrite"]) == 2
    assert "set HF_DATASETS_CACHE to a writable folder" in capsys.readouterr().err


def test_rows_are_counted_as_check_counts_them_and_windows_as_sequences(tmp_path, tok, caplog):
    """A CoNLL row longer than max_length is tokenised into several windows: `train` said "N+1 rows tokenised"
    where `check` counted N rows. Rows are the file's, as check counts them; the windows are named apart."""
    from hftk import check

    long = "\n".join(f"word{i} O" for i in range(90))
    text = f"Alice B-PER\nsmiled O\n\n{long}\n\nBob B-PER\n"
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    data = {"train": str(tmp_path / "train.txt")}
    recipe = {"task": "token-classification", "model": MINILM, "data": data, "max_length": 32, "stride": 8}
    assert check(recipe)["train"]["rows"] == 3
    task = task_for(tok, recipe)
    records = task.read(str(tmp_path / "train.txt"))
    task.fit(records)
    with caplog.at_level(logging.WARNING, logger="hftk"):
        built, _ = features(task, records)
        features(task, records)
    windows = len(built)
    assert windows > 3
    assert f"train.txt: 3 rows tokenised into {windows} sequences in " in caplog.text
    assert f"train.txt: 3 rows ({windows} sequences) from the cache" in caplog.text
