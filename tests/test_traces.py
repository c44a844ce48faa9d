"""OpenTelemetry traces (the ``otel`` extra): one span per API request with the
GenAI attributes, a stop as a span event with its phase; read from the SDK's
in-memory exporter, on real sockets."""

import sys
from functools import partial

import httpx
import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from tests.helpers import BODY, CHAT, AccessLog, start_sim
from trioproxy.conformance import RawClient, StopKind, request_bytes
from trioproxy.proxy.admin.otel import OtelTracing
from trioproxy.proxy.admin.traces import open_tracing, wanted
from trioproxy.proxy.app import serve_proxy
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.server import hypercorn_config
from trioproxy.sim import SimUpstream


async def _traced(nursery: trio.Nursery) -> tuple[str, SimUpstream, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sim = SimUpstream()
    config = ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1", admin_key="adm")
    serve = partial(
        serve_proxy, config, hypercorn_config("127.0.0.1", 0), tracing=OtelTracing(provider)
    )
    (bound,) = await nursery.start(serve)
    return str(bound), sim, exporter


def _spans(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    return exporter.get_finished_spans()


async def test_a_completed_stream_is_one_span_with_the_genai_attributes(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    origin, _, exporter = await _traced(nursery)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=origin) as client:
            answer = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"stream": True, "stream_options": {"include_usage": True}},
                headers={"x-request-id": "trace-1", "x-sim-tokens": "5"},
            )
        await access_log.wait_for(1)  # the observers are told before the line
        (span,) = _spans(exporter)
    assert answer.status_code == 200
    attributes = dict(span.attributes or {})
    assert span.name == "chat sim-small" and span.kind is SpanKind.SERVER
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "sim-small"
    assert attributes["gen_ai.usage.input_tokens"] == 8
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["http.response.status_code"] == 200
    assert attributes["trioproxy.outcome"] == "completed"
    assert attributes["trioproxy.request_id"] == "trace-1"
    assert span.status.status_code is StatusCode.UNSET and not span.events
    assert span.start_time is not None and span.end_time is not None
    assert span.start_time < span.end_time


async def test_a_client_stop_mid_stream_is_a_span_event_with_its_phase(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    origin, sim, exporter = await _traced(nursery)
    host, port = origin.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        client = await RawClient.connect(host, int(port))
        head = {"x-sim-id": "stop", "x-sim-tokens": "100000"}
        await client.send(request_bytes("POST", "/v1/chat/completions", BODY, head))
        await client.read_until(b"data: ", count=3)
        client.stop(StopKind.RST)
        await access_log.wait_for(1)  # the observers are told before the line
        (span,) = _spans(exporter)
        await sim.wait_ended("stop")
    attributes = dict(span.attributes or {})
    assert attributes["http.response.status_code"] == 499
    assert attributes["trioproxy.outcome"] == "client_closed"
    (event,) = span.events
    assert event.name == "stop"
    assert dict(event.attributes or {}) == {
        "trioproxy.phase": "streaming",
        "trioproxy.reason": "client_closed",
    }
    assert span.start_time is not None and span.end_time is not None
    assert span.start_time < event.timestamp <= span.end_time
    assert span.status.status_code is StatusCode.UNSET  # a stop is no error


async def test_an_upstream_failure_is_a_span_in_error(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    origin, _, exporter = await _traced(nursery)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=origin) as client:
            answer = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"x-sim-fail": "500"}
            )
        await access_log.wait_for(1)  # the observers are told before the line
        (span,) = _spans(exporter)
    assert answer.status_code == 500
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "500"  # relayed as it came


def test_tracing_is_asked_for_by_the_standard_variables() -> None:
    assert not wanted({})
    assert not wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not wanted({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})
    assert open_tracing({}) is None
    assert isinstance(open_tracing({"OTEL_TRACES_EXPORTER": "console"}), OtelTracing)


async def test_the_proxy_imports_no_opentelemetry_unless_asked() -> None:
    check = (
        "import sys, trioproxy.cli, trioproxy.proxy.app as app, trioproxy.proxy.admin.traces as t\n"
        "assert t.open_tracing({}) is None\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    with trio.fail_after(30):
        await trio.run_process([sys.executable, "-c", check])
