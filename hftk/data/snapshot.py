"""A data file as it was checked: read again, it must still be that file, grown at most by appended rows, which
a pass then leaves unread (the run trains on the rows it checked)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from hftk.errors import HftkError
from hftk.files import file_digest

logger = logging.getLogger("hftk")

_EDGE = 1 << 16  # bytes hashed at each end of a file's checked part: the cheap test that it is still there
# Line-based formats, where rows appended at the end leave the rows before them as they were.
_APPENDABLE = (".csv", ".tsv", ".jsonl", ".ndjson", ".txt", ".text", "")


@dataclass
class Snapshot:
    """A data file as it was when checked. A file read anew on each pass (`data.streaming`, a language-model
    corpus) must give every pass exactly the rows checked, so each pass compares the file with this first.

    Rows appended to a text file leave the checked bytes in place: a pass then reads only those and says so once
    (a run that has trained for hours goes on, on the data it checked). Any other change (edited in place,
    shortened, replaced) leaves no checked rows to read: the pass stops with an error naming the file."""

    path: Path
    size: int
    mtime_ns: int
    edges: str  # hash of the first and last `_EDGE` bytes of the checked size
    appendable: bool
    warned: bool = False

    @classmethod
    def take(cls, path: str | Path) -> Snapshot:
        p = Path(path)
        st = p.stat()
        return cls(p, st.st_size, st.st_mtime_ns, _edges(p, st.st_size), p.suffix.lower() in _APPENDABLE)

    def verify(self) -> int:
        """The bytes a pass reads (the checked size): a warning the first time the file has grown since, an error
        when it changed in any other way."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise self._changed("the file is gone") from None
        if st.st_size == self.size and st.st_mtime_ns == self.mtime_ns:
            return self.size
        if st.st_size < self.size:
            raise self._changed(f"{st.st_size} bytes now, {self.size} then")
        if _edges(self.path, self.size) != self.edges or st.st_size == self.size:
            raise self._changed("its checked bytes were rewritten")
        if not self.appendable:
            raise self._changed(f"{st.st_size} bytes now, {self.size} then")
        if not self.warned:
            self.warned = True
            logger.warning(
                "hftk: %s: grew since it was checked at start (%d bytes now, %d then); this run reads only the %d "
                "bytes it checked, the new rows wait for the next run",
                self.path,
                st.st_size,
                self.size,
                self.size,
            )
        return self.size

    def digest(self) -> str:
        """The content hash of the checked bytes: what a cache entry of this file's rows is keyed by."""
        st = self.path.stat()
        if st.st_size == self.size and st.st_mtime_ns == self.mtime_ns:
            return file_digest(self.path)  # memoised per process
        h = hashlib.blake2b(digest_size=16)
        with open(self.path, "rb") as f:
            left = self.size
            while left and (chunk := f.read(min(left, 1 << 23))):
                h.update(chunk)
                left -= len(chunk)
        return h.hexdigest()

    def _changed(self, how: str) -> HftkError:
        return HftkError(
            f"{self.path}: changed since it was checked at start ({how}); a run reads only the rows it checked: "
            "put the checked file back, or start the run again (--resume continues it, checking the file anew)"
        )


def _edges(path: Path, size: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(min(size, _EDGE)))
        if size > _EDGE:
            f.seek(max(_EDGE, size - _EDGE))
            h.update(f.read(size - max(_EDGE, size - _EDGE)))
    return h.hexdigest()
