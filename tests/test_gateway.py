"""What a drop-in gateway needs, on real sockets: routing, keys, admin, metrics, usage,
heartbeats, CORS, fallback."""

import json
import logging
import pathlib
import re
import time

import httpx
import pytest
import trio
from trio.testing import MockClock

from tests.helpers import AccessLog, ScriptedUpstream, start_proxy, start_sim
from trioproxy.conformance import RawClient, StopKind, free_port, request_bytes
from trioproxy.proxy.admin.metrics import Metrics
from trioproxy.proxy.core.record import Outcome, RequestRecord
from trioproxy.proxy.gateway.config import ClientKey, ProxyConfig
from trioproxy.proxy.upstream.routing import Upstream
from trioproxy.server import hypercorn_config, serve_app
from trioproxy.sim import SimUpstream
from trioproxy.sim.render import Render

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


async def two_upstreams(
    nursery: trio.Nursery, **config: object
) -> tuple[str, SimUpstream, SimUpstream]:
    a, b = SimUpstream(), SimUpstream()
    url_a, url_b = await start_sim(nursery, a), await start_sim(nursery, b)
    upstreams = (
        Upstream("a", f"{url_a}/v1", "sk-a", ("alpha", "a-*")),
        Upstream("b", f"{url_b}/v1", None, ("beta",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams, **config))  # type: ignore[arg-type]
    return proxy, a, b


async def test_routes_by_model_and_merges_model_lists(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    proxy, a, b = await two_upstreams(nursery)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            glob = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"model": "a-mini"},
                headers={"x-sim-id": "1", "authorization": "Bearer mine"},
            )
            exact = await client.post(
                "/v1/chat/completions", json=CHAT | {"model": "beta"}, headers={"x-sim-id": "2"}
            )
            unknown = await client.post("/v1/chat/completions", json=CHAT | {"model": "gamma"})
            models = await client.get("/v1/models")
    assert glob.status_code == exact.status_code == 200
    assert (
        a.fate("1").outcome == "completed"
        and a.fate("1").request_headers["authorization"] == "Bearer sk-a"
    )
    assert (
        b.fate("2").outcome == "completed"
        and b.fate("2").request_headers.get("authorization") is None
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    # What routing accepts: the exact names; the simulator's own names match no glob of a's.
    assert [m["id"] for m in models.json()["data"]] == ["alpha", "beta"]
    line = await access_log.wait_for_line("model=a-mini")
    assert "upstream=a" in line


async def test_client_keys(
    nursery: trio.Nursery, access_log: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    sim = SimUpstream()
    proxy = await start_proxy(
        nursery,
        ProxyConfig(
            upstream=f"{await start_sim(nursery, sim)}/v1",
            api_keys=frozenset({"sk-client-1", "sk-client-2"}),
        ),
    )
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            none = await client.post("/v1/chat/completions", json=CHAT)
            wrong = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-client-3"}
            )
            right = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-client-2"}
            )
            anthropic_style = await client.post(
                "/v1/messages", json=CHAT | {"max_tokens": 3}, headers={"x-api-key": "sk-client-1"}
            )
        await access_log.wait_for(2)
    assert none.status_code == wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == anthropic_style.status_code == 200
    assert not any("sk-client" in line for line in access_log.lines)
    assert not any("sk-client" in r.getMessage() for r in caplog.records)


