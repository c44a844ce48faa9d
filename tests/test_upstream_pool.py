"""trioproxy's upstream pool: reuse after a whole answer, close after a partial one."""

import ssl

import httpx
import trio

from tests.conftest import start_sim
from trioproxy.sim import SimUpstream
from trioproxy.upstream import UpstreamTransport

CHAT = {"model": "m", "stream": True, "messages": []}


async def test_whole_answers_reuse_one_connection_partial_ones_close_it(
    nursery: trio.Nursery,
) -> None:
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    transport = UpstreamTransport(ssl.create_default_context())
    with trio.fail_after(10):
        async with httpx.AsyncClient(transport=transport, base_url=upstream) as client:
            for i in range(3):
                response = await client.post(
                    "/v1/chat/completions", json=CHAT, headers={"x-sim-id": f"w{i}"}
                )
                assert response.content.endswith(b"data: [DONE]\n\n")
                assert transport.idle_connections() == 1
            async with client.stream(
                "POST",
                "/v1/chat/completions",
                json=CHAT,
                headers={"x-sim-id": "cut", "x-sim-tokens": "100000", "x-sim-interval": "0.01"},
            ) as partial:
                assert transport.idle_connections() == 0  # the idle one is in use
                async for _ in partial.aiter_raw():
                    break
            fate = await sim.wait_ended("cut")
            assert transport.idle_connections() == 0
    assert fate.outcome == "disconnected"
    assert {sim.fate(f"w{i}").outcome for i in range(3)} == {"completed"}
