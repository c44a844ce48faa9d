"""What an operator searches: the phase an answer ended in, the request id, each
fallback attempt; on real sockets, read from the access line."""

import httpx
import trio

from tests.helpers import CHAT, AccessLog, Stack, start_proxy, start_sim
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.upstream.routing import Upstream
from trioproxy.sim import SimUpstream


async def test_a_json_answer_and_the_model_list_end_in_phase_body(
    stack: Stack, access_log: AccessLog
) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            answer = await client.post("/v1/chat/completions", json=CHAT)
            models = await client.get("/v1/models")
            stream = await client.post("/v1/chat/completions", json=CHAT | {"stream": True})
        chat, listed, streamed = await access_log.wait_for(3)
    assert answer.status_code == models.status_code == stream.status_code == 200
    assert " POST /v1/chat/completions 200 outcome=completed phase=body " in chat
    assert " GET /v1/models 200 outcome=completed phase=body " in listed
    assert " 200 outcome=completed phase=streaming " in streamed


async def test_a_merged_model_list_ends_in_phase_body(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    a, b = SimUpstream(), SimUpstream()
    upstreams = (
        Upstream("a", f"{await start_sim(nursery, a)}/v1", None, ("alpha",)),
        Upstream("b", f"{await start_sim(nursery, b)}/v1", None, ("beta",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            models = await client.get("/v1/models")
        (line,) = await access_log.wait_for(1)
    assert models.status_code == 200
    assert " GET /v1/models 200 outcome=completed phase=body " in line
