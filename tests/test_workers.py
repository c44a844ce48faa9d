"""``trioproxy serve --workers 2`` seen as one server: the admin, the metrics,
the keys' limits and the replicas' balance hold across both workers.

Which worker serves a connection is the kernel's choice, so each test opens
connections until both workers have served some, and finds a request's
worker from its id (``<pid hex>-<n>``) or from its client port in the admin's
listing of recent requests.
"""

import json
import os
import pathlib
import re
import signal
from collections.abc import AsyncIterator

import pytest
import trio

from tests.helpers import (
    KEYS,
    Client,
    Server,
    admin,
    only_worker,
    open_stream,
    streams_on_both_workers,
    two_workers,
    worker_of,
)
from trioproxy.conformance import StopKind, chat_body


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: pathlib.Path) -> AsyncIterator[Server]:
    async with two_workers(nursery, tmp_path) as running:
        yield running


async def test_the_admin_lists_and_cancels_every_workers_requests(server: Server) -> None:
    with trio.fail_after(60):
        clients, first = await streams_on_both_workers(server)
        ids = {r["id"] for r in first}
        assert len(ids) == len(clients)
        # Every listing, from whichever worker answers it, shows all of them.
        for _ in range(6):
            listing = (await admin(server))["requests"]
            assert {r["id"] for r in listing} == ids
        # Replicas balanced on the whole server's counts: never more than one apart.
        by_upstream = [sum(r["upstream"] == u for r in first) for u in ("a", "b")]
        assert abs(by_upstream[0] - by_upstream[1]) <= 1, by_upstream
        for request_id in ids:
            answer = await admin(server, "DELETE", f"/admin/requests/{request_id}")
            assert answer == {"id": request_id, "outcome": "cancelled_by_admin"}
        fates = [await server.sim.wait_ended(f"s{n}") for n in range(len(clients))]
        assert all(f.outcome == "disconnected" for f in fates), fates
        for client in clients:
            await client.read_all()  # the proxy closed each client too
        after = await admin(server)
        assert after["requests"] == []
        assert {r["id"] for r in after["recent"]} >= ids
        assert {r["outcome"] for r in after["recent"]} == {"cancelled_by_admin"}


def completed(metrics: str) -> int:
    found = re.findall(r'trioproxy_requests_total\{[^}]*outcome="completed"[^}]*\} (\S+)', metrics)
    return int(sum(float(n) for n in found))


def tokens(metrics: str, kind: str) -> int:
    labels = f'kind="{kind}",model="sim-small",upstream="[ab]"'
    pattern = r"trioproxy_tokens_total\{" + labels + r"\} (\S+)"
    return int(sum(float(n) for n in re.findall(pattern, metrics)))


async def scrape(server: Server) -> str:
    conn = await Client.open(server.port)
    try:
        status, body = await conn.request("GET", "/metrics")
    finally:
        await conn.aclose()
    assert status == 200
    return body.decode()


async def test_every_scrape_counts_the_whole_server(server: Server) -> None:
    bob = KEYS["TP_BOB"]
    with trio.fail_after(60):
        usage = {"prompt": 0, "completion": 0}

        async def one() -> None:
            conn = await Client.open(server.port)
            body = chat_body(False)
            status, answer = await conn.request("POST", "/v1/chat/completions", bob, body)
            await conn.aclose()
            assert status == 200, answer
            for kind in usage:
                usage[kind] += json.loads(answer)["usage"][f"{kind}_tokens"]

        done = 0
        for worker in sorted(server.workers()):
            async with only_worker(server.workers(), worker), trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(one)
            done += 3
        recent = (await admin(server))["recent"]
        served_by = {worker_of(r["id"]) for r in recent if r["path"] == "/v1/chat/completions"}
        assert served_by == server.workers()
        for _ in range(6):  # whichever worker answers
            metrics = await scrape(server)
            assert completed(metrics) == done
            assert tokens(metrics, "prompt") == usage["prompt"]
            assert tokens(metrics, "completion") == usage["completion"]
            assert "trioproxy_open_requests 0.0" in metrics
        # A worker that dies takes no count with it: counters never go back.
        (victim, *_) = server.workers()
        os.kill(victim, signal.SIGKILL)
        await server.proxy.wait_for(b"started in place of worker %d" % victim)
        await server.proxy.wait_for(b"Running on", count=3)
        for _ in range(4):
            assert completed(await scrape(server)) == done


async def a_connection_on_another_worker(server: Server, worker: int) -> Client:
    """A keep-alive connection that a worker other than ``worker`` serves."""
    (other, *_) = server.workers() - {worker}
    async with only_worker(server.workers(), other):
        conn = await Client.open(server.port)
        status, _ = await conn.request("GET", "/health")  # answered: accepted by ``other``
    assert status == 200
    return conn


async def test_a_keys_limit_holds_across_workers_and_a_stop_frees_it_at_once(
    server: Server,
) -> None:
    alice = KEYS["TP_ALICE"]
    with trio.fail_after(60):
        stream = await open_stream(server, alice, "alice-1")
        (held,) = (await admin(server))["requests"]
        # A connection that the other worker serves, found with bob's key.
        other = await a_connection_on_another_worker(server, worker_of(held["id"]))
        # alice's one slot is taken in the first worker: the second refuses her.
        status, body = await other.request("POST", "/v1/chat/completions", alice, chat_body(False))
        assert status == 429, body
        assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
        # She presses stop and asks again at once, in the other worker: served.
        stream.stop(StopKind.RST)
        status, body = await other.request("POST", "/v1/chat/completions", alice, chat_body(False))
        assert status == 200, body
        assert (await server.sim.wait_ended("alice-1")).outcome == "disconnected"
        await other.aclose()
