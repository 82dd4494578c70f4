"""`Records`: rows as dicts plus where each came from, so every error names file and line; views of them (a part,
a batch) and SQuAD's questions. Reading files into Records is data/readers.py (CoNLL: data/conll.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hftk.errors import HftkError

# Feature columns a task encodes from Records: the model's inputs plus whatever decoding needs later.
Features = dict[str, list[Any]]
BATCH = 1000  # rows read, checked and encoded at once in a pass over data too large to hold


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
        return place(self.source, self.lines[i] if self.lines is not None else None, i)

    def batches(self, size: int = BATCH) -> Iterator[Records]:
        """The rows in parts of `size`, each row keeping its place: a pass that holds one part at a time over data
        that may not fit in memory (`RowStream` reads its file anew for each pass)."""
        for start in range(0, len(self), size):
            end = start + size
            lines = self.lines[start:end] if self.lines is not None else None
            yield _Batch(self.source, self.rows[start:end], lines, self.columns, whole=self, start=start)

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


# The kinds of value a task reads as one label: a Parquet struct, map or list (a JSON object or array) is none.
SCALARS = (str, int, float, bool)


def not_one_value(where: str, column: str, value: Any, expected: str, fix: str) -> HftkError:
    """'WHERE: column C holds dict {...}, but EXPECTED; FIX': a nested value where a task reads one value."""
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return HftkError(f"{where}: column {column!r} holds {type(value).__name__} {shown}, but {expected}; {fix}")


def place(source: str, line: int | None, index: int) -> str:
    return f"{source}:{line}" if line is not None else f"{source}: record {index + 1}"


@dataclass
class RecordsPart(Records):
    """A batch of another Records' rows that carries each row's place with it: what a worker process encodes."""

    places: list[str] = field(default_factory=list)

    def where(self, i: int) -> str:
        return self.places[i]


@dataclass
class _Batch(Records):
    """Rows `start`.. of `whole`, which still says where each one is."""

    whole: Records | None = None
    start: int = 0

    def where(self, i: int) -> str:
        return self.whole.where(self.start + i) if self.whole is not None else super().where(i)


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


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The keys of the first rows, in order of appearance (JSON rows need not all have every key)."""
    seen: dict[str, None] = {}
    for row in itertools.islice(rows, 1000):
        seen.update(dict.fromkeys(row))
    return list(seen)
