"""Data files -> rows, read row by row: CSV, TSV, JSON, JSON Lines, Parquet, `datasets` folders saved with
`save_to_disk`, and hub datasets for online users; whole into `Records`, or pass by pass as a `RowStream` for a
training split too large to hold. A file is read exactly as it was checked (`Snapshot`)."""

from __future__ import annotations

import csv
import functools
import itertools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hftk.data.records import BATCH, Records, columns_of, place
from hftk.data.snapshot import Snapshot
from hftk.errors import HftkError, lone_surrogate, no_records, not_found, not_unicode, not_utf8

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
logger = logging.getLogger("hftk")


@dataclass
class RowFile:
    """A data file opened for reading: its columns, and a fresh pass over its rows on each call of `rows()`, one
    (line, row) at a time; line is None in formats without lines (JSON documents, Parquet, saved datasets).

    `held`: the rows were read into memory at opening (a JSON document), so a pass never reads the file again.
    `snapshot`: the file as it was opened, which each pass that reads it again must still find."""

    path: Path
    columns: list[str]
    lined: bool
    _rows: Callable[[], Iterator[tuple[int | None, dict[str, Any]]]]
    held: bool = False
    snapshot: Snapshot | None = None

    def rows(self) -> Iterator[tuple[int | None, dict[str, Any]]]:
        if self.snapshot is not None:
            self.snapshot.verify()
        return self._rows()


def open_rows(path: str | Path, *, column_names: list[str] | None = None, checked: Snapshot | None = None) -> RowFile:
    """Open one data file (or saved `datasets` directory) for reading row by row: its header or schema is read
    now, each row (and its errors) when a pass reaches it. Every pass reads the file as it is now (or as it was
    when `checked`, a snapshot taken earlier), never rows written after."""
    p = Path(path)
    if not p.exists():
        raise not_found(p)
    suffix = p.suffix.lower()
    if not p.is_dir() and suffix not in READERS:
        known = ", ".join(sorted(READERS))
        raise HftkError(f"{p}: unknown data format {suffix or '(no suffix)'!r}; use one of {known}")
    if column_names and (p.is_dir() or suffix not in (".csv", ".tsv")):
        raise HftkError(f"{p}: data.column_names applies to CSV/TSV files without a header only")
    if p.is_dir():  # memory-mapped once, here: every pass reads the mapping opened now
        return _open_saved_dataset(p)
    snapshot = checked or (Snapshot.take(p) if p.is_file() else None)  # a named pipe is read once, as it comes
    file = READERS[suffix](p, column_names, snapshot.verify() if snapshot is not None else None)
    if not file.held:
        file.snapshot = snapshot
    return file


def read_records(
    path: str | Path, *, column_names: list[str] | None = None, checked: Snapshot | None = None
) -> Records:
    """Read one data file (or saved `datasets` directory) whole into Records (as it was when `checked`)."""
    file = open_rows(path, column_names=column_names, checked=checked)
    rows: list[dict[str, Any]] = []
    lines: list[Any] = []
    for n, row in file.rows():
        rows.append(row)
        lines.append(n)
    if not rows:
        raise no_records(file.path)
    return Records(str(file.path), rows, lines if file.lined else None, file.columns)


class RowStream:
    """A data file read anew on each pass, a batch of Records at a time, so a training split larger than memory is
    never held (`data.streaming`); `whole` reads it into Records once, for the splits that are small.

    Every pass reads the file as it was opened here, before the checking pass (`Snapshot`): rows appended during
    the run are not read, and a file changed otherwise stops the pass with an error naming it."""

    def __init__(self, path: str | Path, *, column_names: list[str] | None = None) -> None:
        self.file = open_rows(path, column_names=column_names)
        self.column_names = column_names
        self.source = str(self.file.path)
        self.columns = self.file.columns
        self._count: int | None = None
        self._whole: Records | None = None

    def batches(self, size: int = BATCH) -> Iterator[Records]:
        """One pass: Records of `size` rows, each with its place as text (the file is not held)."""
        count = 0
        rows = self.file.rows()
        while chunk := list(itertools.islice(rows, size)):
            lines: list[Any] | None = [n for n, _ in chunk] if self.file.lined else None
            places = [place(self.source, n, count + i) for i, (n, _) in enumerate(chunk)]
            yield Records(self.source, [row for _, row in chunk], lines, self.columns, places)
            count += len(chunk)
        if count == 0:
            raise no_records(self.file.path)
        self._count = count

    def __len__(self) -> int:
        if self._whole is not None:
            return len(self._whole)
        if self._count is None:
            for _ in self.batches():  # counts as it goes
                pass
        return self._count or 0

    def whole(self) -> Records:
        """The file's rows as it was opened, read on first use and then held."""
        if self._whole is None:
            self._whole = read_records(self.file.path, column_names=self.column_names, checked=self.file.snapshot)
        return self._whole


