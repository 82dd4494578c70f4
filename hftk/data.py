"""Data files -> `Records`: rows as dicts plus where each came from, so every error names file and line.

CSV, TSV, JSON, JSON Lines, Parquet, `datasets` directories saved with `save_to_disk`, and hub datasets for
online users. Tasks with their own formats (CoNLL, SQuAD JSON) register a reader in `READERS`.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hftk.errors import HftkError, not_utf8

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

# Feature columns a task encodes from Records: the model's inputs plus whatever decoding needs later.
Features = dict[str, list[Any]]


class MissingColumn(HftkError):
    """A data file without a column a role needs. The fix depends on where the column was named: the recipe
    (the default), or a command's flag (`hftk embed --column`), so callers can say `with_fix`."""

    def __init__(self, source: str, name: str, role: str | None, columns: list[str]) -> None:
        self.source, self.name, self.role, self.columns = source, name, role, list(columns)
        fix = f"set data.columns.{role}: <column> in the recipe" if role else "rename the column"
        super().__init__(self.with_fix(fix))

    def with_fix(self, fix: str) -> str:
        have = ", ".join(self.columns) or "none"
        role = f" for {self.role!r}" if self.role and self.role != self.name else ""
        return f"{self.source}: no column {self.name!r}{role} (columns: {have}); {fix}"


@dataclass
class Records:
    """Rows of one data file, each remembering its line (text formats) or record number."""

    source: str
    rows: list[dict[str, Any]]
    lines: list[int] | None = None
    columns: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int) -> str:
        """'file:line' for text formats, 'file: record N' otherwise (1-based)."""
        if self.lines is not None:
            return f"{self.source}:{self.lines[i]}"
        return f"{self.source}: record {i + 1}"

    def column(self, name: str, role: str | None = None) -> list[Any]:
        """All values of a column; a clear error when it is missing or empty in a row."""
        if name not in self.columns:
            raise MissingColumn(self.source, name, role, self.columns)
        values = []
        for i, row in enumerate(self.rows):
            value = row.get(name)
            if value is None:
                raise HftkError(f"{self.where(i)}: column {name!r} is missing or null; fill it or drop the row")
            values.append(value)
        return values


@dataclass
class RecordsPart(Records):
    """A batch of another Records' rows that carries each row's place with it: what a worker process encodes."""

    places: list[str] = field(default_factory=list)

    def where(self, i: int) -> str:
        return self.places[i]


Reader = Callable[[Path], Records]


def read_records(path: str | Path, *, column_names: list[str] | None = None) -> Records:
    """Read one data file (or saved `datasets` directory) into Records."""
    p = Path(path)
    if not p.exists():
        raise HftkError(f"{p}: data file not found; check the path (relative paths in a recipe start at its folder)")
    if p.is_dir():
        return _read_saved_dataset(p)
    suffix = p.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise HftkError(f"{p}: unknown data format {suffix or '(no suffix)'!r}; use one of {known}")
    if suffix in (".csv", ".tsv"):
        records = _read_delimited(p, "\t" if suffix == ".tsv" else ",", column_names)
    else:
        if column_names:
            raise HftkError(f"{p}: data.column_names applies to CSV/TSV files without a header only")
        records = reader(p)
    if not records.rows:
        raise HftkError(f"{p}: no records in the file; add data or point the recipe at another file")
    return records


