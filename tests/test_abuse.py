"""Hostile and odd clients, over HTTP/1.1, h2c and HTTP/2 over TLS.

Each test sends what an attacker or a broken client would, asserts that the
fault is contained (the worst a client gets is its own stream reset or its
own connection closed, with no traceback) and that the proxy keeps serving.
"""

import json
import logging
from typing import Any

import h2.errors
import httpx
import pytest
import trio
from hypercorn.protocol.h11 import H11Protocol
from trio.testing import MockClock

from tests.helpers import (
    BODY,
    TRANSPORTS,
    AccessLog,
    Proxied,
    Stack,
    TLSFiles,
    assert_no_tracebacks,
    h2_target,
    proxied,
)
from trioproxy.conformance import RawClient, chat_body, request_bytes
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.server import hypercorn_config
from trioproxy.server.guards import ServerLimits

ENDLESS = {"x-sim-tokens": "100000000", "x-sim-interval": "0"}
KEEP_ALIVE_S = hypercorn_config("127.0.0.1", 0).keep_alive_timeout
BODY_TIMEOUT_S = ProxyConfig(upstream="").body_timeout_s
SEND_STALL_S = ServerLimits().send_stall_s


@TRANSPORTS
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", b"/v1/\xc3\xa9"),
        ("GET", b"/health\xff"),
        (b"P\xc3ST", "/v1/chat/completions"),
        ("POST", b"/v1/chat\x01completions"),
        ("CONNECT", b"/ws\xff"),
    ],
    ids=["utf8-path", "ff-path", "utf8-method", "control-byte-path", "extended-connect"],
)
async def test_h2_bad_request_line_resets_only_its_stream(
    nursery: trio.Nursery,
    tls: TLSFiles,
    caplog: pytest.LogCaptureFixture,
    transport: str,
    method: str | bytes,
    path: str | bytes,
) -> None:
    target = await h2_target(nursery, transport, tls)
    with trio.fail_after(15):
        client = await target.connect()
        protocol = "websocket" if method == "CONNECT" else None  # extended CONNECT
        bad = await client.request(path, {}, b"{}", method=method, protocol=protocol)
        good = await client.request("/v1/chat/completions", {"x-sim-id": "after"}, BODY)
        await client.pump_until(lambda: good in client.ended and bad in client.reset_by_server)
        client.close()
        again = await target.connect()
        third = await again.request("/v1/chat/completions", {"x-sim-id": "new-conn"}, BODY)
        await again.pump_until(lambda: third in again.ended)
        again.close()
    assert client.reset_by_server[bad] == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert target.sim.fate("after").outcome == "completed"
    assert target.sim.fate("new-conn").outcome == "completed"
    assert len(target.sim.fates) == 2
    assert_no_tracebacks(caplog)


@TRANSPORTS
async def test_h2_client_that_never_reads_stalls_its_upstream(
    nursery: trio.Nursery, tls: TLSFiles, transport: str
) -> None:
    """SETTINGS_INITIAL_WINDOW_SIZE = 0: the proxy must stop reading the upstream."""
    target = await h2_target(nursery, transport, tls)
    names = [f"z{i}" for i in range(4)]
    with trio.fail_after(30):
        client = await target.connect(window=0)
        ids = [
            await client.request("/v1/chat/completions", ENDLESS | {"x-sim-id": n}, BODY)
            for n in names
        ]
        async with trio.open_nursery() as reader:
            reader.start_soon(client.pump_until, lambda: False)
            for name in names:
                await target.sim.wait_started(name)
            sent = [-1]
            while True:  # until the upstream has been still for half a second
                await trio.sleep(0.5)
                now = [target.sim.fate(n).bytes_sent for n in names]
                if now == sent:
                    break
                sent = now
            await client.reset(ids[0])
            fate = await target.sim.wait_ended(names[0])
            reader.cancel_scope.cancel()
        client.close()
    # Stalled: the upstream sent what the socket buffers between the two hold,
    # and not a byte more (without backpressure it was tens of MB a second).
    print("upstream bytes sent per stream when stalled:", sent)
    assert max(sent) < 16 * 1024 * 1024, sent
    assert sum(len(client.data[i]) for i in ids) == 0
    assert fate.outcome == "disconnected"


