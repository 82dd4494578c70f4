"""CoNLL files: one token per line, its tag in a column, a blank line between sentences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hftk.data.readers import read_lines
from hftk.data.records import Records
from hftk.errors import HftkError, not_found


def read_conll(path: str | Path, *, tag_column: int = -1, tokens: str = "tokens", tags: str = "tags") -> Records:
    """CoNLL column files: one token per line, blank lines between sentences, `-DOCSTART-` lines skipped.

    Each sentence becomes one row `{tokens: [...], tags: [...]}` whose line is the sentence's first line, so
    token j of row i sits on line `records.lines[i] + j`.
    """
    p = Path(path)
    if not p.is_file():
        raise not_found(p)
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