async def test_admin_lists_and_cancels_a_request(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    sim = SimUpstream()
    proxy = await start_proxy(
        nursery, ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1", admin_key="adm")
    )
    admin = {"authorization": "Bearer adm"}
    with trio.fail_after(15):
        async with (
            httpx.AsyncClient(base_url=proxy, timeout=10) as client,
            trio.open_nursery() as n,
        ):
            result: dict[str, object] = {}

            async def long_stream() -> None:
                async with client.stream(
                    "POST",
                    "/v1/chat/completions",
                    json=CHAT | {"model": "m", "stream": True},
                    headers={
                        "x-sim-id": "long",
                        "x-sim-tokens": "100000",
                        "x-sim-interval": "0.01",
                    },
                ) as r:
                    try:
                        result["body"] = b"".join([chunk async for chunk in r.aiter_raw()])
                    except httpx.HTTPError as exc:
                        result["client"] = type(exc).__name__

            n.start_soon(long_stream)
            await sim.fate("long").wait_progress(tokens=3)
            denied = await client.get("/admin/requests")
            listing = (await client.get("/admin/requests", headers=admin)).json()["requests"]
            (entry,) = listing
            asked_at = time.monotonic()
            cancelled = await client.delete(f"/admin/requests/{entry['id']}", headers=admin)
            fate = await sim.wait_ended("long")
            assert fate.ended_at is not None
            ms = (fate.ended_at - asked_at) * 1000
            print(f"admin cancel: upstream closed {ms:.2f} ms after the DELETE was sent")
            assert ms < 250  # generous; the figure is printed
            missing = await client.delete("/admin/requests/nope", headers=admin)
        line = await access_log.wait_for_line("cancelled_by_admin")
    assert denied.status_code == 401
    assert entry["model"] == "m" and entry["phase"] == "streaming" and entry["bytes"] > 0
    assert cancelled.status_code == 200 and missing.status_code == 404
    assert fate.outcome == "disconnected"
    # The client is told why its stream ends: an SSE error event, then a proper end.
    body = result["body"]
    assert isinstance(body, bytes) and b'"code": "cancelled"' in body.rsplit(b"event: error", 1)[1]
    assert " 200 outcome=cancelled_by_admin phase=streaming" in line  # the status it got


async def test_metrics_count_outcomes_and_stop_propagation(nursery: trio.Nursery) -> None:
    sim = SimUpstream()
    proxy = await start_proxy(nursery, ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1"))
    usage = {"stream_options": {"include_usage": True}}
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=proxy, timeout=10) as client:
            await client.post(
                "/v1/chat/completions",
                json=CHAT | {"model": "m", "stream": True} | usage,
                headers={"x-sim-tokens": "9"},
            )
            async with client.stream(
                "POST",
                "/v1/chat/completions",
                json=CHAT | {"model": "m", "stream": True},
                headers={"x-sim-id": "stop", "x-sim-tokens": "100000", "x-sim-interval": "0.01"},
            ) as r:
                async for _ in r.aiter_raw():
                    break
            await sim.wait_ended("stop")
            text = ""
            while "trioproxy_stop_propagation_seconds_count 1.0" not in text:
                text = (await client.get("/metrics")).text  # the stopped request ends just after
    route = 'route="/v1/chat/completions",upstream="default"'  # labels come sorted
    assert f'trioproxy_requests_total{{model="m",outcome="completed",{route}}} 1.0' in text
    assert f'trioproxy_requests_total{{model="m",outcome="client_closed",{route}}} 1.0' in text
    assert 'trioproxy_tokens_total{kind="completion",model="m",upstream="default"} 9.0' in text
    assert 'trioproxy_client_stops_total{phase="streaming"} 1.0' in text
    assert 'trioproxy_upstream_inflight_requests{upstream="default"} 0.0' in text
    assert "trioproxy_relayed_events_total" in text and "trioproxy_open_requests" in text


def test_model_labels_are_bounded() -> None:
    metrics = Metrics(models=frozenset({"gpt-4o"}))
    for i in range(300):
        record = RequestRecord("POST", f"/v1/x{i}")
        record.model = f"model-{i}"
        record.end(Outcome.COMPLETED, 200)
        metrics.finished(record)
    totals = [line for line in metrics.exposition().decode().splitlines() if "_total{" in line]
    assert sum('model="model-' in line for line in totals) == 100  # the rest: "other"
    assert 'model="other",outcome="completed",route="/v1/other",upstream="-"} 200.0' in "".join(
        totals
    )


async def test_usage_of_completed_and_stopped_streams(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    sim = SimUpstream()
    proxy = await start_proxy(nursery, ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1"))
    body = CHAT | {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=proxy, timeout=10) as client:
            await client.post("/v1/chat/completions", json=body, headers={"x-sim-tokens": "9"})
            completed = await access_log.wait_for_line("outcome=completed")
            async with client.stream(
                "POST",
                "/v1/chat/completions",
                json=body,
                headers={"x-sim-tokens": "100000", "x-sim-interval": "0.01"},
            ) as r:
                async for _ in r.aiter_raw():
                    break
            stopped = await access_log.wait_for_line("outcome=client_closed")
            await client.post("/v1/messages", json=CHAT | {"model": "m", "max_tokens": 4})
            json_answer = await access_log.wait_for_line("/v1/messages")
    assert 'usage={"prompt_tokens":8,"completion_tokens":9,"total_tokens":17}' in completed
    assert "events=13 " in completed
    assert "usage=none" in stopped and "phase=streaming" in stopped  # not estimated
    assert 'usage={"input_tokens":8,"output_tokens":4}' in json_answer


async def test_heartbeats_while_the_model_thinks(
    nursery: trio.Nursery, idle_clock: MockClock
) -> None:
    """A beat every 15 s of a 50 s silence: three, on virtual time."""
    sim = SimUpstream()
    proxy = await start_proxy(
        nursery, ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1", heartbeat_s=15)
    )
    thinks = {"x-sim-id": "hb", "x-sim-first-token-delay": "50", "x-sim-tokens": "3"}
    with trio.fail_after(100):
        async with httpx.AsyncClient(base_url=proxy, timeout=None) as client:
            response = await client.post(
                "/v1/chat/completions", json=CHAT | {"model": "m", "stream": True}, headers=thinks
            )
    beats = response.content.count(b": keep-alive\n\n")
    assert beats == 3
    assert response.content.replace(b": keep-alive\n\n", b"") == Render("chat", "m", "hb").stream(3)


async def test_cors_preflight_and_marked_answers(nursery: trio.Nursery) -> None:
    sim = SimUpstream()
    proxy = await start_proxy(
        nursery,
        ProxyConfig(
            upstream=f"{await start_sim(nursery, sim)}/v1", cors_origins=("https://chat.example",)
        ),
    )
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            preflight = await client.options(
                "/v1/chat/completions",
                headers={
                    "origin": "https://chat.example",
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization, content-type",
                },
            )
            allowed = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"model": "m"},
                headers={"origin": "https://chat.example"},
            )
            other = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"model": "m"},
                headers={"origin": "https://evil.example"},
            )
            refused = await client.options(
                "/v1/chat/completions",
                headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
            )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://chat.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert allowed.headers["access-control-allow-origin"] == "https://chat.example"
    assert "access-control-allow-origin" not in other.headers
    assert sim.fates and all(f.path == "/v1/chat/completions" for f in sim.fates)


