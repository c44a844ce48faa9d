"""Requests in flight and lately ended, for the admin's list, cancel and page."""

import time
from collections import deque
from typing import Any

from trioproxy.proxy.admin.metrics import Metrics
from trioproxy.proxy.relay.record import Outcome, RequestRecord

__all__ = ["RECENT_S", "Inflight"]

RECENT_S = 300.0
"""How far back the admin page's list of ended requests goes."""
_RECENT_MAX = 200


class Inflight:
    def __init__(self, metrics: Metrics) -> None:
        self._requests: dict[str, RequestRecord] = {}
        # (when it ended, its record): the dicts are built only when someone looks.
        self._ended: deque[tuple[float, RequestRecord]] = deque(maxlen=_RECENT_MAX)
        self._metrics = metrics

    def add(self, rec: RequestRecord) -> None:
        self._requests[rec.request_id] = rec
        self._metrics.open_streams.inc()

    def remove(self, rec: RequestRecord) -> None:
        if self._requests.pop(rec.request_id, None) is not None:
            self._metrics.open_streams.dec()
            self._ended.append((time.monotonic(), rec))

    def listing(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [_describe(r, now) for r in self._requests.values()]

    def recent(self) -> list[dict[str, Any]]:
        """Requests that ended in the last :data:`RECENT_S` seconds, newest first."""
        now = time.monotonic()
        return [
            _describe(r, ended) | {"ended_s_ago": round(now - ended, 1)}
            for ended, r in reversed(self._ended)
            if now - ended <= RECENT_S
        ]

    def cancel(self, request_id: str) -> bool:
        """Stop a request: its nursery is cancelled, closing upstream and client alike."""
        rec = self._requests.get(request_id)
        if rec is None or rec.cancel_scope is None:
            return False
        rec.stop(Outcome.CANCELLED_BY_ADMIN, 503)
        return True


def _describe(r: RequestRecord, now: float) -> dict[str, Any]:
    return {
        "id": r.request_id,
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
