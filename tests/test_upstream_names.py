"""A 502, a 504 and a mid-stream error event name the upstream by its configured
name, never by its address: the address is the operator's (the log's), not the client's."""

import json
from collections.abc import Awaitable, Callable
from functools import partial

import httpx
import trio

from tests.helpers import start_proxy
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.upstream.routing import Upstream

CHAT = {"model": "m", "messages": [], "stream": True}


async def _raw_upstream(
    nursery: trio.Nursery, answer: Callable[[trio.SocketStream], Awaitable[None]]
) -> int:
    """A TCP upstream on 127.0.0.1 that runs ``answer`` on each connection; its port."""
    listeners = await nursery.start(partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def _ask(nursery: trio.Nursery, port: int, **config: float) -> httpx.Response:
    upstream = Upstream("a", f"http://127.0.0.1:{port}/v1", None)
    proxy = ProxyConfig(upstream=upstream.url, upstreams=(upstream,), **config)  # type: ignore[arg-type]
    origin = await start_proxy(nursery, proxy)
    async with httpx.AsyncClient(base_url=origin, timeout=10) as client:
        return await client.post("/v1/chat/completions", json=CHAT)


def _assert_named(text: str, port: int) -> None:
    assert 'upstream "a"' in text, text
    assert "127.0.0.1" not in text and str(port) not in text, text


async def test_a_502_for_an_unreachable_upstream_names_it(nursery: trio.Nursery) -> None:
    with trio.socket.socket() as sock:  # a port that was free a moment ago
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(10):
        response = await _ask(nursery, port)
    assert response.status_code == 502
    _assert_named(response.json()["error"]["message"], port)
    assert "cannot connect" in response.json()["error"]["message"]


async def test_a_504_names_the_upstream(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await trio.sleep_forever()  # the request came; no answer ever does

    port = await _raw_upstream(nursery, silent)
    with trio.fail_after(10):
        response = await _ask(nursery, port, headers_timeout_s=0.2)
    assert response.status_code == 504
    _assert_named(response.json()["error"]["message"], port)


async def test_a_mid_stream_error_event_names_the_upstream(nursery: trio.Nursery) -> None:
    async def cut(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n"
        )
        await stream.aclose()  # mid-answer

    port = await _raw_upstream(nursery, cut)
    with trio.fail_after(10):
        response = await _ask(nursery, port)
    assert response.status_code == 200
    (event,) = [line for line in response.text.splitlines() if "mid-stream" in line]
    _assert_named(json.loads(event.removeprefix("data: "))["error"]["message"], port)