async def test_fallback_before_any_byte_and_never_after(nursery: trio.Nursery) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    failing, backup = SimUpstream(), SimUpstream()
    url_failing, url_backup = await start_sim(nursery, failing), await start_sim(nursery, backup)
    upstreams = (
        Upstream("dead", dead, None, ("m1",), ("backup",)),
        Upstream("failing", f"{url_failing}/v1", None, ("m2",), ("backup",)),
        Upstream("backup", f"{url_backup}/v1", None, ("m3",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=proxy, timeout=10) as client:
            unreachable = await client.post(
                "/v1/chat/completions", json=CHAT | {"model": "m1"}, headers={"x-sim-id": "u"}
            )
            five_hundred = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"model": "m2"},
                headers={"x-sim-id": "f", "x-sim-fail": "500"},
            )
            cut = await client.post(
                "/v1/chat/completions",
                json=CHAT | {"model": "m2", "stream": True},
                headers={"x-sim-id": "c", "x-sim-fail": "drop", "x-sim-tokens": "3"},
            )
    assert unreachable.status_code == 200 and backup.fate("u").outcome == "completed"
    # The backup got the request the failing upstream answered 500 (its sim fails too: the
    # header travels along), and the client gets the backup's answer.
    assert failing.fate("f").outcome == "completed" and backup.fate("f").started.is_set()
    assert five_hundred.status_code == 500
    # A stream that broke after bytes reached the client is not retried anywhere.
    assert json.loads(cut.content.split(b"\n\n")[-2].split(b"data: ")[1])["error"]
    assert not backup.fate("c").started.is_set()


async def test_early_headers_mode_answers_at_once_and_reports_errors_in_stream(
    nursery: trio.Nursery, idle_clock: MockClock
) -> None:
    """Beats every 15 s while the upstream takes 40 s to answer: two, on virtual time."""
    sim = SimUpstream()
    proxy = await start_proxy(
        nursery,
        ProxyConfig(
            upstream=f"{await start_sim(nursery, sim)}/v1", heartbeat_s=15, early_headers=True
        ),
    )
    body = CHAT | {"model": "m", "stream": True}
    with trio.fail_after(100):
        async with httpx.AsyncClient(base_url=proxy, timeout=None) as client:
            started = trio.current_time()
            async with client.stream(
                "POST",
                "/v1/chat/completions",
                json=body,
                headers={"x-sim-id": "slow", "x-sim-headers-delay": "40", "x-sim-tokens": "3"},
            ) as r:
                headers_after = trio.current_time() - started
                content = await r.aread()
            failed = await client.post(
                "/v1/chat/completions",
                json=body,
                headers={"x-sim-fail": "500", "x-sim-headers-delay": "0.25"},
            )
    assert r.status_code == 200 and headers_after < 1  # long before the upstream's 40 s
    assert content.count(b": keep-alive\n\n") == 2
    assert content.replace(b": keep-alive\n\n", b"") == Render("chat", "m", "slow").stream(3)
    assert failed.status_code == 200  # the trade-off: the error arrives in the stream
    error = json.loads(failed.content.split(b"event: error\ndata: ")[1])
    assert "upstream answered 500" in error["error"]["message"]


