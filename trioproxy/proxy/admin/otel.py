"""OpenTelemetry traces: one span per API request, made when its record ends.

Imported only when tracing is on (:mod:`.traces`). The span is made whole at
the end, from the record, with the request's own start time: the relay's
path carries no tracing code at all, and a request costs nothing more until
it is over. Attributes follow the GenAI semantic conventions
(``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.usage.input_tokens`` and ``output_tokens``, from the upstream's own
usage object) and the HTTP ones; a stop (the client's, or the admin's
cancel) is a span event ``stop`` with the phase it came in. A status of 500
or more is a span in error, named by its outcome. Every value is the
record's, bounded where it entered.

Export is the SDK's, configured by the standard ``OTEL_*`` variables
(``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_ENDPOINT``, ...): OTLP over
HTTP/protobuf, in batches from the SDK's own thread; ``OTEL_TRACES_EXPORTER=console``
writes spans to stdout.
"""

import os
import time
from typing import Any

import trio
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from trioproxy import __version__
from trioproxy.proxy.admin.metrics import route_of
from trioproxy.proxy.core.bounded import is_count
from trioproxy.proxy.core.record import Outcome, RequestRecord

__all__ = ["OPERATIONS", "OtelTracing", "provider_from_environment"]

OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "chat",
    "/v1/messages": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
}
"""``gen_ai.operation.name`` by route; other routes are plain HTTP spans."""

_STOPS = frozenset({Outcome.CLIENT_CLOSED, Outcome.CANCELLED_BY_ADMIN})
_FLUSH_S = 5.0
"""At shutdown, how long the spans left may take to leave."""


def provider_from_environment() -> TracerProvider:
    """A provider whose resource and exporter the ``OTEL_*`` variables set."""
    provider = TracerProvider(resource=Resource.create({"service.name": "trioproxy"}))
    provider.add_span_processor(_processor(os.environ.get("OTEL_TRACES_EXPORTER", "otlp")))
    return provider


def _processor(exporter: str) -> SpanProcessor:
    if exporter.strip().lower() == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


class OtelTracing:
    """Spans from records; ``owned``: the provider is this one's to shut down."""

    def __init__(self, provider: TracerProvider, owned: bool = False) -> None:
        self._provider = provider
        self._owned = owned
        self._tracer = provider.get_tracer("trioproxy", __version__)

    def ended(self, rec: RequestRecord) -> None:
        ago_ns = int((time.monotonic() - rec.started_at) * 1e9)
        now_ns = time.time_ns()
        operation = OPERATIONS.get(rec.path)
        span = self._tracer.start_span(
            _name(rec, operation), kind=SpanKind.SERVER, start_time=now_ns - ago_ns
        )
        span.set_attributes(_attributes(rec, operation))
        if rec.outcome in _STOPS and rec.client_closed_at is not None:
            stopped_ns = now_ns - int((time.monotonic() - rec.client_closed_at) * 1e9)
            stop = {"trioproxy.phase": str(rec.phase), "trioproxy.reason": str(rec.outcome)}
            span.add_event("stop", stop, timestamp=stopped_ns)
        if rec.status_logged >= 500:
            span.set_status(Status(StatusCode.ERROR, str(rec.outcome)))
        span.end(end_time=now_ns)

    async def aclose(self) -> None:
        if not self._owned:
            return
        with trio.move_on_after(_FLUSH_S, shield=True):
            await trio.to_thread.run_sync(self._provider.shutdown, abandon_on_cancel=True)


def _name(rec: RequestRecord, operation: str | None) -> str:
    if operation is None:
        return f"{rec.method} {route_of(rec.path)}"  # a bounded name: the route, not the path
    return f"{operation} {rec.model}" if rec.model else operation


def _attributes(rec: RequestRecord, operation: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "http.request.method": rec.method,
        "url.path": rec.path,
        "http.response.status_code": rec.status_logged,
        "trioproxy.outcome": str(rec.outcome),
        "trioproxy.phase": str(rec.phase),
        "trioproxy.id": rec.request_id,
        "trioproxy.request_id": rec.x_request_id,
        "trioproxy.bytes": rec.bytes_relayed,
    }
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
    if rec.model:
        attributes["gen_ai.request.model"] = rec.model
    if rec.upstream:
        attributes["trioproxy.upstream"] = rec.upstream
    if rec.key_name:
        attributes["trioproxy.key"] = rec.key_name
    if rec.status_logged >= 500:  # the outcome, or the status of an answer relayed as it came
        completed = rec.outcome is Outcome.COMPLETED
        attributes["error.type"] = str(rec.status_logged) if completed else str(rec.outcome)
    usage = rec.usage or {}
    for name, keys in _USAGE.items():
        count = next((usage[k] for k in keys if is_count(usage.get(k))), None)
        if count is not None:
            attributes[name] = count
    return attributes


_USAGE = {
    "gen_ai.usage.input_tokens": ("input_tokens", "prompt_tokens"),
    "gen_ai.usage.output_tokens": ("output_tokens", "completion_tokens"),
}
"""Each count, by the names OpenAI's and Anthropic's usage objects give it."""