def read_hub_split(name: str, config: str | None, split: str) -> Records:
    """A split of a hub dataset (online users, or offline from the local `datasets` cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many types: connection, missing split, missing config
        raise HftkError(f"hub dataset {name!r} split {split!r}: {str(e).splitlines()[0]}") from None
    return Records(f"{name}[{split}]", ds.to_list(), None, list(ds.column_names))


def read_lines(p: Path, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file (a BOM is dropped), with a located error for bad bytes; only its
    first `limit` bytes when given (the size it had when checked)."""
    left = limit
    with open(p, "rb") as f:
        for n, raw in enumerate(f, 1):
            if left is not None:
                if left <= 0:
                    return
                raw, left = raw[:left], left - len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise not_utf8(p, raw, e, first_line=n) from None
            if n == 1:
                line = line.removeprefix("\ufeff")
            yield n, line


def _open_delimited(p: Path, column_names: list[str] | None, limit: int | None, *, delimiter: str) -> RowFile:
    def header_and_cells() -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
        cells = _cells(p, delimiter, limit)
        if column_names:
            return list(column_names), cells
        first = next(cells, None)
        if first is None:
            return [], cells
        n, header = first[0], [c.strip() for c in first[1]]
        twice = next((c for i, c in enumerate(header) if c in header[:i]), None)
        if twice is not None:  # a dict row would keep the last one: the wrong column, silently
            raise HftkError(f"{p}:{n}: column {twice!r} appears twice in the header; rename one")
        return header, cells

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        header, cells = header_and_cells()
        for n, values in cells:
            if len(values) != len(header):
                raise HftkError(
                    f"{p}:{n}: {len(values)} fields, the header has {len(header)}; "
                    f"fix the row (a stray {'tab' if delimiter == chr(9) else 'comma or quote'}?)"
                )
            yield n, dict(zip(header, values))

    header, cells = header_and_cells()
    cells.close()
    return RowFile(p, header, True, rows)


def _cells(p: Path, delimiter: str, limit: int | None) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of each non-blank CSV/TSV record; a record spanning lines (quoted line breaks) is at its last."""
    # GLUE-style TSV has bare quote characters inside fields: TSV is read without quoting, CSV with it.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader((line for _, line in read_lines(p, limit)), delimiter=delimiter, quoting=quoting)
    try:
        for values in reader:
            if values and (len(values) > 1 or values[0].strip()):
                yield reader.line_num, values  # read_lines hands every line on: the reader's count is the line
    except csv.Error as e:
        raise HftkError(f"{p}:{reader.line_num}: {e}; fix the quoting") from None


# A JSON escape of a surrogate (\ud800-\udfff): the only way a lone one gets into text decoded as UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Escaped backslashes and surrogate pairs (an emoji, as json.dumps writes it): with them taken out, left to right,
# a surrogate escape still in JSON text is a lone one.
_PAIRED = re.compile(r"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _has_lone_escape(text: str) -> bool:
    """Whether JSON text escapes a lone surrogate: two regex passes in C per line that has a surrogate escape at
    all, rather than a look at every value parsed from it (JSON written with ensure_ascii has one per emoji)."""
    return bool(_SURROGATE_ESCAPE.search(text)) and bool(_SURROGATE_ESCAPE.search(_PAIRED.sub("", text)))


def _line_of_lone_escape(text: str) -> int:
    """The line of a JSON document's first lone surrogate escape (it has one): matched with the paired ones, a
    match that is a single escape is it."""
    single = r"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
    at = next(m.start() for m in re.finditer(_PAIRED.pattern + single, text) if len(m.group()) == 6)
    return text.count("\n", 0, at) + 1


def surrogate_in(row: dict[str, Any]) -> tuple[str | None, str] | None:
    """(column, escape) of a lone surrogate in a row (column None: in a column name), or None: what
    `errors.not_unicode` reports."""
    for key, value in row.items():
        if (escape := lone_surrogate(key)) is not None:
            return None, escape
        if (escape := lone_surrogate(value)) is not None:
            return key, escape
    return None


def _jsonl_rows(p: Path, limit: int | None) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, line in read_lines(p, limit):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise HftkError(f"{p}:{n}: invalid JSON ({e.msg}); one JSON object per line") from None
        if not isinstance(obj, dict):
            raise HftkError(f"{p}:{n}: expected a JSON object per line, got {type(obj).__name__}")
        if _has_lone_escape(line) and (found := surrogate_in(obj)):
            raise not_unicode(f"{p}:{n}", found[1], found[0])
        yield n, obj


def _open_jsonl(p: Path, column_names: list[str] | None = None, limit: int | None = None) -> RowFile:
    return RowFile(p, columns_of(row for _, row in _jsonl_rows(p, limit)), True, lambda: _jsonl_rows(p, limit))


def _open_json(p: Path, column_names: list[str] | None = None, limit: int | None = None) -> RowFile:
    """A JSON document is parsed whole (JSON Lines, CSV or Parquet stream): a list of objects, {"data": [...]},
    or columns {name: [values]}."""
    text = "".join(line for _, line in read_lines(p, limit))
    obj: Any = []
    if text.strip():
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg == "Extra data":  # JSON Lines saved as .json (JGLUE does this)
                return _open_jsonl(p, None, limit)
            raise HftkError(f"{p}:{e.lineno}: invalid JSON ({e.msg}); fix the file") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if isinstance(obj, dict) and obj and all(isinstance(v, list) for v in obj.values()):
        n = {len(v) for v in obj.values()}
        if len(n) != 1:
            raise HftkError(f"{p}: columns of different lengths; every column needs one value per row")
        keys = list(obj)
        obj = [dict(zip(keys, vals)) for vals in zip(*obj.values())]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise HftkError(f"{p}: expected a list of JSON objects (or JSON Lines); got another shape")
    rows = obj
    found = next((f for row in rows if (f := surrogate_in(row)) is not None), None) if _has_lone_escape(text) else None
    if found is not None:  # at its line: a JSON document's records have none of their own
        raise not_unicode(f"{p}:{_line_of_lone_escape(text)}", found[1], found[0])
    return RowFile(p, columns_of(rows), False, lambda: ((None, row) for row in rows), held=True)


def _arrow_rows(p: Path, batches: Iterable[Any]) -> Iterator[tuple[None, dict[str, Any]]]:
    """The rows of Arrow record batches; a string that is not UTF-8 (another tool wrote its bytes unchecked) is a
    located error, not pyarrow's UnicodeDecodeError."""
    count = 0
    for batch in batches:
        try:
            rows = batch.to_pylist()
        except UnicodeDecodeError:
            raise _undecodable(p, batch, count) from None
        yield from ((None, row) for row in rows)
        count += len(rows)