async def test_client_credentials_never_reach_the_upstream(nursery: trio.Nursery) -> None:
    """The proxy's own keys stay with the proxy; an upstream key replaces every credential."""
    own, keyed = SimUpstream(), SimUpstream()
    upstreams = (
        Upstream("own", f"{await start_sim(nursery, own)}/v1", None, ("m-own",)),
        Upstream("keyed", f"{await start_sim(nursery, keyed)}/v1", "sk-up", ("m-keyed",)),
    )
    config = ProxyConfig(upstream="", upstreams=upstreams, api_keys=frozenset({"sk-proxy"}))
    proxy = await start_proxy(nursery, config)
    sent = {"authorization": "Bearer sk-proxy", "x-api-key": "sk-proxy", "api-key": "sk-proxy"}
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            for model, sim_id in (("m-own", "own"), ("m-keyed", "keyed")):
                response = await client.post(
                    "/v1/chat/completions",
                    json=CHAT | {"model": model},
                    headers=sent | {"x-sim-id": sim_id},
                )
                assert response.status_code == 200
    seen_own = own.fate("own").request_headers
    seen_keyed = keyed.fate("keyed").request_headers
    assert not {"authorization", "x-api-key", "api-key"} & seen_own.keys()
    assert seen_keyed["authorization"] == "Bearer sk-up"
    assert not {"x-api-key", "api-key"} & seen_keyed.keys()


async def test_cors_any_origin_answers_a_star_and_upstream_cors_is_dropped(
    nursery: trio.Nursery,
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
        b"access-control-allow-origin: https://upstream.example\r\n"
        b"access-control-allow-credentials: true\r\n\r\n{}"
    )

    upstream = ScriptedUpstream([answer], then="next")
    port = upstream.port
    await upstream.start(nursery)
    star = await start_proxy(
        nursery, ProxyConfig(upstream=f"http://127.0.0.1:{port}/v1", cors_origins=("*",))
    )
    listed = await start_proxy(
        nursery,
        ProxyConfig(upstream=f"http://127.0.0.1:{port}/v1", cors_origins=("https://a.example",)),
    )
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            null = await client.get(f"{star}/v1/models", headers={"origin": "null"})
            other = await client.get(f"{star}/v1/models", headers={"origin": "https://b.example"})
            ok = await client.get(f"{listed}/v1/models", headers={"origin": "https://a.example"})
            no = await client.get(f"{listed}/v1/models", headers={"origin": "https://b.example"})
    for response in (null, other):
        assert response.headers.get_list("access-control-allow-origin") == ["*"]
        assert "access-control-allow-credentials" not in response.headers
    assert ok.headers.get_list("access-control-allow-origin") == ["https://a.example"]
    assert "access-control-allow-credentials" not in ok.headers
    assert "access-control-allow-origin" not in no.headers


def test_grafana_dashboard_plots_only_metrics_the_proxy_exports() -> None:
    path = pathlib.Path(__file__).parents[1] / "docs" / "grafana" / "trioproxy-dashboard.json"
    dashboard = json.loads(path.read_text())
    exported = {family.name for family in Metrics().registry.collect()}
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"trioproxy_[a-z_]+", target["expr"])
    }
    assert len(dashboard["panels"]) >= 6
    # a family NAME is plotted as NAME_total (counters) or NAME_bucket (histograms)
    assert {re.sub(r"_(total|bucket)$", "", name) for name in used} <= exported


async def test_replicas_balance_on_requests_in_flight_and_stops_free_them_at_once(
    nursery: trio.Nursery,
) -> None:
    a, b = SimUpstream(), SimUpstream()
    upstreams = (
        Upstream("a", f"{await start_sim(nursery, a)}/v1", None, ("m",)),
        Upstream("b", f"{await start_sim(nursery, b)}/v1", None, ("m",)),
    )
    proxy = await start_proxy(nursery, ProxyConfig(upstream="", upstreams=upstreams))
    host, port = proxy.removeprefix("http://").rsplit(":", 1)
    long = {"x-sim-tokens": "100000", "x-sim-interval": "0.05"}

    async def open_stream(sim_id: str) -> RawClient:
        client = await RawClient.connect(host, int(port))
        body = json.dumps(CHAT | {"model": "m", "stream": True}).encode()
        headers = long | {"x-sim-id": sim_id}
        await client.send(request_bytes("POST", "/v1/chat/completions", body, headers))
        await client.read_until(b"data: ")
        return client

    def where(sim_id: str) -> str:
        return "a" if any(f.sim_id == sim_id for f in a.fates) else "b"

    with trio.fail_after(20):
        first = [await open_stream(f"s{i}") for i in range(4)]
        placed = [where(f"s{i}") for i in range(4)]
        on_a = [c for i, c in enumerate(first) if placed[i] == "a"]
        for client in on_a:  # a user stops both streams on a ...
            client.stop(StopKind.FIN)
        for i in range(4):
            if placed[i] == "a":
                await a.wait_ended(f"s{i}")
        again = [await open_stream(f"t{i}") for i in range(2)]  # ... and asks again
        for client in first + again:
            client.close()
    assert sorted(placed) == ["a", "a", "b", "b"]
    assert [where("t0"), where("t1")] == ["a", "a"]  # a's slots were free at once