def read_hub_split(name: str, config: str | None, split: str) -> Records:
    """A split of a hub dataset (online users, or offline from the local `datasets` cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many types: connection, missing split, missing config
        raise HftkError(f"hub dataset {name!r} split {split!r}: {str(e).splitlines()[0]}") from None
    return Records(f"{name}[{split}]", ds.to_list(), None, list(ds.column_names))


def read_lines(p: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file (a BOM is dropped), with a located error for bad bytes."""
    with open(p, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise not_utf8(p, raw, e, first_line=n) from None
            if n == 1:
                line = line.removeprefix("\ufeff")
            yield n, line


def _read_delimited(p: Path, delimiter: str, column_names: list[str] | None) -> Records:
    # GLUE-style TSV has bare quote characters inside fields: TSV is read without quoting, CSV with it.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    numbered = list(read_lines(p))
    reader = csv.reader((line for _, line in numbered), delimiter=delimiter, quoting=quoting)
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    header = list(column_names) if column_names else None
    try:
        for cells in reader:
            n = numbered[reader.line_num - 1][0]
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                twice = next((c for i, c in enumerate(header) if c in header[:i]), None)
                if twice is not None:  # a dict row would keep the last one: the wrong column, silently
                    raise HftkError(f"{p}:{n}: column {twice!r} appears twice in the header; rename one")
                continue
            if len(cells) != len(header):
                raise HftkError(
                    f"{p}:{n}: {len(cells)} fields, the header has {len(header)}; "
                    f"fix the row (a stray {'tab' if delimiter == chr(9) else 'comma or quote'}?)"
                )
            rows.append(dict(zip(header, cells)))
            lines.append(n)
    except csv.Error as e:
        raise HftkError(f"{p}:{reader.line_num}: {e}; fix the quoting") from None
    return Records(str(p), rows, lines, header or [])


def _read_jsonl(p: Path) -> Records:
    rows, lines = [], []
    for n, line in read_lines(p):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise HftkError(f"{p}:{n}: invalid JSON ({e.msg}); one JSON object per line") from None
        if not isinstance(obj, dict):
            raise HftkError(f"{p}:{n}: expected a JSON object per line, got {type(obj).__name__}")
        rows.append(obj)
        lines.append(n)
    return Records(str(p), rows, lines, _columns(rows))


def _read_json(p: Path) -> Records:
    text = "".join(line for _, line in read_lines(p))
    if not text.strip():
        return Records(str(p), [], None, [])
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON Lines saved as .json (JGLUE does this)
            return _read_jsonl(p)
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
    return Records(str(p), obj, None, _columns(obj))


def _read_parquet(p: Path) -> Records:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except Exception as e:  # pyarrow's errors vary by corruption kind
        raise HftkError(f"{p}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    return Records(str(p), table.to_pylist(), None, table.column_names)


def _read_saved_dataset(p: Path) -> Records:
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except FileNotFoundError:
        raise HftkError(f"{p}: a directory, but not one saved with Dataset.save_to_disk; name a file") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds)
        raise HftkError(f"{p}: a DatasetDict with splits {splits}; name one split, e.g. {p}/{next(iter(ds))}")
    return Records(str(p), ds.to_list(), None, list(ds.column_names))


def read_conll(path: str | Path, *, tag_column: int = -1, tokens: str = "tokens", tags: str = "tags") -> Records:
    """CoNLL column files: one token per line, blank lines between sentences, `-DOCSTART-` lines skipped.

    Each sentence becomes one row `{tokens: [...], tags: [...]}` whose line is the sentence's first line, so
    token j of row i sits on line `records.lines[i] + j`.
    """
    p = Path(path)
    if not p.is_file():
        raise HftkError(f"{p}: data file not found; check the path (relative paths in a recipe start at its folder)")
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    words: list[str] = []
    labels: list[str] = []
    width = 0

    def flush() -> None:
        if words:
            rows.append({tokens: list(words), tags: list(labels)})
            lines.append(start)
            words.clear()
            labels.clear()

    need = max(2, tag_column + 1 if tag_column >= 0 else -tag_column)  # the token, and the tag column
    start = 0
    for n, line in read_lines(p):
        cells = line.split()
        if not cells or cells[0] == "-DOCSTART-":
            flush()
            continue
        if not words:
            start, width = n, len(cells)
        if len(cells) < need:
            raise HftkError(
                f"{p}:{n}: {len(cells)} column(s), need at least {need} (the token and the tag in column "
                f"{tag_column}); fix the line or set data.tag_column"
            )
        if len(cells) != width:
            raise HftkError(
                f"{p}:{n}: {len(cells)} columns, the sentence's first line has {width}; "
                "fix the line (a space inside a token, or a missing column?)"
            )
        words.append(cells[0])
        labels.append(cells[tag_column])
    flush()
    return Records(str(p), rows, lines, [tokens, tags] if rows else [])


@dataclass
class QuestionRecords(Records):
    """Questions read from SQuAD's nested layout, each located by its id: a JSON document has no useful line."""

    places: list[str] = field(default_factory=list)

    def where(self, i: int) -> str:
        line = f":{self.lines[i]}" if self.lines else ""
        return f"{self.source}{line}: {self.places[i]}"


def squad_questions(records: Records, column: Callable[[str], str]) -> QuestionRecords:
    """SQuAD's {data: [{title, paragraphs: [{context, qas: [{id, question, answers}]}]}]} -> one row per question.

    `records` are the file's articles (or paragraphs), read with the top-level {"data": [...]} unwrapped;
    `column` maps a role (id, question, context, answers) to the recipe's column name for it.
    """
    col = column
    rows, lines, places = [], [], []
    for a, article in enumerate(records.rows):
        paragraphs = article.get("paragraphs", [article]) if "qas" not in article else [article]
        if not isinstance(paragraphs, list):
            raise HftkError(f"{records.where(a)}: 'paragraphs' must be a list of {{context, qas}} objects")
        for p, para in enumerate(paragraphs):
            qas = para.get("qas") if isinstance(para, dict) else None
            if not isinstance(qas, list):
                raise HftkError(
                    f"{records.source}: article {a + 1}, paragraph {p + 1}: expected an object with "
                    "'context' and a list 'qas' (the SQuAD layout)"
                )
            for q, qa in enumerate(qas):
                if not isinstance(qa, dict):
                    raise HftkError(f"{records.source}: article {a + 1}, paragraph {p + 1}, qas {q + 1}: not an object")
                qid = qa.get("id")
                answers = [] if qa.get("is_impossible") is True else qa.get("answers", [])
                rows.append(
                    {
                        col("id"): qid,
                        col("question"): qa.get("question"),
                        col("context"): para.get("context"),
                        col("answers"): answers,
                        "title": article.get("title"),
                    }
                )
                if records.lines:
                    lines.append(records.lines[a])
                places.append(
                    f"question id {qid!r}"
                    if qid is not None
                    else f"article {a + 1}, paragraph {p + 1}, question {q + 1} (no id)"
                )
    if not rows:
        raise HftkError(f"{records.source}: no questions in the file (every 'qas' list is empty)")
    columns = [col("id"), col("question"), col("context"), col("answers"), "title"]
    return QuestionRecords(records.source, rows, lines or None, columns, places)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:1000]:
        seen.update(dict.fromkeys(row))
    return list(seen)


READERS: dict[str, Reader] = {
    ".csv": lambda p: _read_delimited(p, ",", None),
    ".tsv": lambda p: _read_delimited(p, "\t", None),
    ".json": _read_json,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".parquet": _read_parquet,
}
