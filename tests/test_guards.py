"""Regression tests for the guards of trioproxy/server/guards and trioproxy/proxy/app.py."""

import httpx
import pytest
import quart
import trio
from trio.testing import MockClock

from tests.helpers import (
    Stack,
    TLSFiles,
    live_tasks,
    open_fds,
    start_proxy,
    start_sim,
    wait_for_baseline,
)
from trioproxy.asgi import CLIENT_GONE, Receive, Scope, Send
from trioproxy.conformance import (
    SCENARIOS,
    RawClient,
    StopKind,
    chat_body,
    request_bytes,
    stop_in_phase,
)
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.server import hypercorn_config, serve_app
from trioproxy.sim import SimUpstream
from trioproxy.sim.render import Render

STREAMING = next(s for s in SCENARIOS if s.name == "streaming")


async def test_quart_response_timeout_never_cuts_a_stream(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Quart's 60 s default, shrunk so that a 1.2 s stream would be cut by it.
    shrunk = dict(quart.Quart.default_config) | {"RESPONSE_TIMEOUT": 0.3}
    monkeypatch.setattr(quart.Quart, "default_config", shrunk)
    sim = SimUpstream()
    proxy = await start_proxy(nursery, ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1"))
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=proxy) as client:
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "m", "stream": True, "messages": []},
                headers={"x-sim-id": "slow", "x-sim-tokens": "40", "x-sim-interval": "0.03"},
            )
    assert response.content == Render("chat", "m", "slow").stream(40)


async def test_pipelined_bytes_do_not_blind_disconnect_detection(stack: Stack) -> None:
    """A request followed at once by another on the same connection, then FIN."""
    tasks, fds = live_tasks(), open_fds()
    first = request_bytes(
        "POST",
        "/v1/chat/completions",
        chat_body(True),
        {"x-sim-id": "first", "x-sim-headers-delay": "600"},
    )
    second = request_bytes("POST", "/v1/chat/completions", chat_body(True), {"x-sim-id": "second"})
    with trio.fail_after(15):
        client = await RawClient.connect(stack.host, stack.port)
        await client.send(first + second)
        await stack.sim.wait_started("first")
        client.stop(StopKind.FIN)
        fate = await stack.sim.wait_ended("first")
        client.close()
        await wait_for_baseline(tasks, fds)
    assert fate.outcome == "disconnected"
    assert stack.sim.fate("second").outcome == "running"  # never started: not served after FIN


async def test_pipelined_requests_are_served_in_order(stack: Stack) -> None:
    requests = b"".join(
        request_bytes("POST", "/v1/chat/completions", chat_body(False), {"x-sim-id": f"p{i}"})
        for i in range(3)
    )
    with trio.fail_after(15):
        client = await RawClient.connect(stack.host, stack.port)
        await client.send(requests)
        await client.read_until(b'"object":"chat.completion"', count=3)
        client.close()
    answers = client.received.split(b"HTTP/1.1 ")[1:]
    assert [answer.split(b"\r\n\r\n", 1)[1] for answer in answers] == [
        Render("chat", "sim-small", f"p{i}").whole(16) for i in range(3)
    ]


async def test_http2_upstream_is_spoken_to_in_http11_and_gets_the_cancel(
    nursery: trio.Nursery, tls: TLSFiles
) -> None:
    sim = SimUpstream()
    # hypercorn offers h2 by ALPN on TLS: an upstream that would speak HTTP/2.
    upstream = await start_sim(nursery, sim, certfile=tls.certfile, keyfile=tls.keyfile)
    proxy = await start_proxy(
        nursery, ProxyConfig(upstream=f"{upstream}/v1", upstream_ca=tls.cafile)
    )
    host, port = proxy.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(15):
        result = await stop_in_phase(host, int(port), sim, STREAMING, StopKind.RST, "tls")
    assert sim.fate("tls").http_version == "1.1"
    assert result.upstream == "closed"


async def test_idle_timer_never_cuts_a_busy_connection_and_rearms_after_each_request(
    nursery: trio.Nursery, idle_clock: MockClock
) -> None:
    """The keep-alive timer is one moving deadline (trioproxy/server/guards/idle.py),
    at its default (5 s), on virtual time."""
    keep_alive_s = hypercorn_config("127.0.0.1", 0).keep_alive_timeout
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    proxy = await start_proxy(nursery, ProxyConfig(upstream=f"{upstream}/v1"))
    host, port = proxy.removeprefix("http://").rsplit(":", 1)
    interval = str(keep_alive_s / 3)
    slow = {"x-sim-id": "slow", "x-sim-tokens": "10", "x-sim-interval": interval}
    with trio.fail_after(keep_alive_s * 20):
        client = await RawClient.connect(host, int(port))
        await client.send(request_bytes("POST", "/v1/chat/completions", chat_body(True), slow))
        await client.read_until(b"0\r\n\r\n")  # busy for three keep-alive timeouts
        for i in range(4):  # each request re-arms the timer before it fires
            await trio.sleep(keep_alive_s * 0.7)
            await client.send(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            await client.read_until(b'"status":"ok"', count=i + 1)
        idle_from = trio.current_time()
        await client.read_all()
        client.close()
    assert sim.fate("slow").outcome == "completed"
    assert client.eof and keep_alive_s <= trio.current_time() - idle_from < keep_alive_s + 1


@pytest.mark.parametrize("where", ["extensions", "scope"])
async def test_a_client_leaving_calls_the_scope_hook_from_the_read_task(
    nursery: trio.Nursery, where: str
) -> None:
    """The app never calls ``receive()``: only hypercorn's read task can call the hook,
    found in the scope's extensions (or, while the proxy moves there, the scope)."""
    gone = trio.Event()
    started = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        (scope["extensions"] if where == "extensions" else scope)[CLIENT_GONE] = gone.set
        started.set()
        await trio.sleep_forever()  # a relay waiting on its upstream, say

    hypercorn = hypercorn_config("127.0.0.1", 0)
    bound = str((await nursery.start(serve_app, app, hypercorn))[0])
    host, port = bound.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        for kind in StopKind:
            gone, started = trio.Event(), trio.Event()
            client = await RawClient.connect(host, int(port))
            await client.send(request_bytes("POST", "/v1/chat/completions", chat_body(True), {}))
            await started.wait()
            client.stop(kind)
            await gone.wait()
            client.close()


async def test_an_answer_after_the_server_refused_too_many_pipelined_bytes_is_dropped(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The pipelined-bytes bound answers 400 and closes while the request is still in
    the app; the app's own answer after that is dropped, as hypercorn drops one after
    any refused request, never raised (it was h11's "Response in MUST_CLOSE", logged
    with a traceback; the fuzzer found it on a loaded machine)."""
    release, answered = trio.Event(), trio.Event()
    outcome: list[str] = []

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        await release.wait()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late"})
            outcome.append("sent")
        except Exception as exc:  # what the app meets is the point of the test
            outcome.append(repr(exc))
        finally:
            answered.set()

    (bound,) = await nursery.start(serve_app, slow, hypercorn_config("127.0.0.1", 0))
    host, port = str(bound).removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        client = await RawClient.connect(host, int(port))
        await client.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n" + b"x" * 20_000)
        await client.read_all()  # 400, then the server closes the connection
        release.set()
        await answered.wait()
    assert client.status == 400
    assert outcome == ["sent"]
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]