async def test_a_failing_replica_is_skipped_for_a_cool_down_and_comes_back(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, idle_clock: MockClock
) -> None:
    """At the default cool-down (10 s), on virtual time."""
    caplog.set_level(logging.INFO, "trioproxy.balance")
    live, revived = SimUpstream(), SimUpstream()
    port = free_port()
    upstreams = (
        Upstream("dead", f"http://127.0.0.1:{port}/v1", None, ("m",)),
        Upstream("live", f"{await start_sim(nursery, live)}/v1", None, ("m",)),
    )
    config = ProxyConfig(upstream="", upstreams=upstreams)
    proxy = await start_proxy(nursery, config)
    chat = CHAT | {"model": "m"}
    with trio.fail_after(config.cooldown_s * 3):
        async with httpx.AsyncClient(base_url=proxy, timeout=None) as client:
            answers = [await client.post("/v1/chat/completions", json=chat) for _ in range(3)]
            await trio.sleep(config.cooldown_s * 0.9)  # still cooling down
            cooling = await client.post("/v1/chat/completions", json=chat)
            await trio.sleep(config.cooldown_s * 0.2)  # the cool-down is over, the replica back
            await nursery.start(serve_app, revived, hypercorn_config("127.0.0.1", port))
            back = await client.post("/v1/chat/completions", json=chat)
    assert all(r.status_code == 200 for r in [*answers, cooling, back])
    assert len(live.fates) == 4 and len(revived.fates) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "trioproxy.balance"]
    assert sum("upstream dead unreachable" in m for m in messages) == 1
    assert "upstream dead reachable again" in messages


async def test_a_stop_frees_its_key_slot_at_once(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    """max_concurrent = 1: a user stops a stream and asks again at once: no 429."""
    sim = SimUpstream()
    alice = ClientKey("alice", "sk-alice-123", max_concurrent=1)
    config = ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1", client_keys=(alice,))
    proxy = await start_proxy(nursery, config)
    host, port = proxy.removeprefix("http://").rsplit(":", 1)
    auth = {"authorization": "Bearer sk-alice-123"}
    long = {"x-sim-tokens": "100000", "x-sim-interval": "0.02"}
    body = json.dumps(CHAT | {"model": "m", "stream": True}).encode()
    with trio.fail_after(20):
        streaming = await RawClient.connect(host, int(port))
        headers = auth | long | {"x-sim-id": "first"}
        await streaming.send(request_bytes("POST", "/v1/chat/completions", body, headers))
        await streaming.read_until(b"data: ")
        async with httpx.AsyncClient(base_url=proxy) as client:
            refused = await client.post("/v1/chat/completions", json=CHAT, headers=auth)
            streaming.stop(StopKind.FIN)
            await sim.wait_ended("first")  # the upstream saw the stop: the slot is free
            again = await client.post(
                "/v1/chat/completions", json=CHAT, headers=auth | {"x-sim-id": "again"}
            )
        streaming.close()
        line = await access_log.wait_for_line("outcome=client_closed")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert again.status_code == 200 and sim.fate("again").outcome == "completed"
    assert "key=alice" in line
    assert not any("sk-alice-123" in entry for entry in access_log.lines)


async def test_requests_per_minute_per_key(nursery: trio.Nursery) -> None:
    sim = SimUpstream()
    bob = ClientKey("bob", "sk-bob", per_minute=2)
    config = ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1", client_keys=(bob,))
    proxy = await start_proxy(nursery, config)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            auth = {"authorization": "Bearer sk-bob"}
            answers = [
                await client.post("/v1/chat/completions", json=CHAT, headers=auth) for _ in range(3)
            ]
            text = (await client.get("/metrics")).text
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert 1 <= int(answers[2].headers["retry-after"]) <= 60
    assert "sk-bob" not in text
    assert 'trioproxy_key_limited_total{key="bob"} 1.0' in text.splitlines()
