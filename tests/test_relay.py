"""Whole answers pass through untouched: status, headers, body byte for byte."""

import hashlib
import json
import ssl

import httpx
import pytest
import trio

from tests.helpers import AccessLog, Stack, TLSFiles, start_proxy, start_sim
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.sim import SimUpstream
from trioproxy.sim.render import Render

CHAT = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}


async def test_stream_relayed_byte_exact_with_sse_headers(
    stack: Stack, access_log: AccessLog
) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            response = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"stream": True},
                headers={"x-sim-id": "s1", "x-sim-tokens": "40"},
            )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.content == Render("chat", "sim-small", "s1").stream(40)
    with trio.fail_after(5):
        (line,) = await access_log.wait_for(1)
    assert " POST /v1/chat/completions 200 outcome=completed phase=streaming " in line
    assert f"bytes={len(response.content)} events=43 " in line


async def test_ten_thousand_events_arrive_whole_and_in_order(stack: Stack) -> None:
    digest = hashlib.sha256()
    events = 0
    with trio.fail_after(60):
        async with (
            httpx.AsyncClient(base_url=stack.proxy, timeout=30) as client,
            client.stream(
                "POST",
                "/v1/chat/completions",
                json=CHAT | {"stream": True},
                headers={"x-sim-id": "big", "x-sim-tokens": "10000"},
            ) as response,
        ):
            async for chunk in response.aiter_raw():
                digest.update(chunk)
                events += chunk.count(b"\n\n")
    fate = stack.sim.fate("big")
    with trio.fail_after(10):  # the client can read the last bytes before the sim notes its digest
        await fate.ended.wait()
    assert fate.outcome == "completed" and fate.tokens_sent == 10_000
    assert events == 10_003
    assert digest.hexdigest() == fate.sha256


@pytest.mark.parametrize(
    ("path", "kind", "request_body"),
    [
        ("/v1/chat/completions", "chat", CHAT),
        ("/v1/completions", "completion", {"model": "sim-small", "prompt": "hi"}),
        ("/v1/messages", "messages", {"model": "sim-small", "max_tokens": 5, "messages": []}),
    ],
)
async def test_json_answers_pass_through(
    stack: Stack, path: str, kind: str, request_body: dict[str, object]
) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            response = await client.post(
                path, json=request_body, headers={"x-sim-id": "j", "x-sim-tokens": "5"}
            )
    assert response.status_code == 200
    assert response.content == Render(kind, "sim-small", "j").whole(5)
    assert response.headers["content-length"] == str(len(response.content))


async def test_any_method_path_and_query_pass_through(stack: Stack) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            models = await client.get("/v1/models")
            missing = await client.delete("/v1/files/file-1?purpose=x", headers={"x-sim-id": "d"})
    assert [m["id"] for m in models.json()["data"]] == ["sim-small", "sim-large"]
    assert missing.status_code == 404  # the upstream's answer, relayed
    assert missing.json() == {"error": {"message": "no such endpoint"}}
    assert stack.sim.fate("d").path == "/v1/files/file-1"


async def test_upstream_key_replaces_authorization_and_hop_headers_stay(
    nursery: trio.Nursery,
) -> None:
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    proxy = await start_proxy(nursery, ProxyConfig(upstream=f"{upstream}/v1", upstream_key="sk-up"))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            await client.post(
                "/v1/chat/completions",
                json=CHAT,
                headers={
                    "authorization": "Bearer client-key",
                    "x-sim-id": "h",
                    "x-custom": "kept",
                    "connection": "keep-alive, x-hop",
                    "x-hop": "dropped",
                },
            )
    seen = sim.fate("h").request_headers
    assert seen["authorization"] == "Bearer sk-up"
    assert seen["x-custom"] == "kept"
    assert "x-hop" not in seen
    assert "accept-encoding" in seen and "gzip" in seen["accept-encoding"]  # the client's own


async def test_health_and_json_404_outside_v1(stack: Stack) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            health = await client.get("/health")
            missing = await client.get("/nope")
    assert health.json()["status"] == "ok"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_h2c_prior_knowledge_streams(stack: Stack) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy, http1=False, http2=True) as client:
            response = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"stream": True},
                headers={"x-sim-id": "h2c", "x-sim-tokens": "20"},
            )
    assert response.http_version == "HTTP/2"
    assert response.content == Render("chat", "sim-small", "h2c").stream(20)


async def test_tls_serves_http2_by_alpn(nursery: trio.Nursery, tls: TLSFiles) -> None:
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    proxy = await start_proxy(
        nursery, ProxyConfig(upstream=f"{upstream}/v1"), certfile=tls.certfile, keyfile=tls.keyfile
    )
    assert proxy.startswith("https://")
    context = ssl.create_default_context()
    tls.ca.configure_trust(context)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy, http2=True, verify=context) as client:
            response = await client.post(
                "/v1/chat/completions", json=CHAT | {"stream": True}, headers={"x-sim-id": "tls"}
            )
    assert response.http_version == "HTTP/2"
    assert response.content == Render("chat", "sim-small", "tls").stream(16)
    assert json.loads(response.content.split(b"data: ")[1])["object"] == "chat.completion.chunk"
