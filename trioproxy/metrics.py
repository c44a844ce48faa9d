"""Prometheus metrics, in a registry of the app's own (no process-wide state)."""

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from trioproxy.record import RequestRecord

__all__ = ["Metrics"]

_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/embeddings",
        "/v1/models",
        "/v1/messages",
    }
)
_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


def route_of(path: str) -> str:
    """A bounded label: known routes by name, everything else together."""
    return path if path in _ROUTES else "/v1/other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "trioproxy_requests", "Requests by outcome and route", ["outcome", "route"], registry=r
        )
        self._by_outcome: dict[tuple[object, str], Any] = {}
        self.open_streams = Gauge("trioproxy_open_requests", "Requests in flight now", registry=r)
        self.upstream_headers = Histogram(
            "trioproxy_upstream_headers_seconds",
            "Time from request start to upstream headers",
            registry=r,
        )
        self.bytes = Counter("trioproxy_relayed_bytes", "Response bytes relayed", registry=r)
        self.events = Counter("trioproxy_relayed_events", "SSE events relayed", registry=r)
        self.stop_propagation = Histogram(
            "trioproxy_stop_propagation_seconds",
            "Time from seeing a client's stop to the upstream connection closed",
            buckets=_FAST,
            registry=r,
        )

    def finished(self, rec: RequestRecord) -> None:
        key = (rec.outcome, route_of(rec.path))  # bounded: a client's path is no key
        counter = self._by_outcome.get(key)
        if counter is None:  # labels() parses its arguments every time: once per pair
            counter = self._by_outcome[key] = self.requests.labels(str(key[0]), key[1])
        counter.inc()
        self.bytes.inc(rec.bytes_relayed)
        self.events.inc(rec.events_relayed)
        if rec.upstream_headers_at is not None:
            self.upstream_headers.observe(rec.upstream_headers_at - rec.started_at)
        if rec.client_closed_at is not None and rec.upstream_closed_at is not None:
            self.stop_propagation.observe(rec.upstream_closed_at - rec.client_closed_at)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
