"""Counts that every worker of one server adds to and reads: keys' limits, replicas' loads.

Each worker writes only its own row, a file ``tally-<name>-<pid>`` in the
server's run directory mapped into memory as 64-bit integers; a reader sums
the rows of every worker. A check-then-add (taking a key's last slot) holds
an ``flock`` on ``tally-<name>.lock``, so two workers never both take it.
The parent removes a dead worker's rows; the others stop counting them within
:data:`REFRESH_S`. With one process there is no run directory: the row is
plain memory and nothing is locked.
"""

import contextlib
import fcntl
import hashlib
import mmap
import os
import pathlib
import time
from collections.abc import Iterator

__all__ = ["REFRESH_S", "Tally", "forget_worker", "tally_name"]

REFRESH_S = 1.0
"""How often a reader looks for workers that came or went."""


def tally_name(kind: str, name: str) -> str:
    """A tally's name for a configured ``name`` (a key's, an upstream's): the same in
    every worker and across reloads, and safe in a file name whatever ``name`` holds."""
    return f"{kind}-{hashlib.blake2s(name.encode(), digest_size=8).hexdigest()}"


class Tally:
    """``size`` integers per worker; :meth:`total` is the whole server's."""

    def __init__(self, name: str, size: int, run_dir: str | None = None) -> None:
        self._size = max(size, 1)
        self._dir = pathlib.Path(run_dir) if run_dir else None
        self._name = name
        self._others: dict[pathlib.Path, memoryview] = {}
        self._looked_at = -REFRESH_S
        self._lock_fd: int | None = None
        if self._dir is None:
            self.row = memoryview(bytearray(8 * self._size)).cast("q")
            self._own: pathlib.Path | None = None
            return
        self._own = self._dir / f"tally-{name}-{os.getpid()}"
        self._own.write_bytes(bytes(8 * self._size))
        self.row = _mapped(self._own)
        self._lock_fd = os.open(self._dir / f"tally-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def total(self, index: int) -> int:
        return sum(int(row[index]) for row in self.rows())

    def rows(self) -> list[memoryview]:
        """Every worker's row, this one's first."""
        return [self.row, *self._rows()] if self._dir else [self.row]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """No other worker checks-then-adds meanwhile (a few microseconds)."""
        if self._lock_fd is None:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _rows(self) -> Iterator[memoryview]:
        now = time.monotonic()
        if now - self._looked_at >= REFRESH_S:
            self._looked_at = now
            self._refresh()
        return iter(self._others.values())

    def _refresh(self) -> None:
        assert self._dir is not None
        present = set(self._dir.glob(f"tally-{self._name}-*")) - {self._own}
        for gone in set(self._others) - present:
            self._others.pop(gone).release()
        for path in present - set(self._others):
            with contextlib.suppress(OSError, ValueError):  # gone meanwhile, or not yet sized
                self._others[path] = _mapped(path)


def _mapped(path: pathlib.Path) -> memoryview:
    fd = os.open(path, os.O_RDWR)
    try:
        return memoryview(mmap.mmap(fd, 0)).cast("q")
    finally:
        os.close(fd)  # the mapping keeps the file


def forget_worker(run_dir: str, pid: int) -> None:
    """A worker exited: the others stop counting its rows (called by the parent)."""
    for path in pathlib.Path(run_dir).glob(f"tally-*-{pid}"):
        path.unlink(missing_ok=True)
