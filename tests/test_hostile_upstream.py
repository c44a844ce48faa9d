"""A hostile upstream is a bounded upstream: what it writes, byte for byte, from a raw
socket, and what the proxy makes of it on the client's side."""

import json
import logging
import time

import httpx
import pytest
import trio

from tests.helpers import (
    CHAT,
    AccessLog,
    Received,
    ScriptedUpstream,
    assert_no_tracebacks,
    start_proxy,
    start_sim,
)
from trioproxy.conformance import H2Client, RawClient, request_bytes
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.relay.usage import UsageTap
from trioproxy.proxy.upstream.http11 import MAX_HEADS
from trioproxy.proxy.upstream.routing import Upstream
from trioproxy.sim import SimUpstream

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_RUN = 16 * 1024 * 1024
"""The run of ``100 Continue`` heads an upstream writes, as fast as it can."""


def _split(origin: str) -> tuple[str, int]:
    host, port = origin.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def test_a_run_of_informational_heads_is_refused_past_the_budget(
    nursery: trio.Nursery, access_log: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    """16 MiB of ``100 Continue``: a 502 once the heads pass ``MAX_HEADS`` bytes, the
    upstream closed long before its run is out, and another client's ``/health``
    answers while the run goes on. Parsed from the start on every read, as it
    was, the run took minutes of CPU and the answer never came in time."""
    first_burst, health_done, closed = trio.Event(), trio.Event(), trio.Event()
    sent = 0

    async def play(stream: trio.SocketStream, _: Received) -> None:
        nonlocal sent
        burst = _CONTINUE * (MAX_HEADS // 2 // len(_CONTINUE))  # within the budget
        await stream.send_all(burst)
        sent = len(burst)
        first_burst.set()
        await health_done.wait()
        piece = _CONTINUE * (65536 // len(_CONTINUE))
        try:
            while sent < _RUN:
                await stream.send_all(piece)
                sent += len(piece)
        except trio.BrokenResourceError:
            closed.set()

    upstream = await ScriptedUpstream(play=play).start(nursery)
    proxy = await start_proxy(nursery, ProxyConfig(upstream=upstream))
    answer: list[httpx.Response] = []

    async def ask(client: httpx.AsyncClient) -> None:
        answer.append(await client.post("/v1/chat/completions", json=CHAT))

    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=proxy, timeout=20) as client:
            async with trio.open_nursery() as inner:
                inner.start_soon(ask, client)
                await first_burst.wait()
                async with httpx.AsyncClient(base_url=proxy) as other:
                    started = time.monotonic()
                    health = await other.get("/health")
                    health_s = time.monotonic() - started
                health_done.set()
            await closed.wait()
        line = await access_log.wait_for_line("outcome=")
    (response,) = answer
    assert health.status_code == 200 and health_s < 2  # a generous bound: it was answered
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    assert f"over {MAX_HEADS} bytes of response heads" in response.json()["error"]["message"]
    assert sent < _RUN  # the proxy closed the upstream: its run was cut short
    assert " 502 outcome=upstream_error phase=waiting_headers " in line
    assert len(access_log.lines) == 1
    assert_no_tracebacks(caplog)


async def _answer_of(
    nursery: trio.Nursery, answer: bytes, closed: trio.Event | None = None
) -> tuple[RawClient, str]:
    """What the client reads when the upstream writes ``answer``, and the proxy's
    ``/metrics`` then; ``closed`` is set once the proxy closes the upstream."""
    upstream = ScriptedUpstream([answer], then="drain")
    if closed is not None:
        upstream.closed = closed
    proxy = await start_proxy(nursery, ProxyConfig(upstream=await upstream.start(nursery)))
    host, port = _split(proxy)
    client = await RawClient.connect(host, port)
    body = json.dumps(CHAT).encode()
    await client.send(request_bytes("POST", "/v1/chat/completions", body, {"connection": "close"}))
    await client.read_all()
    client.close()
    async with httpx.AsyncClient(base_url=proxy) as other:
        metrics = (await other.get("/metrics")).text
    return client, metrics


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 999 Odd\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 600 Odd\r\ncontent-length: 2\r\n\r\n{}",
    ],
    ids=["te-then-cl", "cl-then-te", "status-999", "status-600"],
)
async def test_framing_or_status_that_can_be_read_two_ways_is_502(
    nursery: trio.Nursery, answer: bytes, access_log: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    """As nginx answers: 502 JSON, one access line with one outcome, the metrics
    labelled by it, and no traceback (the h11 traceback and ``outcome=None`` of old)."""
    closed = trio.Event()
    with trio.fail_after(10):
        client, metrics = await _answer_of(nursery, answer, closed)
        await access_log.wait_for(1)
        await closed.wait()  # the upstream's connection is never reused
    assert client.status == 502
    assert json.loads(client.body)["error"]["type"] == "upstream_error"
    (line,) = access_log.lines
    assert " 502 outcome=upstream_error phase=waiting_headers " in line
    assert 'outcome="upstream_error"' in metrics and 'outcome="None"' not in metrics
    assert_no_tracebacks(caplog)


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_headers_on_204_and_304(
    nursery: trio.Nursery, status: int, access_log: AccessLog
) -> None:
    answer = b"HTTP/1.1 %d Nothing\r\ncontent-length: 5\r\nx-kept: 1\r\n\r\n" % status
    with trio.fail_after(10):
        client, _ = await _answer_of(nursery, answer)
        await access_log.wait_for(1)
    head = client.received.partition(b"\r\n\r\n")[0].lower()
    assert client.status == status and b"x-kept: 1" in head
    assert b"content-length" not in head and b"transfer-encoding" not in head
    assert f" {status} outcome=completed " in access_log.lines[0]


_EVENTS = b"data: 1\n\ndata: 2\n\n"


@pytest.mark.parametrize("cut", [False, True], ids=["whole", "cut-short"])
async def test_an_event_stream_never_carries_the_upstreams_length(
    nursery: trio.Nursery, cut: bool, access_log: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy frames an event stream anew: it may add an error event (or
    heartbeats), which the upstream's ``Content-Length`` does not count, and
    an HTTP/2 client's stack refuses DATA past a declared length."""
    declared = len(_EVENTS) + (100 if cut else 0)
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n"

    upstream = ScriptedUpstream([answer % declared + _EVENTS], then="close" if cut else "next")
    proxy = await start_proxy(nursery, ProxyConfig(upstream=await upstream.start(nursery)))
    host, port = _split(proxy)
    body = json.dumps(CHAT | {"stream": True}).encode()
    with trio.fail_after(10):
        client = await RawClient.connect(host, port)
        await client.send(request_bytes("POST", "/v1/chat/completions", body, {}))
        await client.read_response()
        client.close()
        h2 = await H2Client.connect(host, port)
        stream_id = await h2.request("/v1/chat/completions", {}, body)
        await h2.pump_until(lambda: stream_id in h2.ended)  # h2 checks DATA against a length
        h2.close()
        await access_log.wait_for(2)
    head = client.received.partition(b"\r\n\r\n")[0].lower()
    assert b"content-length" not in head and b"transfer-encoding: chunked" in head
    assert b"content-length" not in h2.headers[stream_id]
    for got in (client.body, bytes(h2.data[stream_id])):
        assert got.startswith(_EVENTS)
        assert (b"event: error" in got) is cut
    outcome = "upstream_error" if cut else "completed"
    assert all(f" 200 outcome={outcome} " in line for line in access_log.lines)
    assert_no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("usage", "counted", "named"),
    [
        ({"prompt_tokens": -5, "completion_tokens": 3}, {"completion": 3}, "prompt_tokens=-5"),
        ({"prompt_tokens": 10**300, "completion_tokens": 2}, {"completion": 2}, "2**53"),
        ({"prompt_tokens": 4, "completion_tokens": 2**53 + 1}, {"prompt": 4}, "2**53"),
        ({"prompt_tokens": True, "completion_tokens": 1.5}, {}, "prompt_tokens=True"),
        ({"input_tokens": "12", "output_tokens": 1e300}, {}, "input_tokens='12'"),
    ],
)
async def test_usage_counts_that_are_no_counts_are_ignored_with_one_warning(
    nursery: trio.Nursery,
    usage: dict[str, object],
    counted: dict[str, int],
    named: str,
    access_log: AccessLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Negative, bool, float, too large or text: not counted, named in one bounded
    WARNING; the request still gets its access line, and the metrics their update."""
    body = json.dumps({"id": "x", "usage": usage}).encode()
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    with trio.fail_after(10):
        client, metrics = await _answer_of(nursery, answer % len(body) + body)
        (line,) = await access_log.wait_for(1)
    assert client.status == 200 and client.body == body
    assert " 200 outcome=completed " in line
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (warning,) = [w for w in warnings if "usage counts ignored" in w]
    assert named in warning and len(warning) < 400
    tokens = {
        kind: float(sample.rsplit(" ", 1)[1])
        for sample in metrics.splitlines()
        if sample.startswith("trioproxy_tokens_total{")
        for kind in ("prompt", "completion")
        if f'kind="{kind}"' in sample
    }
    assert tokens == counted
    assert_no_tracebacks(caplog)


async def start_listing(nursery: trio.Nursery, answer: bytes) -> str:
    """An upstream that answers every ``GET /v1/models`` with ``answer``'s body."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return await ScriptedUpstream([head % len(answer) + answer], then="next").start(nursery)


@pytest.mark.parametrize(
    "listing",
    [
        b'{"data": null}',
        b'{"data": "sim-odd"}',
        b'{"data": {"id": "sim-odd"}}',
        b'{"data": [{"id": "sim-odd"}, 1]}',
        b'{"data": [{"id": "sim-odd"}, {"id": 5}]}',
        b'{"data": [{"id": "sim-odd"}, {"id": {"a": 1}}]}',
        b'{"data": [{"id": "sim-odd"}, {"id": "' + b"m" * 1000 + b'"}]}',
        b'{"data": [{"id": "sim-odd", "x": NaN}]}',
        b'[{"id": "sim-odd"}]',
        b"not json",
    ],
)
async def test_an_odd_model_list_drops_only_that_upstream(
    nursery: trio.Nursery, listing: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    sim = SimUpstream()
    good = await start_sim(nursery, sim)
    upstreams = (
        Upstream("odd", await start_listing(nursery, listing), None, ("odd-*",)),
        Upstream("good", f"{good}/v1", None, ("sim-*",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            response = await client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["sim-small", "sim-large"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (warning,) = [w for w in warnings if "left out of the model list" in w]
    assert warning.startswith("upstream odd ") and len(warning) < 200
    assert_no_tracebacks(caplog)


async def test_model_lists_of_good_upstreams_merge_in_their_order(nursery: trio.Nursery) -> None:
    first = await start_listing(nursery, b'{"object": "list", "data": [{"id": "a", "n": 1}]}')
    second = await start_listing(nursery, b'{"data": [{"id": "b"}, {"id": "a", "n": 2}]}')
    # Both wildcards: each list is asked for; "a" is routed to one, so two's "a" is not listed.
    upstreams = (Upstream("one", first, None, ("a*",)), Upstream("two", second, None, ("*",)))
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            response = await client.get("/v1/models")
    assert response.json() == {"object": "list", "data": [{"id": "a", "n": 1}, {"id": "b"}]}


async def test_an_endless_error_body_in_early_headers_mode_is_not_kept(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    """An upstream's refusal is shown in part (2000 bytes); the rest is never read."""
    answer = b"HTTP/1.1 500 Oops\r\n\r\n" + b"x" * 100_000  # close-delimited, never closed
    upstream = ScriptedUpstream([answer], then="drain")
    config = ProxyConfig(upstream=await upstream.start(nursery), early_headers=True)
    proxy = await start_proxy(nursery, config)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            response = await client.post("/v1/chat/completions", json=CHAT | {"stream": True})
        await upstream.closed.wait()
    assert response.status_code == 200 and b"event: error" in response.content
    assert len(response.content) < 3000


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_usage_is_found_in_a_stream_cut_anywhere_whatever_its_line_ends(newline: bytes) -> None:
    """SSE lines may end in CRLF (an event then ends in CRLF CRLF), and a cut
    may fall between a CR and its LF."""
    events = [
        b'data: {"choices": [{"delta": {"content": "hi"}}]}',
        b'data: {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 2}}',
        b"data: [DONE]",
    ]
    stream = b"".join(event + newline * 2 for event in events)
    for cut in range(1, len(stream)):
        tap = UsageTap(event_stream=True)
        tap.feed(stream[:cut])
        tap.feed(stream[cut:])
        tap.close()
        assert tap.usage == {"prompt_tokens": 8, "completion_tokens": 2}, cut


_ANTHROPIC = [
    b"event: message_start",
    b'data: {"type": "message_start", "message": {"usage": {"input_tokens": 12}}}',
    b"",
    b"event: content_block_delta",
    b'data: {"type": "content_block_delta", "delta": {"text": "usage"}}',
    b"",
    b"event: message_delta",
    b'data: {"type": "message_delta", "usage": {"output_tokens": 7}}',
    b"",
]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_usage_split_over_two_events_is_merged_fed_a_byte_at_a_time(newline: bytes) -> None:
    """Anthropic's shape: usage in ``message_start`` and ``message_delta``, events
    of two lines each, and a chunk that mentions "usage" in its text only."""
    stream = b"".join(line + newline for line in _ANTHROPIC)
    tap = UsageTap(event_stream=True)
    for i in range(len(stream)):
        tap.feed(stream[i : i + 1])
    tap.close()
    assert tap.usage == {"input_tokens": 12, "output_tokens": 7}


async def test_usage_in_a_crlf_event_stream_reaches_the_access_line_and_metrics(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    """Before: events were split on LF LF only, so a CRLF stream's usage was never found."""
    events = b"".join(
        event + b"\r\n\r\n"
        for event in [
            b'data: {"choices": [{"delta": {"content": "hi"}}]}',
            b'data: {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 2}}',
            b"data: [DONE]",
        ]
    )
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n"
    with trio.fail_after(10):
        client, metrics = await _answer_of(nursery, head % len(events) + events)
        (line,) = await access_log.wait_for(1)
    assert client.status == 200 and client.body == events
    assert 'usage={"prompt_tokens":8,"completion_tokens":2}' in line
    counted = {
        kind: float(sample.rsplit(" ", 1)[1])
        for sample in metrics.splitlines()
        for kind in ("prompt", "completion")
        if sample.startswith(f'trioproxy_tokens_total{{kind="{kind}"')
    }
    assert counted == {"prompt": 8, "completion": 2}


def test_what_the_usage_tap_keeps_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """At most 24 fields are looked at, 8 a level down; the WARNING names four."""
    usage: dict[str, object] = {"\x1b[31mforged\n_tokens": "\n" * 10_000}
    usage |= {f"x{i}_tokens": -i for i in range(1, 5000)}
    tap = UsageTap(event_stream=False)
    tap.feed(json.dumps({"usage": usage}).encode())
    tap.close()
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(
        "upstream usage counts ignored (not integers from 0 to 2**53): "
        "\\x1b[31mforged\\n_tokens='\\n\\n"
    )
    assert "and 20 more" in warning and len(warning) < 400 and "\n" not in warning
    kept = {f"detail{i}": {f"n{j}": j for j in range(50)} for i in range(50)} | {"n": 1}
    tap = UsageTap(event_stream=False)
    tap.feed(json.dumps({"usage": kept | {"k" * 100: 1}}).encode())
    tap.close()
    assert tap.usage is not None and len(tap.usage) == 24 and "n" not in tap.usage
    assert all(len(details) == 8 for details in tap.usage.values())
    assert len(json.dumps(tap.usage)) < 4000
