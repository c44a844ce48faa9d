"""Bad input, from either side, gets a clear error and leaks nothing."""

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from trio.testing import MockClock

from tests.helpers import (
    CHAT,
    AccessLog,
    ScriptedUpstream,
    Stack,
    Then,
    assert_no_tracebacks,
    start_proxy,
    start_sim,
)
from trioproxy.conformance import RawClient
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.sim import SimUpstream

DEFAULTS = ProxyConfig(upstream="")


async def proxy_to(
    nursery: trio.Nursery, upstream: str, client_timeout_s: float | None = 10, **config: float
) -> httpx.AsyncClient:
    """A client of a proxy in front of ``upstream``; ``client_timeout_s`` is the client's
    (None on virtual time, where the test's ``fail_after`` bounds it)."""
    proxy = await start_proxy(nursery, ProxyConfig(upstream=upstream, **config))  # type: ignore[arg-type]
    return httpx.AsyncClient(base_url=proxy, timeout=client_timeout_s)


async def test_malformed_http_gets_400_and_server_keeps_serving(stack: Stack) -> None:
    with trio.fail_after(10):
        client = await RawClient.connect(stack.host, stack.port)
        await client.send(b"NOT AN HTTP REQUEST\r\n\r\n")
        await client.read_all()
        client.close()
        async with httpx.AsyncClient(base_url=stack.proxy) as http:
            health = await http.get("/health")
    assert client.status == 400 and client.eof
    assert health.status_code == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_limit_is_413_json(
    nursery: trio.Nursery, chunked: bool, access_log: AccessLog
) -> None:
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    async with await proxy_to(nursery, f"{upstream}/v1", max_body_bytes=1000) as client:
        with trio.fail_after(10):
            body = json.dumps(CHAT | {"pad": "x" * 2000}).encode()

            async def pieces() -> AsyncIterator[bytes]:
                yield body

            response = await client.post(
                "/v1/chat/completions", content=pieces() if chunked else body
            )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert sim.fates == []


async def test_paths_outside_v1_get_404_json(stack: Stack) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            response = await client.post("/chat/completions", json=CHAT)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_upstream_garbage_is_502_json_and_connection_closed(
    nursery: trio.Nursery, access_log: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = ScriptedUpstream([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"], then="drain")
    async with await proxy_to(nursery, await upstream.start(nursery)) as client:
        with trio.fail_after(10):
            response = await client.post("/v1/chat/completions", json=CHAT)
            await upstream.closed.wait()
            line = await access_log.wait_for_line("outcome=")
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    assert " 502 outcome=upstream_error phase=waiting_headers " in line
    assert_no_tracebacks(caplog)


async def test_upstream_unreachable_is_502_json(nursery: trio.Nursery) -> None:
    with trio.socket.socket() as sock:  # a port that was free a moment ago
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with await proxy_to(nursery, f"http://127.0.0.1:{port}/v1") as client:
        with trio.fail_after(10):
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert "unreachable" in response.json()["error"]["message"]


async def test_upstream_cut_mid_stream_ends_with_error_event_not_done(
    stack: Stack, access_log: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            response = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"stream": True},
                headers={"x-sim-id": "cut", "x-sim-tokens": "5", "x-sim-fail": "drop"},
            )
        line = await access_log.wait_for_line("outcome=")
    assert response.status_code == 200
    events = response.content.split(b"\n\n")
    assert b"[DONE]" not in response.content
    assert events[-2].startswith(b"event: error\ndata: ")
    assert json.loads(events[-2].split(b"data: ")[1])["error"]["type"] == "upstream_error"
    assert "outcome=upstream_error phase=streaming" in line and "events=6 " in line
    assert_no_tracebacks(caplog)


async def test_upstream_cut_mid_json_is_not_passed_off_as_whole(nursery: trio.Nursery) -> None:
    answer = (
        b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"id":'
    )
    cut = ScriptedUpstream([answer], then="close")  # closes right after the partial body
    async with await proxy_to(nursery, await cut.start(nursery)) as client:
        with trio.fail_after(10), pytest.raises(httpx.RemoteProtocolError):
            await client.post("/v1/chat/completions", json=CHAT)


async def test_upstream_error_status_is_relayed(stack: Stack) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            response = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"x-sim-fail": "500"}
            )
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "simulated failure"


