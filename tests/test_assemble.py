"""``stream_upstream``: a client's non-streaming completion goes upstream as a
stream and is answered with the JSON assembled from it, on real sockets.

The simulator is the oracle: it renders the same request both ways, so the
proxy's assembled answer must equal the simulator's own non-streaming answer.
A client that leaves mid-assembly closes the upstream stream at once; a
failure before the answer is whole is a 502 or 504 JSON error."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import (
    CHAT,
    AccessLog,
    Proxied,
    ScriptedUpstream,
    proxied,
    start_proxy,
    start_sim,
)
from trioproxy.conformance import RawClient, StopKind, request_bytes
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.gateway.settings import SettingsError, load
from trioproxy.proxy.relay import streamed
from trioproxy.proxy.upstream.routing import Upstream
from trioproxy.sim import SimUpstream
from trioproxy.sim.render import Render

BOUND_MS = 250.0  # generous: only a stop that is not propagated at all passes it
COMPLETION = {"model": "sim-small", "prompt": "hi"}


def _config(upstream: str, on: bool = True, **more: Any) -> ProxyConfig:
    return ProxyConfig(
        upstream=upstream, upstreams=(Upstream("u", upstream, stream_upstream=on),), **more
    )


@pytest.fixture
async def assembling(nursery: trio.Nursery) -> AsyncIterator[Proxied]:
    """A proxy with stream_upstream on, in front of a simulator of its own."""
    sim = SimUpstream()
    upstream = f"{await start_sim(nursery, sim)}/v1"
    origin = await start_proxy(nursery, _config(upstream))
    host, port = origin.removeprefix("http://").rsplit(":", 1)
    yield Proxied(sim, origin, host, int(port))


def _request(kind: str, n: int, logprobs: int | None, tools: list[str]) -> dict[str, Any]:
    request: dict[str, Any] = dict(CHAT if kind == "chat" else COMPLETION)
    if n != 1:
        request["n"] = n
    if logprobs is not None:
        request |= {"logprobs": True, "top_logprobs": logprobs} if kind == "chat" else {}
        request |= {"logprobs": logprobs} if kind == "completion" else {}
    if tools and kind == "chat":
        request["tools"] = [{"type": "function", "function": {"name": t}} for t in tools]
    return request


# Each example in a trio run of its own (as hypothesis runs them): a simulator
# and a proxy per example.
@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(["chat", "completion"]),
    n=st.integers(1, 3),
    logprobs=st.none() | st.integers(0, 2),
    tools=st.lists(st.sampled_from(["get_weather", "search"]), max_size=2, unique=True),
    refuse=st.booleans(),
    tokens=st.integers(0, 12),
)
async def test_the_assembled_answer_is_the_engines_own_whole_answer(
    kind: str, n: int, logprobs: int | None, tools: list[str], refuse: bool, tokens: int
) -> None:
    path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    body = _request(kind, n, logprobs, tools)
    headers = {"x-sim-tokens": str(tokens), "x-sim-refuse": "1" if refuse else "0"}
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            sim = SimUpstream()
            upstream = f"{await start_sim(nursery, sim)}/v1"
            proxy = await start_proxy(nursery, _config(upstream))
            async with httpx.AsyncClient() as client:
                direct = await client.post(
                    upstream.removesuffix("/v1") + path,
                    json=body,
                    headers=headers | {"x-sim-id": "d"},
                )
                assembled = await client.post(
                    proxy + path, json=body, headers=headers | {"x-sim-id": "p"}
                )
            nursery.cancel_scope.cancel()
    assert direct.headers["content-type"] == "application/json"
    assert assembled.status_code == 200, assembled.text
    assert assembled.headers["content-type"] == "application/json"
    assert int(assembled.headers["content-length"]) == len(assembled.content)
    mine, theirs = assembled.json(), direct.json()
    assert (mine.pop("id"), theirs.pop("id")) == ("p", "d")
    assert mine == theirs
    assert sim.fate("p").stream and not sim.fate("d").stream


async def test_the_upstream_is_asked_for_a_stream_and_its_headers_come_back(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    stream = Render("chat", "m", "r1", include_usage=True).stream(3)
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\nx-request-id: req-7\r\nx-accel-buffering: no\r\n"
        b"content-length: %d\r\n\r\n" % len(stream)
    )
    upstream = ScriptedUpstream(answer=[head, stream])
    proxy = await start_proxy(nursery, _config(await upstream.start(nursery)))
    body = json.dumps(CHAT | {"temperature": 0.5, "seed": 7}).encode()
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            response = await client.post(
                proxy + "/v1/chat/completions",
                content=body,
                headers={"content-type": "application/json", "accept-encoding": "gzip"},
            )
        line = await access_log.wait_for_line(" 200 ")
    assert response.status_code == 200
    assert json.loads(response.content) == json.loads(Render("chat", "m", "r1").whole(3))
    names = [name.lower() for name, _ in response.headers.raw]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))
    # The upstream's own id comes back renamed; the client's x-request-id is the proxy's.
    assert response.headers["x-upstream-request-id"] == "req-7"
    assert len(response.headers["x-request-id"]) == 32
    assert b"cache-control" not in names and b"x-accel-buffering" not in names
    (received,) = upstream.received
    sent = json.loads(received.raw.partition(b"\r\n\r\n")[2])
    assert sent == CHAT | {
        "temperature": 0.5,
        "seed": 7,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert received.header(b"accept-encoding") == b"identity"
    assert received.header(b"accept") == b"text/event-stream"
    assert "outcome=completed" in line
    assert 'usage={"prompt_tokens":8,"completion_tokens":3,"total_tokens":11}' in line


@pytest.mark.parametrize("kind", list(StopKind))
@pytest.mark.parametrize("tokens_first", [0, 5], ids=["before_any_token", "mid_assembly"])
async def test_a_client_that_leaves_mid_assembly_closes_the_upstream_stream(
    assembling: Proxied, access_log: AccessLog, kind: StopKind, tokens_first: int
) -> None:
    headers = {"x-sim-id": "s", "x-sim-tokens": "1000000", "x-sim-interval": "0.005"}
    if not tokens_first:
        headers["x-sim-first-token-delay"] = "600"
    raw = request_bytes("POST", "/v1/chat/completions", json.dumps(CHAT).encode(), headers)
    client = await RawClient.connect(assembling.host, assembling.port)
    fate = assembling.sim.fate("s")
    try:
        with trio.fail_after(10):
            await client.send(raw)
            # A stream: the simulator sends its tokens one by one (a non-streaming
            # request would have none until the end, a million tokens away).
            await fate.wait_progress(tokens=tokens_first)
            stopped_at = client.stop(kind)
            await fate.ended.wait()
            line = await access_log.wait_for_line(" 499 ")
    finally:
        client.close()
    assert fate.outcome == "disconnected"
    assert fate.ended_at is not None and (fate.ended_at - stopped_at) * 1000 < BOUND_MS
    assert fate.tokens_sent < 1000000
    assert "outcome=client_closed phase=waiting_headers " in line
    assert client.received == b""  # no header ever went out


async def test_an_upstream_cut_mid_assembly_is_a_502_json_error(
    assembling: Proxied, access_log: AccessLog
) -> None:
    headers = {"x-sim-tokens": "3", "x-sim-fail": "drop"}
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=assembling.origin) as client:
            response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
        line = await access_log.wait_for_line(" 502 ")
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    assert 'upstream "u"' in response.json()["error"]["message"]
    assert "outcome=upstream_error phase=waiting_headers " in line


async def test_a_silent_upstream_mid_assembly_is_a_504_json_error(
    nursery: trio.Nursery, idle_clock: trio.abc.Clock
) -> None:
    sim = SimUpstream()
    upstream = f"{await start_sim(nursery, sim)}/v1"
    proxy = await start_proxy(nursery, _config(upstream, idle_timeout_s=30.0))
    headers = {"x-sim-tokens": "3", "x-sim-interval": "100"}
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=proxy, timeout=None) as client:
            response = await client.post("/v1/completions", json=COMPLETION, headers=headers)
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"
    assert "silent for 30 s" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("events", "words"),
    [
        (b'data: {"error": {"message": "KV cache full", "code": 500}}\n\n', "KV cache full"),
        (b"data: {half\n\n", "not JSON"),
        (b'data: {"choices": [{"index": 9999}]}\n\n', "choice index"),
    ],
)
async def test_a_bad_or_error_event_mid_assembly_is_a_502_json_error(
    nursery: trio.Nursery, events: bytes, words: str
) -> None:
    first = Render("chat", "m", "r").head()
    stream = first + events + b"data: [DONE]\n\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    upstream = ScriptedUpstream(answer=[head + b"content-length: %d\r\n\r\n" % len(stream), stream])
    proxy = await start_proxy(nursery, _config(await upstream.start(nursery)))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert words in response.json()["error"]["message"]


async def test_an_answer_past_the_bound_is_a_502(
    assembling: Proxied, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streamed, "MAX_BYTES", 2000)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=assembling.origin) as client:
            response = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"x-sim-tokens": "100", "x-sim-id": "b"}
            )
            await assembling.sim.wait_ended("b")
    assert response.status_code == 502
    assert "passed 2000 bytes" in response.json()["error"]["message"]
    assert assembling.sim.fate("b").outcome == "disconnected"  # the rest never read


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (  # a stream asked for: relayed as it came, with no usage the client did not ask for
            "/v1/chat/completions",
            CHAT | {"stream": True},
            Render("chat", "sim-small", "a").stream(4),
        ),
        (  # another API: as it came
            "/v1/messages",
            {"model": "sim-small", "max_tokens": 4, "messages": []},
            Render("messages", "sim-small", "a").whole(4),
        ),
    ],
    ids=["stream", "messages"],
)
async def test_other_requests_are_relayed_as_they_came(
    assembling: Proxied, path: str, body: dict[str, Any], expected: bytes
) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=assembling.origin) as client:
            response = await client.post(
                path, json=body, headers={"x-sim-tokens": "4", "x-sim-id": "a"}
            )
    assert response.status_code == 200
    assert response.content == expected
    assert assembling.sim.fate("a").stream is (path != "/v1/messages")


async def test_an_upstream_error_answer_is_relayed_as_it_came(assembling: Proxied) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=assembling.origin) as client:
            response = await client.post(
                "/v1/completions", json=COMPLETION, headers={"x-sim-fail": "500"}
            )
    assert response.status_code == 500
    assert response.json() == {"error": {"message": "simulated failure", "type": "server_error"}}


async def test_without_the_setting_a_non_streaming_request_goes_as_it_came(
    nursery: trio.Nursery,
) -> None:
    p = await proxied(nursery)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=p.origin) as client:
            response = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"x-sim-tokens": "4", "x-sim-id": "w"}
            )
    assert response.content == Render("chat", "sim-small", "w").whole(4)
    assert not p.sim.fate("w").stream


def test_the_settings_turn_it_on_per_upstream(tmp_path: Any) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        '[[upstream]]\nname = "a"\nurl = "http://127.0.0.1:1/v1"\nmodels = ["a"]\n'
        "stream_upstream = true\n"
        '[[upstream]]\nname = "b"\nurl = "http://127.0.0.1:2/v1"\nmodels = ["b"]\n'
    )
    a, b = load(str(path), {}, {}).proxy.upstreams
    assert (a.stream_upstream, b.stream_upstream) == (True, False)
    single = load(None, {"upstream": "http://127.0.0.1:1/v1", "upstream_stream": True}, {})
    assert single.proxy.upstreams[0].stream_upstream is True
    variable = {"TRIOPROXY_UPSTREAM": "http://x/v1", "TRIOPROXY_UPSTREAM_STREAM": "1"}
    assert load(None, {}, variable).proxy.upstreams[0].stream_upstream is True
    path.write_text('[[upstream]]\nurl = "http://127.0.0.1:1/v1"\nstream_upstream = "yes"\n')
    with pytest.raises(SettingsError, match='stream_upstream = "yes": not true or false'):
        load(str(path), {}, {})
    with pytest.raises(SettingsError, match="--upstream-stream is for the single upstream"):
        load(None, {"upstream_stream": True}, {})
