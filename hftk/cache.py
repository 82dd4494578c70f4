"""The features cache: what one run tokenised, the next memory-maps instead of tokenising again.

Every task's training features (packed blocks for language models, encoded rows for the others) are written
by `datasets.map` straight into a folder named by a hash of everything they depend on: the data files' bytes,
which rows, the tokenizer, the task's settings. Any change to one of those names another folder, so a stale
cache is never read. The folders live under `$HF_DATASETS_CACHE/hftk` (by default
`~/.cache/huggingface/datasets/hftk`) as plain Arrow files and a small JSON manifest: no pickles.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger("hftk")

_MANIFEST = "hftk-features.json"  # written last: a folder without it is not a cache entry
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


def lookup(name: str) -> Path | None:
    """The cache folder when these features are already there, else None."""
    final = cache_root() / name
    return final if (final / _MANIFEST).is_file() else None


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
    folder goes when the process ends.
    """
    found = lookup(name) if enabled else None
    if found is not None:
        dataset = _load(found)
        announce(f"{what}: {len(dataset)} rows from the cache ({found})")
        return dataset, True
    start = time.perf_counter()
    root = cache_root()
    work = root / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    if not enabled:
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    try:
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
        manifest = {"files": files, "rows": len(built), "what": what}
        (work / "out" / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        if enabled:
            shutil.rmtree(root / name, ignore_errors=True)
            os.replace(work / "out", root / name)
    finally:
        if enabled:
            shutil.rmtree(work, ignore_errors=True)
    dataset = _load(root / name if enabled else work / "out")
    seconds = time.perf_counter() - start
    done = "cached" if enabled else "no cache"
    announce(f"{what}: {len(dataset)} rows tokenised in {seconds:.1f} s with {num_proc} process(es), {done}")
    return dataset, False


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


def _load(folder: Path) -> Any:
    from datasets import Dataset, concatenate_datasets

    manifest = json.loads((folder / _MANIFEST).read_text())
    parts = [Dataset.from_file(str(folder / f)) for f in manifest["files"]]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def announce(message: str) -> None:
    """One line per split on stderr, naming the process in a distributed run: which one tokenised, which read."""
    rank = f"[rank {os.environ['RANK']}]" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    logger.warning("hftk%s: %s", rank, message)


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


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A hash of hftk's own source: features made by other code (a new release, an edited checkout) miss."""
    package = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def index_digest(indices: Any) -> str | None:
    """A hash of a selection of rows (sorted when a set), None for all rows."""
    if indices is None:
        return None
    values = sorted(indices) if isinstance(indices, (set, frozenset)) else list(indices)
    return hashlib.blake2b(json.dumps(values).encode(), digest_size=16).hexdigest()


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
