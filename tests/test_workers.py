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
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import h11
import pytest
import trio

from tests.conftest import start_sim
from tests.test_cli import Running, run_cli
from trioproxy.conformance import RawClient, StopKind, chat_body, free_port, request_bytes
from trioproxy.sim import SimUpstream

ADMIN = "admin-key-for-tests"
KEYS = {"TP_ALICE": "sk-alice", "TP_BOB": "sk-bob", "TP_ADMIN": ADMIN}
CONFIG = """
[server]
workers = 2
grace_period_s = 2
[auth]
admin_key_env = "TP_ADMIN"
[[upstream]]
name = "a"
url = "{sim}/v1"
models = ["sim-small"]
[[upstream]]
name = "b"
url = "{sim}/v1"
models = ["sim-small"]
[[key]]
name = "alice"
key_env = "TP_ALICE"
max_concurrent = 1
[[key]]
name = "bob"
key_env = "TP_BOB"
"""


@dataclass
class Server:
    proxy: Running
    port: int
    sim: SimUpstream

    def workers(self) -> set[int]:
        with open(f"/proc/{self.proxy.process.pid}/task/{self.proxy.process.pid}/children") as f:
            return {int(pid) for pid in f.read().split()}


@asynccontextmanager
async def two_workers(nursery: trio.Nursery, tmp_path: pathlib.Path) -> AsyncIterator[Server]:
    """``trioproxy serve --workers 2`` with an admin key, two replicas and two client keys."""
    sim = SimUpstream()
    config = tmp_path / "trioproxy.toml"
    config.write_text(CONFIG.format(sim=await start_sim(nursery, sim)))
    port = free_port()
    os.environ.update(KEYS)
    try:
        async with run_cli("serve", "--config", str(config), "--port", str(port)) as proxy:
            with trio.fail_after(30):
                await proxy.wait_for(b"Running on", count=2)
            yield Server(proxy, port, sim)
            proxy.process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                log = await proxy.drain()
                assert await proxy.process.wait() == 0
            assert b"Traceback" not in log, log.decode()
    finally:
        for name in KEYS:
            os.environ.pop(name, None)


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: pathlib.Path) -> AsyncIterator[Server]:
    async with two_workers(nursery, tmp_path) as running:
        yield running


class Conn:
    """One keep-alive connection, spoken with h11: it stays with one worker."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> "Conn":
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    @property
    def local_port(self) -> int:
        return int(self.stream.socket.getsockname()[1])

    async def request(
        self, method: str, target: str, key: str = "", body: bytes = b""
    ) -> tuple[int, bytes]:
        headers = [("host", "localhost"), ("content-length", str(len(body)))]
        if key:
            headers.append(("authorization", f"Bearer {key}"))
        for message in (
            h11.Request(method=method, target=target, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            await self.stream.send_all(self._h11.send(message) or b"")
        status, answer = 0, b""
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(await self.stream.receive_some())
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                answer += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._h11.start_next_cycle()
                return status, answer

    async def aclose(self) -> None:
        await self.stream.aclose()


async def admin(server: Server, method: str = "GET", target: str = "/admin/requests") -> Any:
    """One admin call on a connection of its own: any worker may answer it."""
    conn = await Conn.open(server.port)
    try:
        status, body = await conn.request(method, target, ADMIN)
    finally:
        await conn.aclose()
    assert status == 200, (status, body)
    return json.loads(body)


def worker_of(request_id: str) -> int:
    return int(request_id.split("-")[0], 16)


async def open_stream(server: Server, key: str, sim_id: str) -> RawClient:
    client = await RawClient.connect("127.0.0.1", server.port)
    body = chat_body(True)
    headers = {"authorization": f"Bearer {key}", "x-sim-id": sim_id, "x-sim-tokens": "100000"}
    await client.send(request_bytes("POST", "/v1/chat/completions", body, headers))
    await client.read_until(b"data: ")
    return client


async def streams_on_both_workers(server: Server) -> tuple[list[RawClient], list[dict[str, str]]]:
    """Two streams held on each worker; the admin's listing of them."""
    clients: list[RawClient] = []
    for worker in sorted(server.workers()):
        async with only_worker(server.workers(), worker):
            for _ in range(2):
                clients.append(await open_stream(server, KEYS["TP_BOB"], f"s{len(clients)}"))
    listing = (await admin(server))["requests"]
    assert {worker_of(r["id"]) for r in listing} == server.workers()
    return clients, listing


@asynccontextmanager
async def only_worker(workers: set[int], worker: int) -> AsyncIterator[None]:
    """Every worker but ``worker`` stopped (SIGSTOP) while inside: a connection
    opened and answered inside is ``worker``'s for good. Which worker takes a
    connection is otherwise the kernel's choice: it wakes every worker and the
    first to run takes it, and a busy machine gave 60 in a row to one worker.
    Inside, call nothing that asks the other workers (the admin's listing)."""
    others = workers - {worker}
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


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
    conn = await Conn.open(server.port)
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
            conn = await Conn.open(server.port)
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


async def a_connection_on_another_worker(server: Server, worker: int) -> Conn:
    """A keep-alive connection that a worker other than ``worker`` serves."""
    (other, *_) = server.workers() - {worker}
    async with only_worker(server.workers(), other):
        conn = await Conn.open(server.port)
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
