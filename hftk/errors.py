"""The one exception type users see: printed as a single line by the CLI, exit status 2."""


class HftkError(Exception):
    """A user-facing error: says where (file, line or record) and what to do. Never a traceback."""
