"""``GET /v1/models`` lists exactly what routing accepts, and a request that names no
model goes where the routing rules say, or is refused; never to the first upstream."""

import json
import logging
from collections.abc import Sequence

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import (
    AccessLog,
    Received,
    ScriptedUpstream,
    plain_answer,
    start_proxy,
    start_sim,
)
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.relay.models import routable_list
from trioproxy.proxy.upstream.routing import Router, Upstream
from trioproxy.sim import SimUpstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def _listing(*ids: str) -> bytes:
    return json.dumps(
        {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}
    ).encode()


def _lists_then_answers(listing: bytes, up: list[bool] | None = None) -> ScriptedUpstream:
    """An upstream that answers ``GET /models`` with ``listing`` (500 while ``up[0]`` is
    False) and anything else as :func:`plain_answer` does."""

    def answer(received: Received) -> Sequence[bytes]:
        if not received.target.endswith(b"/models"):
            return plain_answer(received)
        if up is not None and not up[0]:
            return [b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n"]
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        return [head % len(listing) + listing]

    return ScriptedUpstream(answer, then="next")


async def test_the_list_is_the_exact_names_then_what_a_wildcard_upstream_serves(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    """Before: the simulators' own sim-small and sim-large were listed (and then refused
    404), while gpt-4o, claude-x and the llama-* models were missing."""
    a, b = SimUpstream(), SimUpstream()
    local = _lists_then_answers(_listing("llama-3", "qwen-7b", "gpt-4o", "llama-4"))
    upstreams = (
        Upstream("a", f"{await start_sim(nursery, a)}/v1", None, ("gpt-4o",)),
        Upstream("b", f"{await start_sim(nursery, b)}/v1", None, ("claude-x",)),
        Upstream("local", await local.start(nursery), None, ("llama-*",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            models = (await client.get("/v1/models")).json()
            listed = [m["id"] for m in models["data"]]
            answers = {
                model: await client.post("/v1/chat/completions", json=CHAT | {"model": model})
                for model in [*listed, "sim-small", "qwen-7b"]
            }
            lines = await access_log.wait_for(1 + len(answers))
    assert models["object"] == "list"
    assert listed == ["gpt-4o", "claude-x", "llama-3", "llama-4"]
    assert models["data"][0] == {"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "a"}
    assert models["data"][2] == {"id": "llama-3", "object": "model"}  # the upstream's own
    assert {m: r.status_code for m, r in answers.items()} == dict.fromkeys(listed, 200) | {
        "sim-small": 404,
        "qwen-7b": 404,
    }
    served = {
        line.split(" model=")[1].split(" ")[0]: line.split(" upstream=")[1].split(" ")[0]
        for line in lines[1:]
    }
    assert served == {"gpt-4o": "a", "claude-x": "b", "llama-3": "local", "llama-4": "local",
                      "sim-small": "-", "qwen-7b": "-"}  # fmt: skip
    # Only the wildcard upstream was asked for its list.
    assert [r.target for r in local.received][:1] == [b"/v1/models"]
    assert " GET /v1/models 200 outcome=completed " in lines[0]


async def test_a_catch_all_lists_what_it_reports_except_names_routed_elsewhere(
    nursery: trio.Nursery,
) -> None:
    first, rest = SimUpstream(), SimUpstream()
    upstreams = (
        Upstream("first", f"{await start_sim(nursery, first)}/v1", None, ("sim-small",)),
        Upstream("rest", f"{await start_sim(nursery, rest)}/v1", None, ("*",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            data = (await client.get("/v1/models")).json()["data"]
    assert [(m["id"], m["owned_by"]) for m in data] == [
        ("sim-small", "first"),  # the exact name's upstream, not rest's sim-small
        ("sim-large", "trioproxy-sim"),  # rest's own object
    ]


async def test_a_wildcard_upstream_that_cannot_list_leaves_the_exact_names_and_one_warning(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Down, it is left out (its exact names stay), logged once while it stays out,
    and listed again once it answers."""
    caplog.set_level(logging.INFO, "trioproxy.upstream")
    sim = SimUpstream()
    up = [False]
    flaky = _lists_then_answers(_listing("llama-3"), up)
    gone = ScriptedUpstream()
    gone.close()  # nothing listens: connection refused
    upstreams = (
        Upstream("a", f"{await start_sim(nursery, sim)}/v1", None, ("gpt-4o",)),
        Upstream("flaky", await flaky.start(nursery), None, ("llama-*", "mixtral")),
        Upstream("gone", gone.url, None, ("qwen*",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            down = [(await client.get("/v1/models")).json() for _ in range(3)]
            up[0] = True
            back = (await client.get("/v1/models")).json()
    assert all([m["id"] for m in d["data"]] == ["gpt-4o", "mixtral"] for d in down)
    assert [m["id"] for m in back["data"]] == ["gpt-4o", "mixtral", "llama-3"]
    said = [r.getMessage() for r in caplog.records if r.name == "trioproxy.upstream"]
    left_out = [s for s in said if "left out of the model list" in s]
    assert sorted(s.split(" ")[1] for s in left_out) == ["flaky", "gone"], said  # once each
    assert "upstream flaky is in the model list again" in said
    assert all(r.levelno < logging.ERROR and not r.exc_info for r in caplog.records)


async def test_no_model_is_refused_400_when_routing_is_by_model_and_no_upstream_takes_any(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    """Before: it went to the first upstream, whatever that one serves."""
    sim = SimUpstream()
    url = f"{await start_sim(nursery, sim)}/v1"
    upstreams = (Upstream("a", url, None, ("gpt-4o",)), Upstream("b", url, None, ("l-*",)))
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            answers = [
                await client.post("/v1/chat/completions", json=CHAT),
                await client.post("/v1/chat/completions", json=CHAT | {"model": ""}),
                await client.get("/v1/files"),
            ]
            lines = await access_log.wait_for(3)
    for answer in answers:
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == "model_required" and "GET /v1/models" in error["message"]
    assert all(" 400 outcome=bad_request " in line for line in lines), lines
    assert sim.fates == []  # nothing went upstream


async def test_no_model_goes_to_the_upstream_that_takes_any_name(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    first, catch_all = SimUpstream(), SimUpstream()
    upstreams = (
        Upstream("first", f"{await start_sim(nursery, first)}/v1", None, ("gpt-4o",)),
        Upstream("any", f"{await start_sim(nursery, catch_all)}/v1", None, ("*",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            answer = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"x-sim-id": "none"}
            )
            line = await access_log.wait_for_line("outcome=")
    assert answer.status_code == 200
    assert catch_all.fate("none").outcome == "completed" and first.fates == []
    assert " upstream=any " in line


_NAMES = st.sampled_from(["m", "m-1", "m-2", "n", "n-1", "x", "xy"])
_PATTERNS = st.one_of(_NAMES, st.sampled_from(["m-*", "n*", "*", "x?", "[mn]-1"]))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(_PATTERNS, min_size=1, max_size=3, unique=True), min_size=1, max_size=4),
    st.lists(st.lists(_NAMES, max_size=5, unique=True), min_size=4, max_size=4),
)
def test_every_listed_model_routes_and_every_routable_one_is_listed(
    patterns: list[list[str]], reports: list[list[str]]
) -> None:
    """Over any routing rules and any reported lists: each listed name is routed (never
    404) to the upstream that claimed it by name or reported it; each exact name and each
    reported name routed back to its reporter is listed; exact names come first."""
    upstreams = tuple(
        Upstream(f"u{i}", f"http://127.0.0.1:{1000 + i}/v1", None, tuple(p))
        for i, p in enumerate(patterns)
    )
    router = Router(upstreams)
    lists = {
        u.name: {m: json.dumps({"id": m, "by": u.name}).encode() for m in reports[i]}
        for i, u in enumerate(router.wildcards())
    }
    listed = [
        (m["id"], m.get("owned_by") or m["by"])
        for m in json.loads(routable_list(router, lists))["data"]
    ]
    ids = [m for m, _ in listed]
    assert len(ids) == len(set(ids))
    exact = [m for u in upstreams for m in u.models if not any(c in m for c in "*?[")]
    assert ids[: len(set(exact))] == list(dict.fromkeys(exact))
    for model, owner in listed:
        routed = router.route(model)
        assert routed is not None
        assert routed.models == router.by_name[owner].models  # the claimer or a replica
    for upstream in router.wildcards():
        for model in lists[upstream.name]:
            if router.serves(upstream, model):
                assert model in ids