def _undecodable(p: Path, batch: Any, start: int) -> HftkError:
    """The first value of `batch` that pyarrow cannot decode, by record and column."""
    for i in range(batch.num_rows):
        for name, column in zip(batch.schema.names, batch.columns):
            try:
                column.slice(i, 1).to_pylist()
            except UnicodeDecodeError as e:
                where = place(str(p), None, start + i)
                try:
                    escape = lone_surrogate(e.object.decode("utf-8", "surrogatepass"))
                except UnicodeDecodeError:
                    escape = None
                if escape is not None:
                    return not_unicode(where, escape, name)
                return HftkError(
                    f"{where}: column {name!r} holds text that is not UTF-8 (byte {e.start + 1} of the value); "
                    "write the column again as UTF-8 strings"
                )
    return HftkError(f"{p}: text that is not UTF-8 after record {start}; write the file again as UTF-8 strings")


def _open_parquet(p: Path, column_names: list[str] | None = None, limit: int | None = None) -> RowFile:
    import pyarrow.parquet as pq

    def opened() -> Any:
        try:
            return pq.ParquetFile(p)
        except Exception as e:  # pyarrow's errors vary by corruption kind
            raise HftkError(f"{p}: not a readable Parquet file ({str(e).splitlines()[0]})") from None

    def rows() -> Iterator[tuple[None, dict[str, Any]]]:
        try:
            yield from _arrow_rows(p, opened().iter_batches(batch_size=10 * BATCH))
        except OSError as e:  # a damaged row group, found when reached
            raise HftkError(f"{p}: not a readable Parquet file ({str(e).splitlines()[0]})") from None

    return RowFile(p, list(opened().schema_arrow.names), False, rows)


def _open_saved_dataset(p: Path) -> RowFile:
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except FileNotFoundError:
        raise HftkError(f"{p}: a directory, but not one saved with Dataset.save_to_disk; name a file") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds)
        raise HftkError(f"{p}: a DatasetDict with splits {splits}; name one split, e.g. {p}/{next(iter(ds))}")

    def rows() -> Iterator[tuple[None, dict[str, Any]]]:
        try:
            for batch in ds.iter(batch_size=BATCH):  # memory-mapped: read a batch at a time
                yield from ((None, dict(zip(batch, values))) for values in zip(*batch.values()))
        except UnicodeDecodeError:  # located by reading the table again, batch by batch
            for _ in _arrow_rows(p, ds.data.table.to_batches(max_chunksize=BATCH)):
                pass
            raise

    return RowFile(p, list(ds.column_names), False, rows, held=True)


# A reader opens a file reading at most `limit` bytes of it (None: all), the size it had when checked.
Reader = Callable[[Path, "list[str] | None", "int | None"], "RowFile"]
READERS: dict[str, Reader] = {
    ".csv": functools.partial(_open_delimited, delimiter=","),
    ".tsv": functools.partial(_open_delimited, delimiter="\t"),
    ".json": _open_json,
    ".jsonl": _open_jsonl,
    ".ndjson": _open_jsonl,
    ".parquet": _open_parquet,
}
# Formats whose columns open_rows reads from a header or the first rows, without reading the file whole.
TABULAR = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")
