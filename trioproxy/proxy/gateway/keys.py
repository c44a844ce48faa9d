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

Each key's counts are its own tally, found by the key's name: a reload that
keeps a key keeps its requests in flight and its window (the limiter built
for the new settings takes over the old one's tallies), in every worker,
whatever order the file lists the keys in.
"""

import math
import time
from dataclasses import dataclass

from trioproxy.proxy.core.tally import Tally, tally_name
from trioproxy.proxy.gateway.config import ClientKey

__all__ = ["BUSY_S", "Busy", "Grant", "KeyLimiter", "Limited", "Slot"]

BUSY_S = 1.0
"""``Retry-After`` for a key at its concurrency limit: a stream can end any moment."""

_WINDOW_S = 60
_SLOTS = 2 * _WINDOW_S  # per key: (second, requests started in it) for each of the last 60 s
_WINDOWS_AT = 1  # a key's row: its requests in flight, then its window


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

    def __init__(
        self,
        keys: tuple[ClientKey, ...],
        run_dir: str | None = None,
        *,
        after: "KeyLimiter | None" = None,
    ) -> None:
        """``after``: the limiter of the settings a reload replaces. Its tallies go on
        (a slot taken before the reload is released on the row it was taken on), and
        are kept for keys that went, which a later reload may bring back."""
        self._tallies: dict[str, Tally] = after._tallies if after is not None else {}
        for key in keys:
            if key.name not in self._tallies:
                size = _WINDOWS_AT + _SLOTS
                self._tallies[key.name] = Tally(tally_name("key", key.name), size, run_dir)

    def acquire(self, key: ClientKey) -> Grant:
        """A slot, or why not (with the ``Retry-After`` to answer)."""
        tally = self._tallies[key.name]
        with tally.locked():  # no other worker takes the last slot meanwhile
            if key.max_concurrent is not None and tally.total(0) >= key.max_concurrent:
                return Busy()
            if key.per_minute is not None and (wait_s := _started(tally, key.per_minute)):
                return Limited(wait_s)
            return Slot(tally.row, 0)


def _started(tally: Tally, per_minute: int) -> float:
    """Count a start in this second, unless ``per_minute`` started in the last 60 s
    (then: seconds until the oldest of them leaves the window)."""
    now = int(time.monotonic())  # CLOCK_MONOTONIC: one clock for every process
    started, oldest = 0, now
    for row in tally.rows():
        for at in range(_WINDOWS_AT, _WINDOWS_AT + _SLOTS, 2):
            if now - _WINDOW_S < row[at] <= now:
                started += row[at + 1]
                oldest = min(oldest, row[at])
    if started >= per_minute:
        return float(max(1, math.ceil(oldest + _WINDOW_S - now)))
    own = tally.row
    at = _WINDOWS_AT + 2 * (now % _WINDOW_S)
    if own[at] != now:
        own[at], own[at + 1] = now, 0
    own[at + 1] += 1
    return 0.0
