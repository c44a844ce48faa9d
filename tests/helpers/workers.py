"""``trioproxy serve --workers 2`` as one server, and ways to put a connection
on the worker a test needs (the kernel otherwise chooses)."""

import json
import os
import pathlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from tests.helpers.cli import Running, run_cli
from tests.helpers.client import Client
from tests.helpers.proxy import start_sim
from trioproxy.conformance import RawClient, chat_body, free_port, request_bytes
from trioproxy.sim import SimUpstream

__all__ = [
    "ADMIN",
    "KEYS",
    "Server",
    "admin",
    "only_worker",
    "open_stream",
    "streams_on_both_workers",
    "two_workers",
    "worker_of",
]

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


async def admin(server: Server, method: str = "GET", target: str = "/admin/requests") -> Any:
    """One admin call on a connection of its own: any worker may answer it."""
    conn = await Client.open(server.port)
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
