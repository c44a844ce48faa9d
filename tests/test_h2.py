"""HTTP/2: a reset stream closes its upstream and leaves its siblings alone."""

import json

import trio

from tests.helpers import AccessLog, Stack, start_proxy, start_sim
from trioproxy.conformance import H2Client
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.sim import SimUpstream
from trioproxy.sim.render import Render

BODY = json.dumps({"model": "sim-small", "stream": True, "messages": []}).encode()


async def test_stream_reset_cancels_only_that_stream(stack: Stack, access_log: AccessLog) -> None:
    with trio.fail_after(20):
        client = await H2Client.connect(stack.host, stack.port)
        doomed = await client.request(
            "/v1/chat/completions",
            {"x-sim-id": "doomed", "x-sim-tokens": "1000000", "x-sim-interval": "0.005"},
            BODY,
        )
        sibling = await client.request(
            "/v1/chat/completions",
            {"x-sim-id": "sibling", "x-sim-tokens": "300", "x-sim-interval": "0.002"},
            BODY,
        )
        await client.pump_until(lambda: client.data[doomed].count(b"data: ") >= 5)
        await client.reset(doomed)
        fate = await stack.sim.wait_ended("doomed")
        await client.pump_until(lambda: sibling in client.ended)
        client.close()
        line = await access_log.wait_for_line(" 499 ")
    assert fate.outcome == "disconnected"
    assert stack.sim.fate("sibling").outcome == "completed"
    assert bytes(client.data[sibling]) == Render("chat", "sim-small", "sibling").stream(300)
    assert "outcome=client_closed phase=streaming" in line


async def test_data_after_early_answer_does_not_kill_the_connection(nursery: trio.Nursery) -> None:
    """hypercorn #329: DATA for a stream the server already answered raised KeyError.

    A body over the limit is answered 413 at once; the client keeps sending
    that body. A sibling stream on the same connection must stream on whole,
    and the server must keep serving.
    """
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    proxy = await start_proxy(nursery, ProxyConfig(upstream=f"{upstream}/v1", max_body_bytes=1000))
    host, port = proxy.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(20):
        client = await H2Client.connect(host, int(port))
        sibling = await client.request(
            "/v1/chat/completions",
            {"x-sim-id": "sibling", "x-sim-tokens": "200", "x-sim-interval": "0.002"},
            BODY,
        )
        big = await client.request("/v1/chat/completions", {}, b"", end=False, content_length=5000)
        await client.pump_until(lambda: big in client.ended)
        assert client.headers[big][b":status"] == b"413"
        for _ in range(5):
            await client.send_data(big, b"x" * 1000)
        await client.pump_until(lambda: sibling in client.ended)
        again = await client.request("/v1/chat/completions", {"x-sim-id": "again"}, BODY)
        await client.pump_until(lambda: again in client.ended)
        client.close()
    assert bytes(client.data[sibling]) == Render("chat", "sim-small", "sibling").stream(200)
    assert bytes(client.data[again]) == Render("chat", "sim-small", "again").stream(16)
