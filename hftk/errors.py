"""The one exception type users see (printed as a single line by the CLI, exit status 2), and the helpers that
word its most common messages the same way everywhere."""

from __future__ import annotations

import difflib
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