async def test_headers_timeout_is_504_and_closes_upstream(
    nursery: trio.Nursery, idle_clock: MockClock
) -> None:
    """At the default headers timeout (600 s), on virtual time."""
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    async with await proxy_to(nursery, f"{upstream}/v1", client_timeout_s=None) as client:
        with trio.fail_after(DEFAULTS.headers_timeout_s * 2):
            started = trio.current_time()
            response = await client.post(
                "/v1/chat/completions",
                json=CHAT,
                headers={"x-sim-id": "slow", "x-sim-headers-delay": "3600"},
            )
            fate = await sim.wait_ended("slow")
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"
    assert fate.outcome == "disconnected"
    elapsed = trio.current_time() - started
    assert DEFAULTS.headers_timeout_s <= elapsed < DEFAULTS.headers_timeout_s + 1


async def test_idle_timeout_mid_stream_ends_with_error_event(
    nursery: trio.Nursery, idle_clock: MockClock
) -> None:
    """At the default idle timeout (300 s), on virtual time; the headers timeout
    (600 s) is longer: it must no longer apply once the head came."""
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    assert DEFAULTS.headers_timeout_s > DEFAULTS.idle_timeout_s
    async with await proxy_to(nursery, f"{upstream}/v1", client_timeout_s=None) as client:
        with trio.fail_after(DEFAULTS.idle_timeout_s * 2):
            started = trio.current_time()
            response = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"stream": True},
                headers={"x-sim-id": "idle", "x-sim-tokens": "3", "x-sim-interval": "3600"},
            )
            fate = await sim.wait_ended("idle")
            silent_for = trio.current_time() - started  # the first token came at once
    last = response.content.split(b"\n\n")[-2]
    assert json.loads(last.split(b"data: ")[1])["error"]["type"] == "upstream_timeout"
    assert fate.outcome == "disconnected" and fate.tokens_sent == 1
    # The idle deadline moves at most once a second (relay/pool.py), so it may come 1 s early.
    assert DEFAULTS.idle_timeout_s - 1 <= silent_for <= DEFAULTS.idle_timeout_s + 1


async def test_connect_timeout_is_504(nursery: trio.Nursery, idle_clock: MockClock) -> None:
    """An upstream whose accept queue is full never completes the handshake: at
    the default connect timeout (10 s), on virtual time."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):  # fill the never-accepted queue; later SYNs are dropped
        filler = trio.socket.socket()
        with trio.move_on_after(0.2):
            await filler.connect(address)
        fillers.append(filler)
    try:
        upstream = f"http://127.0.0.1:{address[1]}/v1"
        async with await proxy_to(nursery, upstream, client_timeout_s=None) as client:
            with trio.fail_after(DEFAULTS.connect_timeout_s * 2):
                started = trio.current_time()
                response = await client.post("/v1/chat/completions", json=CHAT)
    finally:
        for sock in [*fillers, listener]:
            sock.close()
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"
    elapsed = trio.current_time() - started
    assert DEFAULTS.connect_timeout_s <= elapsed < DEFAULTS.connect_timeout_s + 1


@pytest.mark.parametrize("then", ["reset", "close"])
async def test_an_upstream_reset_or_close_mid_stream_ends_with_an_error_event(
    nursery: trio.Nursery, access_log: AccessLog, caplog: pytest.LogCaptureFixture, then: Then
) -> None:
    """A raw upstream that sends a head and one event, then resets (RST) or closes
    (FIN) its connection: the client's stream ends in an error event, never [DONE]."""
    event = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked"
    chunk = b"%x\r\n%s\r\n" % (len(event), event)
    upstream = ScriptedUpstream([head + b"\r\n\r\n" + chunk], then=then)
    async with await proxy_to(nursery, await upstream.start(nursery)) as client:
        with trio.fail_after(10):
            response = await client.post("/v1/chat/completions", json=CHAT | {"stream": True})
            line = await access_log.wait_for_line("outcome=")
    assert response.status_code == 200 and response.content.startswith(event)
    assert b"[DONE]" not in response.content
    (last,) = [e for e in response.content.split(b"\n\n") if e.startswith(b"event: error")]
    error = json.loads(last.split(b"data: ")[1])["error"]
    assert error["type"] == "upstream_error"
    said = "reset by peer" if then == "reset" else "upstream closed mid-answer"
    assert said in error["message"]
    assert "outcome=upstream_error phase=streaming" in line
    assert_no_tracebacks(caplog)
