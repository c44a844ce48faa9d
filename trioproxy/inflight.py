"""Requests in flight, for the admin's list and cancel (the request-cancellation manager)."""

import time
from typing import Any

from trioproxy.metrics import Metrics
from trioproxy.record import Outcome, RequestRecord

__all__ = ["Inflight"]


class Inflight:
    def __init__(self, metrics: Metrics) -> None:
        self._requests: dict[str, RequestRecord] = {}
        self._metrics = metrics

    def add(self, rec: RequestRecord) -> None:
        self._requests[rec.request_id] = rec
        self._metrics.open_streams.inc()

    def remove(self, rec: RequestRecord) -> None:
        if self._requests.pop(rec.request_id, None) is not None:
            self._metrics.open_streams.dec()

    def listing(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
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
            }
            for r in self._requests.values()
        ]

    def cancel(self, request_id: str) -> bool:
        """Stop a request: its nursery is cancelled, closing upstream and client alike."""
        rec = self._requests.get(request_id)
        if rec is None or rec.cancel_scope is None:
            return False
        if rec.end(Outcome.CANCELLED_BY_ADMIN, 503):
            rec.client_closed_at = time.monotonic()  # the stop, for the propagation metric
        rec.stop()
        return True
