"""The one exception type users see: printed as a single line by the CLI, exit status 2."""


class HftkError(Exception):
    """A user-facing error: says where (file, line or record) and what to do. Never a traceback."""


def not_utf8(path: object, data: bytes, error: UnicodeDecodeError) -> HftkError:
    """'file:line: not UTF-8 (byte N of the line)' for a decode error in `data`, 1-based like an editor."""
    line = data.count(b"\n", 0, error.start) + 1
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    return HftkError(f"{path}:{line}: not UTF-8 (byte {column} of the line); re-save the file as UTF-8")