@TRANSPORTS
async def test_h2_rapid_reset_opens_nothing_upstream_and_ends_in_goaway(
    nursery: trio.Nursery, tls: TLSFiles, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    limits = ServerLimits(h2_max_resets_per_s=50)
    target = await h2_target(nursery, transport, tls, limits=limits)
    with trio.fail_after(20):
        client = await target.connect()
        for _ in range(40):  # under the limit: reset in the same read, never started
            stream_id = await client.request("/v1/chat/completions", ENDLESS, BODY, flush=False)
            await client.reset(stream_id, flush=False)
        await client.flush()
        good = await client.request("/v1/chat/completions", {"x-sim-id": "good"}, BODY)
        await client.pump_until(lambda: good in client.ended)
        for _ in range(100):  # over it
            stream_id = await client.request("/v1/chat/completions", ENDLESS, BODY, flush=False)
            await client.reset(stream_id, flush=False)
        await client.flush()
        with pytest.raises(ConnectionError):
            await client.pump_until(lambda: False)
        client.close()
        again = await target.connect()
        after = await again.request("/v1/chat/completions", {"x-sim-id": "after"}, BODY)
        await again.pump_until(lambda: after in again.ended)
        again.close()
    assert client.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert [f.sim_id for f in target.sim.fates] == ["good", "after"]
    assert_no_tracebacks(caplog)


async def test_a_fault_inside_a_connection_ends_only_that_connection(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the next hypercorn bug is, it ends one connection, not the server."""
    check = H11Protocol._check_protocol

    async def faulty(self: H11Protocol, event: Any) -> None:
        if getattr(event, "target", b"") == b"/boom":
            raise RuntimeError("a bug in the server")
        await check(self, event)

    monkeypatch.setattr(H11Protocol, "_check_protocol", faulty)
    with trio.fail_after(10):
        client = await RawClient.connect(stack.host, stack.port)
        await client.send(b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n")
        await client.read_all()
        async with httpx.AsyncClient(base_url=stack.proxy) as http:
            health = await http.get("/health")
    assert client.eof and client.received == b""
    assert health.status_code == 200
    faults = [r for r in caplog.records if "connection ended by a fault" in r.getMessage()]
    assert len(faults) == 1 and faults[0].levelno == logging.WARNING
    assert "RuntimeError: a bug in the server" in faults[0].getMessage()
    assert_no_tracebacks(caplog)


SMUGGLING = {
    "cl-and-te": b"content-length: 5\r\ntransfer-encoding: chunked\r\n",
    "te-and-cl": b"transfer-encoding: chunked\r\ncontent-length: 5\r\n",
    "two-equal-cl": b"content-length: 5\r\ncontent-length: 5\r\n",
    "cl-list": b"content-length: 5, 5\r\n",
    "conflicting-cl": b"content-length: 5\r\ncontent-length: 6\r\n",
    "folded-te-and-cl": b"content-length: 5\r\ntransfer-encoding:\r\n chunked\r\n",
    "folded-header": b"content-length: 5\r\nx-note: a\r\n b\r\n",
}


@pytest.mark.parametrize("framing", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_ambiguous_framing_is_400_and_closes(stack: Stack, framing: bytes) -> None:
    smuggled = request_bytes(
        "POST", "/v1/chat/completions", chat_body(False), {"x-sim-id": "smuggled"}
    )
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + framing + b"\r\n"
    with trio.fail_after(10):
        client = await RawClient.connect(stack.host, stack.port)
        await client.send(head + b"0\r\n\r\n" + smuggled)
        await client.read_all()
        client.close()
    assert client.status == 400 and client.eof
    assert client.received.count(b"HTTP/1.1 ") == 1
    assert stack.sim.fates == []


async def test_unknown_http_version_is_505(stack: Stack) -> None:
    with trio.fail_after(10):
        client = await RawClient.connect(stack.host, stack.port)
        await client.send(b"GET /health HTTP/9.9\r\nhost: x\r\n\r\n")
        await client.read_all()
        client.close()
    assert client.status == 505 and client.eof


ROUTES = [
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/nowhere"),
    ("GET", "/admin/requests"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/../escape"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("how", ["connection-close", "http-1.0"])
async def test_every_route_closes_when_asked(
    nursery: trio.Nursery, method: str, path: str, how: str
) -> None:
    proxy = await proxied(nursery, admin_key="adm")
    body = chat_body(False) if method == "POST" else b""
    request = request_bytes(method, path, body, {"authorization": "Bearer adm"})
    if how == "http-1.0":
        request = request.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    else:
        request = request.replace(b"\r\n", b"\r\nconnection: close\r\n", 1)
    with trio.fail_after(5):  # hypercorn's keep-alive timeout would close it at 5 s
        client = await RawClient.connect(proxy.host, proxy.port)
        await client.send(request)
        await client.read_all()
        client.close()
    assert client.status in (200, 400, 404) and client.eof


async def test_idle_keep_alive_connection_is_closed(
    nursery: trio.Nursery, idle_clock: MockClock
) -> None:
    """At the default keep-alive timeout, on virtual time."""
    proxy = await proxied(nursery)
    with trio.fail_after(KEEP_ALIVE_S * 4):
        client = await RawClient.connect(proxy.host, proxy.port)
        await client.send(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        started = trio.current_time()
        await client.read_all()
        client.close()
    assert client.status == 200 and client.eof
    assert KEEP_ALIVE_S <= trio.current_time() - started < KEEP_ALIVE_S + 1


async def test_slow_request_head_is_cut(nursery: trio.Nursery, idle_clock: MockClock) -> None:
    proxy = await proxied(nursery)
    with trio.fail_after(KEEP_ALIVE_S * 4):
        client = await RawClient.connect(proxy.host, proxy.port)
        await client.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        started = trio.current_time()
        await client.read_all()
        client.close()
    assert client.eof and proxy.sim.fates == []
    assert KEEP_ALIVE_S <= trio.current_time() - started < KEEP_ALIVE_S + 1


async def test_slow_body_gets_408_and_the_connection_closed(
    nursery: trio.Nursery, access_log: AccessLog, idle_clock: MockClock
) -> None:
    """At the default body timeout (60 s), on virtual time."""
    proxy = await proxied(nursery)
    body = chat_body(False)
    with trio.fail_after(BODY_TIMEOUT_S * 2):
        started = trio.current_time()
        clients = []
        for _ in range(20):  # a slow-loris crowd: a byte each, then nothing
            client = await RawClient.connect(proxy.host, proxy.port)
            await client.send(request_bytes("POST", "/v1/chat/completions", body, {})[:-10])
            clients.append(client)
        for client in clients:
            await client.read_all()
            client.close()
        await access_log.wait_for(20)
    assert BODY_TIMEOUT_S <= trio.current_time() - started < BODY_TIMEOUT_S + 1
    assert all(c.status == 408 and c.eof for c in clients)
    assert json.loads(clients[0].body)["error"]["code"] == "request_timeout"
    assert proxy.sim.fates == []


async def test_deeply_nested_json_is_no_server_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await proxied(nursery, admin_key="adm")
    nested = b"[" * 100_000 + b"]" * 100_000
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy.origin) as client:
            response = await client.post("/v1/embeddings", content=nested)
    assert response.status_code < 500 or "simulated" in response.text
    assert not [r for r in caplog.records if r.name.startswith("trioproxy") and r.exc_info]


async def test_whole_answers_read_to_their_length_are_completed(
    stack: Stack, access_log: AccessLog
) -> None:
    """curl and node-fetch read to Content-Length and close at once."""
    request = request_bytes("POST", "/v1/chat/completions", chat_body(False), {})
    with trio.fail_after(30):
        for _ in range(40):
            client = await RawClient.connect(stack.host, stack.port)
            await client.send(request)
            await client.read_until(b"}}")  # the usage object ends the JSON answer
            while len(client.body) < int(_header(client.received, b"content-length")):
                await client.read_more()
            client.close()
        lines = await access_log.wait_for(40)
    assert sum(" 200 outcome=completed " in line for line in lines) == 40, lines


def _header(received: bytes, name: bytes) -> bytes:
    head = received.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} in {head!r}")


async def test_an_answer_before_the_body_was_read_says_connection_close(
    nursery: trio.Nursery,
) -> None:
    """A 401 (or 400, 413) sent before the body was read: hypercorn closes the
    connection, so the answer must say so, or a keep-alive client loses its
    next request on it."""
    proxy = await proxied(nursery, api_keys=frozenset({"sk-proxy"}))
    with trio.fail_after(10):
        client = await RawClient.connect(proxy.host, proxy.port)
        request = request_bytes("POST", "/v1/chat/completions", chat_body(False), {})
        await client.send(request.split(b"\r\n\r\n")[0] + b"\r\n\r\n")  # the body: later
        await client.read_all()
        client.close()
    head = client.received.split(b"\r\n\r\n")[0].lower()
    assert client.status == 401 and b"\r\nconnection: close" in head and client.eof


async def _never_reading(proxy: Proxied, sim_id: str) -> trio.socket.SocketType:
    """A streaming request from a client that then reads nothing, once the upstream stalls."""
    sock = trio.socket.socket()
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    await sock.connect((proxy.host, proxy.port))
    body = chat_body(True)
    await sock.send(
        request_bytes("POST", "/v1/chat/completions", body, ENDLESS | {"x-sim-id": sim_id})
    )
    await proxy.sim.wait_started(sim_id)
    sent = -1
    # Nothing signals a stall: this test-side wait polls, bounded by the caller.
    while sent != (sent := proxy.sim.fate(sim_id).bytes_sent):  # noqa: ASYNC110
        await trio.sleep(0.3)
    return sock


async def test_a_client_that_never_reads_is_cut_off_and_its_upstream_closed(
    nursery: trio.Nursery, access_log: AccessLog, idle_clock: MockClock
) -> None:
    """At the default send stall (60 s), on virtual time; the simulator's own
    server waits longer, so its stall never races the proxy's."""
    proxy = await proxied(nursery, sim_server={"limits": ServerLimits(send_stall_s=3600)})
    with trio.fail_after(SEND_STALL_S * 3):
        sock = await _never_reading(proxy, "deaf")
        stalled = trio.current_time()
        line = await access_log.wait_for_line("outcome=")
        fate = await proxy.sim.wait_ended("deaf")
    sock.close()
    assert SEND_STALL_S - 1 <= trio.current_time() - stalled <= SEND_STALL_S
    assert " 499 outcome=client_closed phase=streaming" in line, line
    assert fate.outcome == "disconnected"


async def test_an_admin_cancel_ends_a_request_whose_client_never_reads(
    nursery: trio.Nursery, access_log: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the write to that client waited under a shield, for ever. The cancel
    cuts the waiting write (a reset); the stop's answer after it is dropped, no error."""
    proxy = await proxied(nursery, admin_key="adm")
    with trio.fail_after(20):
        sock = await _never_reading(proxy, "deaf")
        async with httpx.AsyncClient(base_url=proxy.origin) as admin:
            auth = {"authorization": "Bearer adm"}
            (listed,) = (await admin.get("/admin/requests", headers=auth)).json()["requests"]
            cancelled = await admin.delete(f"/admin/requests/{listed['id']}", headers=auth)
        line = await access_log.wait_for_line("outcome=")
        fate = await proxy.sim.wait_ended("deaf")
    sock.close()
    assert cancelled.status_code == 200
    assert " 200 outcome=cancelled_by_admin" in line, line  # its head was sent: 200
    assert fate.outcome == "disconnected"
    assert_no_tracebacks(caplog)


@TRANSPORTS
async def test_h2_a_zero_window_client_that_leaves_after_a_whole_answer_ends_its_request(
    nursery: trio.Nursery, tls: TLSFiles, access_log: AccessLog, transport: str
) -> None:
    """A whole JSON answer queued for a client that opened no window: when the
    client closes its connection, the request ends and is logged (it stayed in
    flight for good, because the answer's end waited for a window)."""
    target = await h2_target(nursery, transport, tls)
    with trio.fail_after(20):
        client = await target.connect(window=0)
        whole = json.dumps({"model": "sim-small", "messages": []}).encode()  # not streamed
        await client.request("/v1/chat/completions", {"x-sim-id": "whole"}, whole)
        fate = await target.sim.wait_ended("whole")
        await trio.sleep(0.2)  # the answer reaches the stream's buffer, then waits
        client.close()
        line = await access_log.wait_for_line("/v1/chat/completions")
    assert fate.outcome == "completed"
    assert " 200 " in line or " 499 " in line
