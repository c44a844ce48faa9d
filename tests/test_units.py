"""Pure pieces: header filtering, SSE counting, URL mapping. No sockets."""

import json
import logging
import sys

import trio

from trioproxy.asgi import gone_already
from trioproxy.proxy.core.errors import error_body
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.relay.sse import EventCounter, error_event
from trioproxy.proxy.upstream.conventions import Conventions
from trioproxy.proxy.upstream.headers import request_headers, response_headers
from trioproxy.server.guards.connection import AcceptErrorFilter
from trioproxy.sim.render import Render


def test_hop_by_hop_and_named_connection_headers_are_dropped() -> None:
    headers = [
        (b"host", b"proxy"),
        (b"connection", b"keep-alive, x-private"),
        (b"x-private", b"1"),
        (b"te", b"trailers"),
        (b"content-length", b"5"),
        (b"x-keep", b"yes"),
        (b"authorization", b"Bearer client"),
    ]
    assert request_headers(headers) == [
        (b"x-keep", b"yes"),
        (b"authorization", b"Bearer client"),
    ]


def test_upstream_key_replaces_client_authorization() -> None:
    held = Conventions.of("sk-real")
    out = request_headers(
        [(b"authorization", b"Bearer client"), (b"x-a", b"1")], held.drop, held.added
    )
    assert out == [(b"x-a", b"1"), (b"authorization", b"Bearer sk-real")]


def test_response_headers_drop_framing_keep_the_rest() -> None:
    out = response_headers(
        [
            (b"Transfer-Encoding", b"chunked"),
            (b"Content-Type", b"text/event-stream"),
            (b"Keep-Alive", b"timeout=5"),
            (b"X-Request-Id", b"abc"),
        ]
    )
    assert out == [(b"content-type", b"text/event-stream"), (b"x-request-id", b"abc")]


def test_event_counter_sees_terminators_split_across_chunks() -> None:
    stream = Render("chat", "m", "id").stream(50).replace(b"\n\n", b"\r\n\r\n", 10)
    counter = EventCounter()
    for i in range(0, len(stream), 7):
        counter.feed(stream[i : i + 7])
    assert counter.events == 50 + 3  # head, 50 tokens, finish chunk, [DONE]


def test_error_event_is_one_sse_event_with_openai_error() -> None:
    event = error_event("boom", "upstream_error")
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    assert json.loads(event.split(b"data: ", 1)[1])["error"]["type"] == "upstream_error"
    assert json.loads(error_body("m", "t", "c")) == {
        "error": {"message": "m", "type": "t", "param": None, "code": "c"}
    }


def test_upstream_target_keeps_raw_path_and_query() -> None:
    upstream = ProxyConfig(upstream="http://up:8080/v1/").router().default
    assert upstream.origin == ("http", "up", 8080)
    assert upstream.target_for(b"/chat/completions", b"") == b"/v1/chat/completions"
    assert upstream.target_for(b"/files/a%2Fb", b"x=1") == b"/v1/files/a%2Fb?x=1"
    bare = ProxyConfig(upstream="https://api.example").router().default
    assert bare.origin == ("https", "api.example", 443)
    assert bare.target_for(b"/models", b"") == b"/models"


def test_accept_errors_log_once_in_a_while_without_traceback() -> None:
    log_filter = AcceptErrorFilter(every_s=3600)

    def record() -> logging.LogRecord:
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            info = sys.exc_info()
        return logging.LogRecord("trio.serve_listeners", logging.ERROR, "", 0, "accept", (), info)

    first, held = record(), [record() for _ in range(50)]
    assert log_filter.filter(first) and first.exc_info is None
    assert not any(log_filter.filter(r) for r in held)
    log_filter._last -= 3600
    later = record()
    assert log_filter.filter(later) and "50 more like it held back" in later.getMessage()


async def test_a_disconnect_already_queued_is_seen_without_blocking() -> None:
    with trio.fail_after(1):
        sender, receiver = trio.open_memory_channel[dict[str, object]](10)
        assert not gone_already(receiver.receive)
        await sender.send({"type": "http.disconnect"})
        assert gone_already(receiver.receive)
        assert not gone_already(receiver.receive)


def test_the_html_report_needs_no_network_and_escapes_names() -> None:
    from tests.helpers.samples import a_report
    from trioproxy.conformance import render_html

    page = render_html(a_report())
    assert "a proxy &lt;under test&gt;" in page and "<under test>" not in page
    for fetches in ("src=", "href=", "@import", "url(", "<script"):
        assert fetches not in page


def test_the_json_report_names_its_format_and_version() -> None:
    from tests.helpers.samples import a_report

    report = a_report().as_json()
    assert (report["format"], report["format_version"]) == ("trioproxy-conformance", 2)
    assert report["passed"] is False
    assert report["config"]["bound_ms"] == 5.0  # type: ignore[index]
