"""The features cache: what one run tokenised, the next memory-maps instead of tokenising again.

Every task's training features (packed blocks for language models, encoded rows for the others) are written
by `datasets.map` straight into a folder named by a hash of everything they depend on: the data files' bytes,
which rows, the tokenizer, the task's settings. Any change to one of those names another folder, so a stale
cache is never read. The folders live under `$HF_DATASETS_CACHE/hftk` (by default
`~/.cache/huggingface/datasets/hftk`) as plain Arrow files and a small JSON manifest: no pickles.

An entry is checked each time it is opened: every file's size and xxh3 hash as the manifest recorded them (at
memory speed: a gigabyte in a fraction of a second) and the manifest's row count against the Arrow files'. A
damaged entry (cut short, bytes changed, a file missing, a garbage manifest) is never used: it is built anew,
with one note. A build killed half-way leaves its work folder behind; the next build removes it once no process
holds its lock.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import logging
import mmap
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import xxhash  # a dependency of datasets; hashes ~30x faster than blake2b here

from hftk.errors import HftkError
from hftk.files import scratch, sweep

logger = logging.getLogger("hftk")

_MANIFEST = "hftk-features.json"  # written last: a folder without it is not a cache entry
_KEY = re.compile(r"[0-9a-f]+")  # an entry's name; its work folder is files.scratch's .<key>.<pid>.tmp
# Tokenizer settings that change how a call pads or truncates, not how text becomes tokens.
_CALL_SETTINGS = {
    "max_length",
    "stride",
    "truncation_side",
    "truncation_strategy",
    "pad_to_multiple_of",
    "padding_side",
}


def cache_root() -> Path:
    """Where hftk keeps features: beside `datasets`' own cache, as HF_DATASETS_CACHE says."""
    base = os.environ.get("HF_DATASETS_CACHE")
    if not base:
        home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
        base = os.path.join(home, "datasets")
    return Path(base) / "hftk"


