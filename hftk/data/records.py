"""`Records`: rows as dicts plus where each came from, so every error names file and line; views of them (a subset,
a batch, several files joined), SQuAD's questions, and `Split`, what a training split is (Records, or a source read
pass by pass that gives Records). Reading files into Records is data/readers.py (CoNLL: data/conll.py)."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hftk.errors import HftkError, did_you_mean
from hftk.files import file_digest

# Feature columns a task encodes from Records: the model's inputs plus whatever decoding needs later.
Features = dict[str, list[Any]]
BATCH = 1000  # rows read, checked and encoded at once in a pass over data too large to hold


class MissingColumn(HftkError):
    """A data file without a column a role needs. The fix depends on where the column was named: the recipe
    (the default), or a command's flag (`hftk embed --column`), so callers can say `with_fix`."""

    def __init__(self, source: str, name: str, role: str | None, columns: list[str]) -> None:
        self.source, self.name, self.role, self.columns = source, name, role, list(columns)
        if not role:
            fix = "rename the column"
        elif name != role:  # the recipe's data.columns named it
            fix = f"fix data.columns.{role} in the recipe (it names a column of the file)"
        else:
            fix = f"set data.columns.{role}: <column> in the recipe"
        super().__init__(self.with_fix(fix))

    def with_fix(self, fix: str) -> str:
        have = ", ".join(self.columns) or "none"
        role = f" for {self.role!r}" if self.role and self.role != self.name else ""
        hint = did_you_mean(self.name, self.columns)
        return f"{self.source}: no column {self.name!r}{role}{hint} (columns: {have}); {fix}"


class Split(Protocol):
    """A data split as training reads it: Records, or a file or corpus read anew on each pass (`readers.RowStream`,
    `features.corpus.TextCorpus`), which is held in memory only when something asks for every row at once."""

    source: str
    columns: list[str]

    def __len__(self) -> int: ...

    def batches(self, size: int = BATCH) -> Iterator[Records]:
        """The rows in Records of at most `size`, each row keeping its place: one pass, one batch held at a time."""
        ...

    def whole(self) -> Records:
        """Every row at once (read on first use by a stream): for small splits, or what needs all rows together."""
        ...


@dataclass
class Records:
    """Rows as dicts, each remembering where it came from: its file's line (text formats) or record number, or,
    for rows gathered from elsewhere, its entry in `places`.

    `places` is either each row's place as text (SQuAD's questions, named by id; a batch a worker process encodes,
    which must pickle), or a view of other Records' rows (a subset, a batch, several files joined) that asks them
    where each row is and says which of their rows these are (`origin`)."""

    source: str
    rows: list[dict[str, Any]]
    lines: list[int] | None = None
    columns: list[str] = field(default_factory=list)
    places: list[str] | _View | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int) -> str:
        """'file:line' for text formats, 'file: record N' otherwise (1-based), or the place the row came with."""
        if self.places is not None:
            return self.places[i]
        return place(self.source, self.lines[i] if self.lines is not None else None, i)

    def whole(self) -> Records:
        return self

    def batches(self, size: int = BATCH) -> Iterator[Records]:
        """The rows in parts of `size`, each row keeping its place (`Split.batches`)."""
        for start in range(0, len(self), size):
            yield self.subset(range(start, min(start + size, len(self))))

    def subset(self, index: Sequence[int]) -> Records:
        """The rows at `index`, in that order, each still at its own file and line (a held-out share, a batch)."""
        index = index if isinstance(index, range) else list(index)
        lines = [self.lines[i] for i in index] if self.lines is not None else None
        rows = [self.rows[i] for i in index]
        return Records(self.source, rows, lines, list(self.columns), _View([self], [index], [0]))

    @classmethod
    def join(cls, source: str, parts: list[Records]) -> Records:
        """The rows of one or more Records (the files of a text corpus) as Records named `source`, each row still at
        its own file and line."""
        starts = list(itertools.accumulate((len(part) for part in parts[:-1]), initial=0))
        rows = [row for part in parts for row in part.rows]
        return cls(source, rows, None, list(parts[0].columns), _View(parts, [None] * len(parts), starts))

    def origin(self) -> dict[str, Any] | None:
        """What the rows are, by content, for the features cache's key: the file's hash, how many rows and, when
        they came with places, a hash of those; for a view, the origins of the Records it views and which of their
        rows. None: not all read from a file (a hub split, rows handed in by code), so not cached."""
        if isinstance(self.places, _View):
            return self.places.origin()
        path = Path(self.source)
        if not path.is_file():
            return None
        return {"file": file_digest(path), "rows": len(self), "places": index_digest(self.places)}

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
class _View:
    """Where the rows of a Records made from others are: rows `index[k]` (None: all) of `parts[k]`, in order,
    part k's first at `starts[k]`. It holds the parts, not copies of their places."""

    parts: list[Records]
    index: list[Sequence[int] | None]
    starts: list[int]

    def __getitem__(self, i: int) -> str:
        k = bisect.bisect_right(self.starts, i) - 1
        index = self.index[k]
        j = i - self.starts[k]
        return self.parts[k].where(index[j] if index is not None else j)

    def origin(self) -> dict[str, Any] | None:
        parts = [part.origin() for part in self.parts]
        if any(o is None for o in parts):
            return None
        return {"parts": parts, "rows": [index_digest(index) for index in self.index]}


def index_digest(indices: Any) -> str | None:
    """A hash of a selection of rows, by index (sorted when a set) or by place; None for all rows."""
    if indices is None:
        return None
    values = sorted(indices) if isinstance(indices, (set, frozenset)) else list(indices)
    return hashlib.blake2b(json.dumps(values).encode(), digest_size=16).hexdigest()


# The kinds of value a task reads as one label: a Parquet struct, map or list (a JSON object or array) is none.
SCALARS = (str, int, float, bool)


def not_one_value(where: str, column: str, value: Any, expected: str, fix: str) -> HftkError:
    """'WHERE: column C holds dict {...}, but EXPECTED; FIX': a nested value where a task reads one value."""
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return HftkError(f"{where}: column {column!r} holds {type(value).__name__} {shown}, but {expected}; {fix}")


def place(source: str, line: int | None, index: int) -> str:
    return f"{source}:{line}" if line is not None else f"{source}: record {index + 1}"


def squad_questions(records: Records, column: Callable[[str], str]) -> Records:
    """SQuAD's {data: [{title, paragraphs: [{context, qas: [{id, question, answers}]}]}]} -> one row per question.

    `records` are the file's articles (or paragraphs), read with the top-level {"data": [...]} unwrapped;
    `column` maps a role (id, question, context, answers) to the recipe's column name for it. Each question's place
    is its id (a JSON document has no useful line), after its line in JSON Lines.
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
                at = records.source
                if records.lines:
                    lines.append(records.lines[a])
                    at = f"{at}:{records.lines[a]}"
                named = (
                    f"question id {qid!r}"
                    if qid is not None
                    else f"article {a + 1}, paragraph {p + 1}, question {q + 1} (no id)"
                )
                places.append(f"{at}: {named}")
    if not rows:
        raise HftkError(f"{records.source}: no questions in the file (every 'qas' list is empty)")
    columns = [col("id"), col("question"), col("context"), col("answers"), "title"]
    return Records(records.source, rows, lines or None, columns, places)


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The keys of the first rows, in order of appearance (JSON rows need not all have every key)."""
    seen: dict[str, None] = {}
    for row in itertools.islice(rows, 1000):
        seen.update(dict.fromkeys(row))
    return list(seen)
