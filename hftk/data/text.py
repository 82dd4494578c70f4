"""Plain text as Records: files, directories and globs of documents for language modelling.

`.txt` holds one document per line or blank-line paragraphs, other formats (JSONL, CSV, ...) a text column. Every
document remembers its file and line. A seeded held-out share of them is the validation split when no file is.
"""

from __future__ import annotations

import glob
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from hftk.data.readers import READERS, read_lines, read_records
from hftk.data.records import Records
from hftk.data.snapshot import Snapshot
from hftk.errors import HftkError, not_found

PLAIN_SUFFIXES = (".txt", ".text")
_MAGIC = set("*?[")


def expand_paths(source: str | os.PathLike | Sequence[str]) -> list[Path]:
    """Files named by a path, a directory (every data file inside, recursively) or a glob; several as a list."""
    patterns = [str(source)] if isinstance(source, (str, os.PathLike)) else [str(s) for s in source]
    if not patterns:
        raise HftkError("data: an empty list of files; name at least one file, directory or glob")
    known = {*PLAIN_SUFFIXES, *READERS}
    files: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if _MAGIC & set(pattern):
            matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
            if not matches:
                raise HftkError(f"{pattern}: no files match this pattern; check the path and the wildcard")
            files.extend(matches)
        elif p.is_dir():
            inside = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in known
                and not any(s.startswith(".") for s in f.relative_to(p).parts)  # hidden files and folders
            )
            if not inside:
                raise HftkError(f"{p}: no data files in this directory (looked for {', '.join(sorted(known))})")
            files.extend(inside)
        elif p.exists():
            files.append(p)
        else:
            raise not_found(p)
    return files


def read_texts(
    source: str | os.PathLike | Sequence[str],
    *,
    column: str,
    documents: str = "line",
    column_names: list[str] | None = None,
) -> Records:
    """Documents from every file `source` names, as rows `{column: text}` that know their file and line.

    Args:
        source: a file, directory or glob, or a list of them.
        column: the text column of non-plain files, and the column name of the rows returned.
        documents: for plain text, "line" (one document per line) or "paragraph" (blank-line separated).
        column_names: header names for CSV/TSV files without one.

    Raises:
        HftkError: a missing or empty file, bytes that are not UTF-8, a missing or non-text column, a pattern
            matching nothing.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else ", ".join(map(str, source))
    return Records.join(name, [read_text_file(p, column, documents, column_names) for p in expand_paths(source)])


def read_text_file(
    path: Path, column: str, documents: str, column_names: list[str] | None, checked: Snapshot | None = None
) -> Records:
    """The documents of one file (as it was when `checked`, a snapshot taken earlier)."""
    if not is_plain(path):
        return read_column(path, column, column_names, checked)
    limit = checked.verify() if checked is not None else None
    numbered = list(plain_documents(path, documents, limit))
    return Records(str(path), [{column: t} for _, t in numbered], [n for n, _ in numbered], [column])


def is_plain(path: Path) -> bool:
    return path.suffix.lower() in (*PLAIN_SUFFIXES, "")  # a file named without a suffix is plain text too


def read_column(path: Path, column: str, column_names: list[str] | None, checked: Snapshot | None = None) -> Records:
    """The text column of a data file (JSONL, CSV, Parquet, ...), every value checked to be non-empty text."""
    part = read_records(path, column_names=column_names, checked=checked)
    texts = part.column(column, "text")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise HftkError(f"{part.where(i)}: text must be a string, got {type(t).__name__} {t!r}")
    blank = next((i for i, t in enumerate(texts) if not t.strip()), None)
    if blank is not None:
        raise HftkError(f"{part.where(blank)}: column {column!r} is empty; fill it or drop the row")
    # Rows reduced to the text: where() still names the same file and line or record.
    return Records(part.source, [{column: t} for t in texts], part.lines, [column])


def plain_documents(path: Path, documents: str, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(first line, text) of each document of a plain-text file (its first `limit` bytes), one at a time; an error
    for an empty file."""
    found = False
    if documents == "line":
        for n, line in read_lines(path, limit):
            text = line.strip()
            if text:
                found = True
                yield n, text
    else:  # paragraphs: runs of non-blank lines, kept with their line breaks
        current: list[str] = []
        start = 0
        for n, line in read_lines(path, limit):
            if line.strip():
                if not current:
                    start = n
                current.append(line.strip())
            elif current:
                found = True
                yield start, "\n".join(current)
                current = []
        if current:
            found = True
            yield start, "\n".join(current)
    if not found:
        raise HftkError(f"{path}: no text (the file is empty or blank); add text or leave the file out")


def held_out(records: Records, fraction: float, seed: int) -> tuple[Records, Records]:
    """(train, held-out): a seeded random `fraction` of the documents held out, each side in file order."""
    n = len(records)
    held = held_out_indices(n, fraction, seed, records.source)
    return records.subset([i for i in range(n) if i not in held]), records.subset(sorted(held))


def held_out_indices(n: int, fraction: float, seed: int, source: str) -> frozenset[int]:
    """Which of `n` documents a seeded `validation_fraction` holds out (the same for records and corpora)."""
    k = round(n * fraction)
    if k < 1 or k >= n:
        raise HftkError(
            f"{source}: {n} documents; validation_fraction {fraction} leaves "
            f"{'no' if k < 1 else 'all'} documents for validation; change it or name a validation file"
        )
    return frozenset(random.Random(seed).sample(range(n), k))
