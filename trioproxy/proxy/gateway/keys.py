"""Limits per client key that a stop frees at once.

At most ``max_concurrent`` requests in flight and ``per_minute`` started in
any 60 s, per key. A request holds a :class:`Slot` from the moment its key is
checked; the slot is released when the request ends, and, for a client's
stop, by the watcher in the same step that closes the upstream socket. So a
user who presses stop and asks again is never refused because of a stream
still running upstream, which is what happens behind a proxy that does not
propagate stops.

The limits hold for the whole server: with several workers, the counts live
in a :class:`~trioproxy.proxy.core.tally.Tally` every worker reads, and a check-then-take
is done under its lock. Starts are counted per second, so the 60 s window
moves in steps of a second.
"""

import math
import time
from dataclasses import dataclass

from trioproxy.proxy.core.tally import Tally
from trioproxy.proxy.gateway.config import ClientKey

__all__ = ["BUSY_S", "Busy", "Grant", "KeyLimiter", "Limited", "Slot"]

BUSY_S = 1.0
"""``Retry-After`` for a key at its concurrency limit: a stream can end any moment."""

_WINDOW_S = 60
_SLOTS = 2 * _WINDOW_S  # per key: (second, requests started in it) for each of the last 60 s


class Slot:
    """One request's place under its key's concurrency limit; released once."""

    __slots__ = ("_held", "_index", "_row")

    def __init__(self, row: memoryview, index: int) -> None:
        self._row = row
        self._index = index
        self._held = True
        row[index] += 1

    def release(self) -> None:
        if self._held:
            self._held = False
            self._row[self._index] -= 1


@dataclass(frozen=True, slots=True)
class Busy:
    """The key has ``max_concurrent`` requests in flight: one may end any moment."""

    retry_after_s: float = BUSY_S


@dataclass(frozen=True, slots=True)
class Limited:
    """The key started ``per_minute`` requests in the last 60 s."""

    retry_after_s: float
    """Until the oldest of them leaves the window, in whole seconds (at least 1)."""


type Grant = Slot | Busy | Limited
"""What :meth:`KeyLimiter.acquire` gives: a slot, or why not."""


class KeyLimiter:
    """Limits for the whole server: with several workers, their counts are one (a Tally)."""

    def __init__(self, keys: tuple[ClientKey, ...], run_dir: str | None = None) -> None:
        self._index = {k.name: i for i, k in enumerate(keys)}
        self._tally = Tally("keys", len(keys) * (1 + _SLOTS), run_dir)
        self._windows_at = len(keys)  # the in-flight counts come first, then the windows

    def acquire(self, key: ClientKey) -> Grant:
        """A slot, or why not (with the ``Retry-After`` to answer)."""
        i = self._index[key.name]
        with self._tally.locked():  # no other worker takes the last slot meanwhile
            if key.max_concurrent is not None and self._tally.total(i) >= key.max_concurrent:
                return Busy()
            if key.per_minute is not None and (wait_s := self._started(i, key.per_minute)):
                return Limited(wait_s)
            return Slot(self._tally.row, i)

    def _started(self, i: int, per_minute: int) -> float:
        """Count a start in this second, unless ``per_minute`` started in the last 60 s
        (then: seconds until the oldest of them leaves the window)."""
        now = int(time.monotonic())  # CLOCK_MONOTONIC: one clock for every process
        base = self._windows_at + i * _SLOTS
        started, oldest = 0, now
        for row in self._tally.rows():
            for at in range(base, base + _SLOTS, 2):
                if now - _WINDOW_S < row[at] <= now:
                    started += row[at + 1]
                    oldest = min(oldest, row[at])
        if started >= per_minute:
            return float(max(1, math.ceil(oldest + _WINDOW_S - now)))
        own = self._tally.row
        at = base + 2 * (now % _WINDOW_S)
        if own[at] != now:
            own[at], own[at + 1] = now, 0
        own[at + 1] += 1
        return 0.0
