"""Limits per client key that a stop frees at once.

At most ``max_concurrent`` requests in flight and ``per_minute`` started in
any 60 s, per key. A request holds a :class:`Slot` from the moment its key is
checked; the slot is released when the request ends, and, for a client's
stop, by the watcher in the same step that closes the upstream socket. So a
user who presses stop and asks again is never refused because of a stream
still running upstream, which is what happens behind a proxy that does not
propagate stops.
"""

import math
import time
from collections import deque

from trioproxy.config import ClientKey

__all__ = ["KeyLimiter", "Slot"]

_WINDOW_S = 60.0


class Slot:
    """One request's place under its key's concurrency limit; released once."""

    __slots__ = ("_held", "_inflight", "_name")

    def __init__(self, inflight: dict[str, int], name: str) -> None:
        self._inflight = inflight
        self._name = name
        self._held = True
        inflight[name] = inflight.get(name, 0) + 1

    def release(self) -> None:
        if self._held:
            self._held = False
            self._inflight[self._name] -= 1


class KeyLimiter:
    def __init__(self) -> None:
        self._inflight: dict[str, int] = {}
        self._started: dict[str, deque[float]] = {}

    def acquire(self, key: ClientKey) -> Slot | float:
        """A slot, or how many seconds until one may be free (for ``Retry-After``)."""
        if key.max_concurrent is not None and self._inflight.get(key.name, 0) >= key.max_concurrent:
            return 1.0  # a stream can end any moment: ask again soon
        if key.per_minute is not None:
            now = time.monotonic()
            started = self._started.setdefault(key.name, deque())
            while started and started[0] <= now - _WINDOW_S:
                started.popleft()
            if len(started) >= key.per_minute:
                return max(1.0, math.ceil(started[0] + _WINDOW_S - now))
            started.append(now)
        return Slot(self._inflight, key.name)
