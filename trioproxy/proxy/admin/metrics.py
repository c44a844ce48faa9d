"""Prometheus metrics, in a registry of the app's own (no process-wide state).

With ``--workers N`` the parent names a directory in ``PROMETHEUS_MULTIPROC_DIR``
before it starts the workers, so ``prometheus_client`` keeps every value in a
file per worker there, and any worker's ``/metrics`` sums them all: a scrape
counts the whole server whichever worker answers, and counters never go back
when a worker is replaced (its files stay; the parent removes only its gauges).
"""

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from trioproxy.proxy.core.bounded import is_count
from trioproxy.proxy.core.record import Outcome, RequestRecord

__all__ = ["MULTIPROC_DIR", "Metrics"]

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

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
    """A bounded label: known routes by name, the rest of the API together, and
    every path outside it (a 404) as ``other``."""
    if path in _ROUTES:
        return path
    return "/v1/other" if path.startswith("/v1/") else "other"


_MAX_MODELS = 100
"""Distinct model labels beyond the configured names; later ones fold into "other"."""


class _ModelLabels:
    """A bounded set of model labels: a client's model name is no label of its own."""

    def __init__(self, configured: frozenset[str]) -> None:
        self._known = set(configured)
        self._seen = 0

    def configure(self, configured: frozenset[str]) -> None:
        """A reload's model names: labels of their own too, beside the bound."""
        self._known |= configured

    def __call__(self, model: str) -> str:
        if not model:
            return "-"
        if model in self._known:
            return model
        if self._seen < _MAX_MODELS:
            self._seen += 1
            self._known.add(model)
            return model
        return "other"


class Metrics:
    def __init__(self, models: frozenset[str] = frozenset()) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._shared_dir = os.environ.get(MULTIPROC_DIR)
        self._model = _ModelLabels(models)
        self.requests = Counter(
            "trioproxy_requests",
            "Requests by outcome, route, upstream and model",
            ["outcome", "route", "upstream", "model"],
            registry=r,
        )
        self._by_outcome: dict[tuple[object, str, str, str], Any] = {}
        self._tokens_by: dict[tuple[str, str, str], Any] = {}  # the same, for the token counts
        self.tokens = Counter(
            "trioproxy_tokens",
            "Tokens the upstreams' own usage objects reported, by upstream, model and kind",
            ["upstream", "model", "kind"],
            registry=r,
        )
        self.stops = Counter(
            "trioproxy_client_stops",
            "Client stops by the phase they came in",
            ["phase"],
            registry=r,
        )
        self.limited = Counter(
            "trioproxy_key_limited",
            "Requests refused (429) by a client key's limit, by the key's name",
            ["key"],
            registry=r,
        )
        self.open_streams = Gauge(
            "trioproxy_open_requests",
            "Requests in flight now",
            registry=r,
            # Several workers' gauges add up to the server's; a dead one's drop out.
            multiprocess_mode="livesum",
        )
        self.upstream_inflight = Gauge(
            "trioproxy_upstream_inflight_requests",
            "Requests in flight now, by the upstream serving them",
            ["upstream"],
            registry=r,
            multiprocess_mode="livesum",
        )
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

    def configure_models(self, models: frozenset[str]) -> None:
        """The model names a reload configures: each a label of its own."""
        self._model.configure(models)

    def started(self, rec: RequestRecord) -> None:
        """An observer of every record's start (``Requests.subscribe``)."""
        self.open_streams.inc()

    def finished(self, rec: RequestRecord) -> None:
        """An observer of every record's end: its one count, by its one outcome."""
        self.open_streams.dec()
        upstream = rec.upstream or "-"
        model = self._model(rec.model)
        # bounded: routes, outcomes, configured upstreams and model labels
        key = (rec.outcome, route_of(rec.path), upstream, model)
        counter = self._by_outcome.get(key)
        if counter is None:  # labels() parses its arguments every time: once per key
            counter = self._by_outcome[key] = self.requests.labels(str(key[0]), *key[1:])
        counter.inc()
        self.bytes.inc(rec.bytes_relayed)
        self.events.inc(rec.events_relayed)
        if rec.usage is not None:
            self._count_tokens(rec.usage, upstream, model)
        if rec.outcome is Outcome.CLIENT_CLOSED:
            self.stops.labels(str(rec.phase)).inc()
        elif rec.outcome is Outcome.LIMITED:
            self.limited.labels(rec.key_name).inc()
        if rec.upstream_headers_at is not None:
            self.upstream_headers.observe(rec.upstream_headers_at - rec.started_at)
        if rec.client_closed_at is not None and rec.upstream_closed_at is not None:
            self.stop_propagation.observe(rec.upstream_closed_at - rec.client_closed_at)

    def _count_tokens(self, usage: dict[str, Any], upstream: str, model: str) -> None:
        # OpenAI says prompt/completion; Anthropic says input/output. Only
        # counts (the tap keeps no other): a counter takes no negative, a
        # float or a bool, and a huge integer overflows it.
        for kind, names in (("prompt", _PROMPT), ("completion", _COMPLETION)):
            value = next((usage[n] for n in names if is_count(usage.get(n))), None)
            if value:
                key = (upstream, model, kind)
                counter = self._tokens_by.get(key)
                if counter is None:
                    counter = self._tokens_by[key] = self.tokens.labels(*key)
                counter.inc(value)

    def _server_registry(self) -> CollectorRegistry:
        """This process's registry, or with several workers one that reads them all."""
        if not self._shared_dir:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self._shared_dir)  # type: ignore[no-untyped-call]
        return registry

    def exposition(self) -> bytes:
        return generate_latest(self._server_registry())

    def stop_propagation_buckets(self) -> list[tuple[float, float]]:
        """The stop-propagation histogram, whole server: (upper bound, cumulative count)."""
        name = "trioproxy_stop_propagation_seconds_bucket"
        counts: dict[float, float] = {}
        for metric in self._server_registry().collect():
            for sample in metric.samples:
                if sample.name == name:
                    le = float(sample.labels["le"])
                    counts[le] = counts.get(le, 0.0) + sample.value
        return sorted(counts.items())


_PROMPT = ("prompt_tokens", "input_tokens")
_COMPLETION = ("completion_tokens", "output_tokens")
