"""The one exception type users see (printed as a single line by the CLI, exit status 2), and the helpers that
word its most common messages the same way everywhere."""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterable


class HftkError(Exception):
    """A user-facing error: says where (file, line or record) and what to do. Never a traceback."""


def not_utf8(path: object, data: bytes, error: UnicodeDecodeError, *, first_line: int = 1) -> HftkError:
    """'file:line: not UTF-8 (byte N of the line)' for a decode error in `data`, 1-based like an editor.

    `data` is the whole file, or one line of it with `first_line` its line number.
    """
    line = first_line + data.count(b"\n", 0, error.start)
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    return HftkError(f"{path}:{line}: not UTF-8 (byte {column} of the line); re-save the file as UTF-8")


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, or '' when none is close: appended to an error."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def not_found(path: object) -> HftkError:
    return HftkError(f"{path}: data file not found; check the path (relative paths in a recipe start at its folder)")


def no_records(path: object) -> HftkError:
    return HftkError(f"{path}: no records in the file; add data or point the recipe at another file")


SURROGATE = re.compile("[\ud800-\udfff]")  # a lone one: JSON and Arrow let it through, UTF-8 does not


def lone_surrogate(value: object) -> str | None:
    """The first lone surrogate in a string, or anywhere in nested lists and dicts (keys too), written as its
    escape (e.g. '\\ud800'); None when there is none. JSON's "\\ud800" decodes to one, and no UTF-8 encoder (a
    tokenizer, an output file, an HTTP response) takes it: readers and `hftk serve` check with this."""
    if isinstance(value, str):
        found = SURROGATE.search(value)
        return f"\\u{ord(found.group()):04x}" if found else None
    items: Iterable[object]
    if isinstance(value, dict):
        items = itertools.chain(value.keys(), value.values())
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return None
    return next((escape for item in items if (escape := lone_surrogate(item)) is not None), None)


def not_unicode(where: str, escape: str, column: object | None) -> HftkError:
    """'WHERE: ... is not valid Unicode text (a lone surrogate \\ud800 in column X); ...': `column` None means the
    surrogate is in a column name."""
    inside = f"in column {column!r}" if column is not None else "in a column name"
    return HftkError(
        f"{where}: the row is not valid Unicode text (a lone surrogate {escape} {inside}); write the character "
        "itself or both halves of its surrogate pair (e.g. \\ud83d\\ude00), or drop the row"
    )
