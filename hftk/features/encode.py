"""Records -> a task's training features, encoded by a batched `datasets.map` in worker processes, and cached.

Every task's `encode` turns a batch of records into feature columns; here the batches go through `datasets.map`
(`num_proc` processes, from `data.num_proc` or the cores) and land in Arrow files in the features cache
(hftk/features/cache.py), which Trainer reads memory-mapped. No token id is ever a Python object in the main process,
and the next run of the same recipe on the same files memory-maps the features instead of tokenising.

A worker sees only its shard of the rows, each with its place ("file:line"), so the errors `encode` raises for
a bad row read exactly as they do in a single process. Language models pack text instead (hftk/features/corpus.py).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hftk.data.records import BATCH, Features, Records, Split
from hftk.features.cache import cached_map, key, status

SHUFFLE_BUFFER = 10_000  # rows a stream is shuffled within
_ROWS_PER_PROCESS = 20_000  # below this many records a worker process costs more than it saves

Encode = Callable[[Records], Features]


def encoded_dataset(
    records: Records,
    encode: Encode,
    settings: dict[str, Any],
    *,
    num_proc: int | None = None,
    cache: bool = True,
) -> tuple[Any, bool]:
    """(`encode`'s features for every record as a memory-mapped `datasets.Dataset`, whether from the cache).

    `settings` is everything besides the rows that the features depend on (task, tokenizer, recipe); records
    whose origin is unknown (`Records.origin`: hub splits, rows handed in by code) are encoded the same way but not
    cached.
    Feature columns named `example` (windowed tasks: the record a feature came from) hold indices into `records`.
    """
    origin, name = _name(records, settings)
    procs = max(1, min(num_proc or os.cpu_count() or 1, len(records) // _ROWS_PER_PROCESS))
    common = {
        "what": records.source,
        "enabled": cache and origin is not None,
        "batched": True,
        "batch_size": BATCH,
        "with_indices": True,
        "desc": "hftk: tokenising",
    }
    part = {"source": records.source, "columns": list(records.columns), "lines": records.lines is not None}
    try:
        return cached_map(
            name,
            functools.partial(_json_rows, records, name),
            _encode_json,
            num_proc=procs,
            remove_columns=["row", "where", "line"],
            fn_kwargs={"encode": encode, **part},
            **common,
        )
    except Exception as e:
        if not _caused_by(e, _NotJson):
            raise
    # Values JSON cannot carry (timestamps, bytes from Parquet): the rows stay in this process, encoded by index.
    return cached_map(
        name,
        lambda work: _indices(len(records)),
        _encode_indices,
        num_proc=1,
        remove_columns=["index"],
        fn_kwargs={"encode": encode, "records": records},
        **common,
    )


def streamed_dataset(records: Split, encode: Encode, *, seed: int) -> Any:
    """`encode`'s features as a `datasets.IterableDataset` made on the fly, `BATCH` records at a time: memory does
    not grow with the data and nothing is written. Rows are shuffled within a buffer of `SHUFFLE_BUFFER` (a
    stream cannot be shuffled whole), the same way for the same seed and epoch, so `--resume` replays the stream
    and skips exactly what the interrupted run used."""
    from datasets import IterableDataset

    stream = IterableDataset.from_generator(_stream, gen_kwargs={"records": records, "encode": encode})
    return stream.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)


def _stream(records: Split, encode: Encode) -> Iterator[dict[str, Any]]:
    for part in records.batches(BATCH):
        features = encode(part)
        names = list(features)
        yield from (dict(zip(names, row)) for row in zip(*features.values()))


def _json_rows(records: Records, name: str, work: Path) -> Any:
    """The rows as a `datasets.Dataset` of JSON text, each with its place: what worker processes read their
    shard of (JSON, so nothing is unpickled; the cache keeps only the encoded features)."""
    from datasets import Dataset, Value
    from datasets import Features as Schema

    return Dataset.from_generator(
        _rows,
        gen_kwargs={"records": records},
        features=Schema({"row": Value("string"), "where": Value("string"), "line": Value("int64")}),
        cache_dir=str(work / "rows"),
        fingerprint=name,  # no hashing of every row: the name says what they are
    )


def _indices(n: int) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"index": list(range(n))})


def cache_state(records: Records, settings: dict[str, Any]) -> str:
    """For `hftk check`: what training will do with these records' cache entry (`cache.status`)."""
    origin, name = _name(records, settings)
    return status(name) if origin is not None else "off (not read from a file)"


def _name(records: Records, settings: dict[str, Any]) -> tuple[Any, str]:
    """(what the rows are, the cache entry's name for their features)."""
    origin = records.origin()
    return origin, key({"what": "features", "records": origin, **settings})


class _NotJson(Exception):
    """A row holds a value JSON cannot carry."""


def _rows(records: Records) -> Iterator[dict[str, Any]]:
    lines = records.lines
    for i, row in enumerate(records.rows):
        try:
            text = json.dumps(row, ensure_ascii=False)
        except (TypeError, ValueError):
            raise _NotJson(records.where(i)) from None
        yield {"row": text, "where": records.where(i), "line": lines[i] if lines is not None else -1}


def _caused_by(error: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether `kind` is in the chain of `error` (datasets wraps a generator's errors in its own)."""
    while error is not None:
        if isinstance(error, kind):
            return True
        error = error.__cause__ or error.__context__
    return False


def _encode_json(
    batch: dict[str, list[Any]], indices: list[int], *, encode: Encode, source: str, columns: list[str], lines: bool
) -> Features:
    rows = [json.loads(text) for text in batch["row"]]
    part = Records(source, rows, batch["line"] if lines else None, columns, places=batch["where"])
    return _encoded(encode, part, indices[0])


def _encode_indices(batch: dict[str, list[Any]], indices: list[int], *, encode: Encode, records: Records) -> Features:
    return _encoded(encode, records.subset(indices), indices[0])


def _encoded(encode: Encode, part: Records, start: int) -> Features:
    features = encode(part)
    if "example" in features:  # indices into this batch -> into the whole split
        features["example"] = [e + start for e in features["example"]]
    return features
