"""Requests in flight and lately ended, for the admin's list, cancel and page.

A worker's listing has a size known in advance, :data:`LISTING_MAX_BYTES`:
at most :data:`LISTED_MAX` requests in flight (the others only counted) and
:data:`RECENT_MAX` ended ones, each entry made of values kept to their caps
(:mod:`trioproxy.proxy.core.bounded`). The control socket between workers
takes answers of that size, so a listing always crosses whole.
"""

import itertools
import time
from collections import deque
from typing import Any

from trioproxy.proxy.core import bounded
from trioproxy.proxy.core.record import Outcome, RequestRecord

__all__ = ["LISTED_MAX", "LISTING_MAX_BYTES", "RECENT_MAX", "RECENT_S", "Inflight"]

RECENT_S = 300.0
"""How far back the admin page's list of ended requests goes."""
RECENT_MAX = 200
LISTED_MAX = 2000
"""Requests in flight one worker lists; past it they are counted in ``unlisted``."""

_KEPT_CHARS = (
    bounded.METHOD_MAX
    + bounded.PATH_MAX
    + bounded.MODEL_MAX
    + bounded.KEY_NAME_MAX
    + bounded.UPSTREAM_NAME_MAX
    + bounded.ADDRESS_MAX
    + bounded.REQUEST_ID_MAX
)
ENTRY_MAX_BYTES = 12 * _KEPT_CHARS + 512
"""One entry in JSON at most: a kept character is at most 12 bytes (a surrogate
pair as two ``\\uXXXX``), and the fixed fields (names, id, numbers) under 512."""
LISTING_MAX_BYTES = (LISTED_MAX + RECENT_MAX) * ENTRY_MAX_BYTES + 1024


class Inflight:
    """The records of this worker's requests, as an observer of their start and end
    (``Requests.subscribe(inflight.add, inflight.remove)``)."""

    def __init__(self) -> None:
        self._requests: dict[str, RequestRecord] = {}
        # (when it ended, its record): the dicts are built only when someone looks.
        self._ended: deque[tuple[float, RequestRecord]] = deque(maxlen=RECENT_MAX)

    def add(self, rec: RequestRecord) -> None:
        self._requests[rec.request_id] = rec

    def remove(self, rec: RequestRecord) -> None:
        if self._requests.pop(rec.request_id, None) is not None:
            self._ended.append((time.monotonic(), rec))

    def listing(self) -> list[dict[str, Any]]:
        """The first :data:`LISTED_MAX` requests in flight (oldest first)."""
        now = time.monotonic()
        first = itertools.islice(self._requests.values(), LISTED_MAX)
        return [_describe(r, now) for r in first]

    @property
    def unlisted(self) -> int:
        """Requests in flight left out of :meth:`listing`."""
        return max(0, len(self._requests) - LISTED_MAX)

    def recent(self) -> list[dict[str, Any]]:
        """Requests that ended in the last :data:`RECENT_S` seconds, newest first."""
        now = time.monotonic()
        return [
            _describe(r, ended) | {"ended_s_ago": round(now - ended, 1)}
            for ended, r in reversed(self._ended)
            if now - ended <= RECENT_S
        ]

    def cancel(self, request_id: str) -> bool:
        """Fire a request's stop: its upstream closes, and its race is cancelled."""
        rec = self._requests.get(request_id)
        if rec is None or not rec.stop.can_cancel:
            return False
        rec.stop.fire(Outcome.CANCELLED_BY_ADMIN)
        return True

    def shut_down(self) -> int:
        """Fire every relayed request's stop as a shutdown's: the end of its grace
        period. Each is answered (503 JSON, or an SSE error event) as it unwinds.
        Returns how many were stopped."""
        stopping = [r for r in self._requests.values() if r.stop.can_cancel and r.outcome is None]
        for rec in stopping:
            rec.stop.fire(Outcome.SHUTDOWN)
        return len(stopping)


def _describe(r: RequestRecord, now: float) -> dict[str, Any]:
    return {
        "id": r.request_id,
        "request_id": r.x_request_id,
        "client": r.client,
        "method": r.method,
        "path": r.path,
        "model": r.model,
        "key": r.key_name,
        "upstream": r.upstream,
        "phase": str(r.phase),
        "age_s": round(now - r.started_at, 3),
        "bytes": r.bytes_relayed,
        "events": r.events_relayed,
        "outcome": None if r.outcome is None else str(r.outcome),
        "status": r.status_logged,
    }
