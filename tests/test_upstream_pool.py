"""trioproxy's upstream pool: reuse after a whole answer, close after a partial one,
and a connection the upstream closed while idle is never handed out."""

import json
import os
import resource
import ssl

import pytest
import trio

from tests.helpers import ScriptedUpstream, start_sim
from trioproxy.proxy.upstream.errors import UpstreamError
from trioproxy.proxy.upstream.pool import Deadlines, UpstreamPool
from trioproxy.sim import SimUpstream

BODY = json.dumps({"model": "m", "stream": True, "messages": []}).encode()
DEADLINES = Deadlines(connect_s=5, headers_s=5, idle_s=5)


def origin_of(url: str) -> tuple[str, str, int]:
    host, port = url.removeprefix("http://").removesuffix("/v1").rsplit(":", 1)
    return ("http", host, int(port))


async def test_whole_answers_reuse_one_connection_partial_ones_close_it(
    nursery: trio.Nursery,
) -> None:
    sim = SimUpstream()
    origin = origin_of(await start_sim(nursery, sim))
    pool = UpstreamPool(ssl.create_default_context())

    def request(sim_id: str, **sim: str):  # type: ignore[no-untyped-def]
        headers = [(b"x-sim-id", sim_id.encode())]
        headers += [(f"x-sim-{k}".encode(), v.encode()) for k, v in sim.items()]
        return pool.request(origin, b"POST", b"/v1/chat/completions", headers, BODY, DEADLINES)

    with trio.fail_after(10):
        for i in range(3):
            async with request(f"w{i}") as response:
                assert (await response.read(1 << 20)).endswith(b"data: [DONE]\n\n")
            assert pool.idle_connections() == 1
        async with request("cut", tokens="100000", interval="0.01") as partial:
            assert pool.idle_connections() == 0  # the idle one is in use
            assert await partial.next_chunk()
        fate = await sim.wait_ended("cut")
        assert pool.idle_connections() == 0
        await pool.aclose()
    assert fate.outcome == "disconnected"
    assert {sim.fate(f"w{i}").outcome for i in range(3)} == {"completed"}


async def test_a_connection_the_upstream_closed_while_idle_is_not_reused(
    nursery: trio.Nursery,
) -> None:
    """An upstream with a keep-alive timeout shorter than the pool's."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    upstream = ScriptedUpstream([answer], then="close")  # keep-alive over, without saying so
    origin = origin_of(await upstream.start(nursery))
    pool = UpstreamPool(ssl.create_default_context())
    with trio.fail_after(10):
        for i in range(3):
            async with pool.request(origin, b"GET", b"/v1/models", [], b"", DEADLINES) as response:
                assert await response.read(1 << 20) == b"{}"
            await upstream.wait_ended(i + 1)  # the upstream's close has landed
        await pool.aclose()
    assert upstream.connections == 3


async def test_a_connection_closed_by_a_stop_after_a_whole_answer_is_not_pooled(
    nursery: trio.Nursery,
) -> None:
    """A client's stop aborts the upstream exchange from the watcher's step
    (UpstreamExchange.abort), possibly after the answer was read whole but
    before the exchange ended: that connection must not go back to the pool."""
    sim = SimUpstream()
    origin = origin_of(await start_sim(nursery, sim))
    pool = UpstreamPool(ssl.create_default_context())
    target = b"/v1/chat/completions"
    with trio.fail_after(10):
        exchange = pool.exchange(origin, b"POST", target, [], BODY, DEADLINES)
        async with exchange.open() as r:
            assert (await r.read(1 << 20)).endswith(b"data: [DONE]\n\n")
            exchange.abort()
        assert pool.idle_connections() == 0
        async with pool.request(origin, b"POST", target, [], BODY, DEADLINES) as again:
            assert (await again.read(1 << 20)).endswith(b"data: [DONE]\n\n")
        await pool.aclose()


async def test_pooled_connections_on_descriptors_past_1023_are_reused(
    nursery: trio.Nursery,
) -> None:
    """The idle check once used select(), which refuses a descriptor past 1023:
    a busy proxy answered 500 for every request that took such a connection."""
    sim = SimUpstream()
    origin = origin_of(await start_sim(nursery, sim))
    pool = UpstreamPool(ssl.create_default_context())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with trio.fail_after(10):
            for _ in range(2):  # the second takes the pooled one
                async with pool.request(
                    origin, b"POST", b"/v1/chat/completions", [], BODY, DEADLINES
                ) as response:
                    assert (await response.read(1 << 20)).endswith(b"data: [DONE]\n\n")
            assert pool.idle_connections() == 1
            await pool.aclose()
    finally:
        for fd in filler:
            os.close(fd)


async def test_chunked_answers_in_pieces_are_whole_and_bytes_after_one_forbid_reuse(
    nursery: trio.Nursery,
) -> None:
    """The pool's own chunked reader: a body cut anywhere, with a trailer
    section, is read whole and the connection reused; an answer followed by
    bytes nobody asked for closes its connection; broken framing is the
    upstream's error."""
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    body = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-usage: 3\r\n\r\n"
    answers = {
        b"/cut": [head[:20], head[20:] + body[:2], body[2:9], body[9:]],
        b"/extra": [head + body + b"HTTP/1.1 200 OK\r\n"],
        b"/broken": [head + b"5\r\nhelloXX"],
    }
    upstream = ScriptedUpstream(lambda r: answers[r.target], then="next", pace_s=0.01)
    origin = origin_of(await upstream.start(nursery))
    pool = UpstreamPool(ssl.create_default_context())
    with trio.fail_after(10):
        for target, reused in [(b"/cut", True), (b"/cut", True), (b"/extra", False)]:
            async with pool.request(origin, b"GET", target, [], b"", DEADLINES) as response:
                assert await response.read(1 << 20) == b"hello world"
            assert pool.idle_connections() == int(reused)
        assert upstream.connections == 1  # every answer so far came on the first connection
        with pytest.raises(UpstreamError, match="not followed by CRLF"):
            async with pool.request(origin, b"GET", b"/broken", [], b"", DEADLINES) as response:
                await response.read(1 << 20)
        assert pool.idle_connections() == 0 and upstream.connections == 2
        await pool.aclose()


async def test_upstreams_by_ipv4_ipv6_address_and_by_name(nursery: trio.Nursery) -> None:
    """Addresses connect directly, names through the resolver; the Host header
    brackets an IPv6 address."""
    answer = [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    pool = UpstreamPool(ssl.create_default_context())
    with trio.fail_after(10):
        for host in ("127.0.0.1", "::1", "localhost"):
            bind = "127.0.0.1" if host == "localhost" else host
            upstream = ScriptedUpstream(answer, host=bind)
            await upstream.start(nursery)
            port = upstream.port
            origin = ("http", host, port)
            async with pool.request(origin, b"GET", b"/v1/models", [], b"", DEADLINES) as response:
                assert await response.read(1 << 20) == b"{}"
            expected = f"[{host}]" if host == "::1" else host
            (received,) = upstream.received
            assert received.header(b"host") == f"{expected}:{port}".encode()
        await pool.aclose()
