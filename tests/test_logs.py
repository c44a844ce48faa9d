"""What an operator searches: the phase an answer ended in, the request id, each
fallback attempt; on real sockets, read from the access line."""

import logging
import re
from collections.abc import Iterator

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import CHAT, AccessLog, Received, ScriptedUpstream, Stack, start_proxy, start_sim
from trioproxy.proxy.core.bounded import REQUEST_ID_MAX
from trioproxy.proxy.core.request_id import request_id_of
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


async def test_a_well_formed_request_id_is_kept_returned_sent_upstream_logged_and_listed(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    sim = SimUpstream()
    config = ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1", admin_key="adm")
    proxy = await start_proxy(nursery, config)
    given = "req_abc-123:4/5=@+~"
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            answer = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"x-request-id": given, "x-sim-id": "k"}
            )
            line = await access_log.wait_for_line(" POST ")
            listing = await client.get("/admin/requests", headers={"authorization": "Bearer adm"})
    assert answer.headers.get_list("x-request-id") == [given]
    assert sim.fate("k").request_headers["x-request-id"] == given
    assert f" request_id={given} " in line
    (ended,) = listing.json()["recent"]
    assert ended["request_id"] == given and ended["id"] != given  # the admin's id stays its own


MALFORMED = [
    [(b"x-request-id", b"has space")],
    [(b"x-request-id", b"x" * 65)],
    [(b"x-request-id", b"")],
    [(b"x-request-id", b'quote"d')],
    [(b"x-request-id", b"caf\xc3\xa9")],
    [(b"x-request-id", b"one"), (b"x-request-id", b"two")],
]


@pytest.mark.parametrize("headers", MALFORMED, ids=["space", "65", "empty", "quote", "utf8", "two"])
async def test_a_malformed_or_missing_request_id_is_replaced_by_a_new_one(
    stack: Stack, access_log: AccessLog, headers: list[tuple[bytes, bytes]]
) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            replaced = await client.post(
                "/v1/chat/completions", json=CHAT, headers=[*headers, (b"x-sim-id", b"r")]
            )
            made = await client.post("/v1/chat/completions", json=CHAT, headers={"x-sim-id": "m"})
        lines = await access_log.wait_for(2)
    ids = [replaced.headers.get_list("x-request-id"), made.headers.get_list("x-request-id")]
    assert all(len(found) == 1 and re.fullmatch("[0-9a-f]{32}", found[0]) for found in ids)
    (first,), (second,) = ids
    assert first != second
    assert stack.sim.fate("r").request_headers["x-request-id"] == first  # one, never the client's
    assert stack.sim.fate("m").request_headers["x-request-id"] == second
    assert f" request_id={first} " in lines[0] and f" request_id={second} " in lines[1]


async def test_every_answer_carries_the_request_id_refusals_and_errors_too(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    keyed = await start_proxy(nursery, ProxyConfig(upstream=dead, api_keys=frozenset({"k"})))
    asks = [
        ("POST", "/v1/chat/completions", {}),  # 401: no key
        ("POST", "/v1/chat/completions", {"authorization": "Bearer k"}),  # 502: upstream dead
        ("PUT", "/v1/chat/completions", {"authorization": "Bearer k"}),  # 405
        ("GET", "/v1/%2e%2e/x", {"authorization": "Bearer k"}),  # 400: a dot segment
        ("GET", "/favicon.ico", {}),  # 404 outside the API
    ]
    answers = []
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=keyed) as client:
            for n, (method, path, headers) in enumerate(asks):
                ask = client.build_request(method, path, json=CHAT, headers=headers)
                ask.url = ask.url.copy_with(raw_path=path.encode())
                ask.headers["x-request-id"] = f"ask-{n}"
                answers.append(await client.send(ask))
        lines = await access_log.wait_for(len(asks))
    assert [a.status_code for a in answers] == [401, 502, 405, 400, 404]
    assert [a.headers.get_list("x-request-id") for a in answers] == [
        [f"ask-{n}"] for n in range(len(asks))
    ]
    for n, line in enumerate(lines):
        assert f" request_id=ask-{n} " in line


async def test_an_upstreams_own_request_id_reaches_the_client_renamed(
    nursery: trio.Nursery,
) -> None:
    def answer(received: Received) -> list[bytes]:
        body = b'{"choices":[]}'
        return [
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_up\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        ]

    upstream = ScriptedUpstream(answer)
    proxy = await start_proxy(nursery, ProxyConfig(upstream=await upstream.start(nursery)))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            got = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"x-request-id": "c1"}
            )
    assert got.headers.get_list("x-request-id") == ["c1"]
    assert got.headers.get_list("x-upstream-request-id") == ["req_up"]
    assert upstream.received[0].header(b"x-request-id") == b"c1"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_a_request_id_is_the_clients_only_when_short_and_visible(value: bytes) -> None:
    kept = request_id_of([(b"x-request-id", value)])
    if kept.encode() == value:
        assert 1 <= len(value) <= REQUEST_ID_MAX
        assert all(0x21 <= c <= 0x7E and c not in b'"(),;<>?[\\]{}' for c in value)
    else:
        assert re.fullmatch("[0-9a-f]{32}", kept)


@pytest.fixture
def attempt_log() -> Iterator[AccessLog]:
    handler = AccessLog()
    logger = logging.getLogger("trioproxy.attempt")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


async def test_each_failed_attempt_is_a_line_naming_its_upstream_and_reason(
    nursery: trio.Nursery, access_log: AccessLog, attempt_log: AccessLog
) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    failing = ScriptedUpstream(
        [b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\n{}"]
    )
    backup = SimUpstream()
    upstreams = (
        Upstream("main", await failing.start(nursery), None, ("m1",), ("dead", "backup")),
        Upstream("dead", dead, None, ("m2",)),
        Upstream("backup", f"{await start_sim(nursery, backup)}/v1", None, ("m3",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            answer = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"model": "m1"},
                headers={"x-request-id": "fb-1", "x-sim-id": "fb"},
            )
        first, second = await attempt_log.wait_for(2)
        (line,) = await access_log.wait_for(1)
    assert answer.status_code == 200 and backup.fate("fb").outcome == "completed"
    assert " attempt upstream=main status=500 reason=server_error then=dead " in first
    assert " attempt upstream=dead status=- reason=" in second and " then=backup " in second
    assert "request_id=fb-1" in first and "request_id=fb-1" in second
    assert " 200 outcome=completed " in line and " upstream=backup " in line