def key(parts: dict[str, Any]) -> str:
    """The cache folder's name: a hash of everything the features depend on, hftk's own code included (another
    release or an edited checkout builds anew)."""
    text = json.dumps({"code": code_digest(), **parts}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def status(name: str) -> str:
    """For `hftk check`: what training will do with this entry ('warm': read it).

    Raises:
        HftkError: the entry must be built and the cache folder cannot be written.
    """
    found, problem = _open(cache_root() / name)
    if found is not None:
        return "warm"
    _check_writable(cache_root())
    if problem is not None:
        return f"damaged ({problem}): built anew by the next run"
    return "cold (tokenised once, then cached)"


def cached_map(
    name: str,
    inputs: Callable[[Path], Any],
    function: Callable[..., dict[str, Any]],
    *,
    what: str,
    enabled: bool = True,
    num_proc: int = 1,
    **map_args: Any,
) -> tuple[Any, bool]:
    """(`inputs(folder).map(function, **map_args)` memory-mapped, whether it came from the cache).

    The map writes its Arrow files straight into a work folder that becomes the cache entry by one rename, so a
    run killed half-way leaves no half cache behind and nothing is written twice. Without the cache the work
    folder is a temporary one outside it (TMPDIR), gone when the process ends: nothing is written to the cache.
    """
    root = cache_root()
    final = root / name
    if enabled:
        sweep(root, _KEY, announce)
        found, problem = _open(final)
        if found is not None:
            announce(f"{what}: {_counts(_manifest_inputs(final), len(found))} from the cache ({final})")
            return found, True
        if problem is not None:
            announce(f"{what}: cache entry {final} is damaged ({problem}); building it anew")
    start = time.perf_counter()
    with _work_folder(root, name, enabled) as work:
        with _no_progress_bars():  # writing the inputs out is quick; the map's bar below is the one to watch
            rows = inputs(work)
        built = rows.map(
            function,
            num_proc=num_proc if num_proc > 1 else None,
            cache_file_name=str(work / "out" / "data.arrow"),
            new_fingerprint=name,  # no hashing of the function's arguments (tokenizer, task): the name says it all
            **map_args,
        )
        files = [Path(f["filename"]).name for f in built.cache_files]
        sums = {f: [(work / "out" / f).stat().st_size, _file_sum(work / "out" / f)] for f in files}
        manifest = {"files": files, "rows": len(built), "inputs": len(rows), "what": what, "sums": sums}
        (work / "out" / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if not enabled:
            dataset = _dataset(work / "out", files)
        elif (dataset := _open(final)[0]) is None:  # else a concurrent build of the same entry finished first
            shutil.rmtree(final, ignore_errors=True)
            os.replace(work / "out", final)
            dataset = _dataset(final, files)
    seconds = time.perf_counter() - start
    done = "cached" if enabled else "no cache"
    counts = _counts(len(rows), len(dataset), verb=" tokenised")
    announce(f"{what}: {counts} in {seconds:.1f} s with {num_proc} process(es), {done}")
    return dataset, False


def _counts(inputs: int | None, sequences: int, verb: str = "") -> str:
    """'N rows' of the data file (what `hftk check` counts), and the sequences the model sees when they are not
    as many (a long row in several windows, documents packed into blocks): 'N rows tokenised into M sequences',
    'N rows (M sequences)'."""
    if inputs is None or inputs == sequences:
        return f"{sequences} rows{verb}"
    return f"{inputs} rows{verb} into {sequences} sequences" if verb else f"{inputs} rows ({sequences} sequences)"


def _manifest_inputs(folder: Path) -> int | None:
    """The rows an entry was tokenised from (None for entries written before the manifest kept them)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        inputs = json.loads((folder / _MANIFEST).read_text(encoding="utf-8")).get("inputs")
        return inputs if isinstance(inputs, int) and not isinstance(inputs, bool) else None
    return None


@contextlib.contextmanager
def _work_folder(root: Path, name: str, enabled: bool) -> Iterator[Path]:
    """A fresh folder with `out/` in it, removed after (a cache build's lies in the cache, locked while this
    process builds in it, so the entry is one rename away; without the cache it is a temporary folder elsewhere)."""
    if not enabled:
        try:
            work = Path(tempfile.mkdtemp(prefix=f"hftk-features-{name[:8]}-"))
        except OSError as e:
            raise HftkError(
                f"{tempfile.gettempdir()}: cannot write a temporary folder there ({e.strerror}); "
                "set TMPDIR to a writable folder"
            ) from None
        atexit.register(shutil.rmtree, work, ignore_errors=True)  # the dataset is read from it until the end
        (work / "out").mkdir()
        yield work
        return
    with scratch(root, name, lambda e: _unwritable(root, e.strerror or str(e))) as work:
        (work / "out").mkdir()
        yield work


def _check_writable(root: Path) -> None:
    """Raise what a build would when it cannot write the cache folder, without writing anything."""
    existing = root
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise _unwritable(root, f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _unwritable(root, "permission denied" if existing == root else f"{existing} cannot be written")


def _unwritable(root: Path, why: str) -> HftkError:
    return HftkError(
        f"{root}: the features cache folder cannot be written ({why}); set HF_DATASETS_CACHE to a writable folder, "
        "or train without the cache (--no-cache, data.cache: false)"
    )


def _open(folder: Path) -> tuple[Any, str | None]:
    """(the entry memory-mapped, None) when it is whole; (None, what is wrong) when damaged; (None, None) when
    there is none. Whole: the manifest lists files, each with the size and hash it was written with, and rows
    as many as the files hold."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, ("no manifest" if folder.exists() else None)
    except (OSError, ValueError) as e:  # not UTF-8, not JSON, unreadable
        return None, f"{_MANIFEST} unreadable: {e}"
    files, sums = manifest.get("files") if isinstance(manifest, dict) else None, None
    if not isinstance(files, list) or not files or not all(_plain_name(f) for f in files):
        return None, f"{_MANIFEST} lists no files"
    sums, rows = manifest.get("sums"), manifest.get("rows")
    if not isinstance(sums, dict) or not all(_is_sum(sums.get(f)) for f in files):
        return None, f"{_MANIFEST} has no sizes and hashes of its files"
    if not isinstance(rows, int) or isinstance(rows, bool):
        return None, f"{_MANIFEST} has no row count"
    if problem := _changed(folder, files, sums):
        return None, problem
    try:
        dataset = _dataset(folder, files)
    except Exception as e:  # written damaged: it hashed the same
        return None, f"Arrow files unreadable: {e}"
    if len(dataset) != rows:
        return None, f"{len(dataset)} rows in its files, {rows} in {_MANIFEST}"
    return dataset, None


def _plain_name(name: Any) -> bool:
    """A file name in the entry's own folder (a manifest cannot point elsewhere)."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name and "\\" not in name


def _is_sum(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], int) and isinstance(value[1], str)


def _changed(folder: Path, files: list[str], sums: dict[str, list[Any]]) -> str | None:
    """What differs from when the files were written: a file missing, its size (cut short), its bytes."""
    for name in files:
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != sums[name][0]:
            return f"{name} has {size} bytes, not the {sums[name][0]} it was written with"
        if _file_sum(path) != sums[name][1]:
            return f"{name} has changed since it was written"
    return None


def _file_sum(path: Path) -> str:
    """xxh3-128 of the file's bytes, memory-mapped: no copies, ~10 GB/s from the page cache."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return xxhash.xxh3_128().hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return xxhash.xxh3_128(data).hexdigest()


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    from datasets.utils import logging as ds_logging

    was = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            ds_logging.enable_progress_bar()


def _dataset(folder: Path, files: list[str]) -> Any:
    from datasets import Dataset, concatenate_datasets

    parts = [Dataset.from_file(str(folder / f)) for f in files]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def announce(message: str) -> None:
    """One line per split on stderr, naming the process in a distributed run: which one tokenised, which read."""
    rank = f"[rank {os.environ['RANK']}]" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    logger.warning("hftk%s: %s", rank, message)


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A hash of hftk's own source: features made by other code (a new release, an edited checkout) miss."""
    package = Path(__file__).resolve().parents[1]  # hftk/, every subpackage
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of how the tokenizer splits text: its Rust state where it serialises, else its vocabulary and
    settings (hftk's Japanese tokenizer, whose MeCab pre-tokenizer does not serialise)."""
    try:
        backend = json.loads(tokenizer.backend_tokenizer.to_str())
        # Truncation and padding are call settings the last call left behind, not how text is split.
        state = json.dumps({k: v for k, v in backend.items() if k not in ("truncation", "padding")}, sort_keys=True)
    except Exception:  # a custom pre-tokenizer cannot be serialised
        state = json.dumps(sorted(tokenizer.get_vocab().items()))
    settings = json.dumps(
        {k: v for k, v in getattr(tokenizer, "init_kwargs", {}).items() if k not in _CALL_SETTINGS},
        sort_keys=True,
        default=str,
    )
    text = f"{type(tokenizer).__name__}\n{settings}\n{state}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
