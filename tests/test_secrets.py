"""Keys stay where only the server's user reads them, and ``/metrics`` can need one.

A worker's command line is ``/proc/PID/cmdline``, mode 0444: any local user
reads it. The workers of ``--workers N`` get their options through an
inherited memory file instead, and a key given as an option (so in the
parent's command line) is warned about once.
"""

import json
import os
import signal

import pytest
import trio

from tests.helpers import (
    CLI,
    Client,
    children,
    only_worker,
    run_cli,
    start_proxy,
    start_sim,
    worker_of,
)
from trioproxy.conformance import free_port
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.sim import SimUpstream

KEYS = {
    "api": "sk-client-in-argv",
    "admin": "admin-in-argv",
    "upstream": "sk-upstream-in-argv",
    "metrics": "metrics-in-argv",
}


async def test_workers_hold_no_key_in_their_command_line_yet_use_every_key(
    nursery: trio.Nursery,
) -> None:
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    port = free_port()
    args = ["serve", "--workers", "2", "--port", str(port), "--upstream", f"{upstream}/v1"]
    for name, key in KEYS.items():
        args += [f"--{name}-key", key]
    with trio.fail_after(60):
        async with run_cli(*args) as proxy:
            await proxy.wait_for(b"Running on", count=2)
            workers = children(proxy.process.pid)
            assert len(workers) == 2
            for pid in workers:
                argv = cmdline(pid)
                assert b"serve" in argv
                for key in KEYS.values():
                    assert key.encode() not in argv, argv
            # Each worker uses every key: the client's, the upstream's, the metrics' and
            # the admin's, on a connection it was made to accept.
            served: set[int] = set()
            for n, pid in enumerate(workers):
                async with only_worker(set(workers), pid):
                    conn = await Client.open(port)
                    status, _ = await conn.request("GET", "/health")  # accepted by pid
                assert status == 200
                await _every_key_on_one(conn, sim, f"r{n}", served)
            assert served == set(workers)
            proxy.process.send_signal(signal.SIGTERM)
            assert await proxy.process.wait() == 0
            log = (await proxy.drain()).decode()
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, log  # once, from the parent; never from a worker
    for variable in ("API_KEYS", "ADMIN_KEY", "UPSTREAM_KEY", "METRICS_KEY"):
        assert f"$TRIOPROXY_{variable}" in warnings[0]
    assert "Traceback" not in log
    assert not any(key in log for key in KEYS.values())


def cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return file.read()


async def _every_key_on_one(conn: Client, sim: SimUpstream, sim_id: str, served: set[int]) -> None:
    """Every key works on ``conn``; its worker goes into ``served``."""
    try:
        body = json.dumps({"model": f"sim-small;id={sim_id};tokens=3", "messages": []}).encode()
        status, answer = await conn.request("POST", "/v1/chat/completions", KEYS["api"], body)
        assert status == 200, answer
        assert sim.fate(sim_id).request_headers["authorization"] == f"Bearer {KEYS['upstream']}"
        status, _ = await conn.request("GET", "/metrics", KEYS["metrics"])
        assert status == 200
        status, answer = await conn.request("GET", "/admin/requests", KEYS["admin"])
        assert status == 200, answer
        recent = json.loads(answer)["recent"]
        (mine,) = [r for r in recent if r["client"].endswith(f":{conn.local_port}")]
        served.add(worker_of(mine["id"]))
    finally:
        await conn.aclose()


async def test_keys_from_variables_draw_no_warning() -> None:
    variables = {"TRIOPROXY_ADMIN_KEY": "admin-from-env", "TRIOPROXY_API_KEYS": "sk-env"}
    os.environ.update(variables)
    try:
        with trio.fail_after(30):
            # A real upstream's place: the simulator is a WARNING of its own.
            upstream = "http://127.0.0.1:1/v1"
            async with run_cli("serve", "--port", "0", "--upstream", upstream) as proxy:
                await proxy.wait_for(b"trioproxy relaying to")
                proxy.process.send_signal(signal.SIGTERM)
                assert await proxy.process.wait() == 0
                log = await proxy.drain()
    finally:
        for name in variables:
            os.environ.pop(name)
    assert b"WARNING" not in log, log.decode()


@pytest.mark.parametrize(
    ("metrics_key", "admin_key", "sent", "status"),
    [
        (None, None, "", 200),  # no key at all: Prometheus's way
        (None, "adm", "", 200),  # the admin key alone leaves scraping as it was
        ("met", None, "", 401),
        ("met", None, "wrong", 401),
        ("met", None, "met", 200),
        ("met", "adm", "adm", 200),  # the admin key opens /metrics too
        ("met", "adm", "wrong", 401),
    ],
)
async def test_metrics_key(
    nursery: trio.Nursery,
    metrics_key: str | None,
    admin_key: str | None,
    sent: str,
    status: int,
) -> None:
    config = ProxyConfig("http://127.0.0.1:9/v1", admin_key=admin_key, metrics_key=metrics_key)
    with trio.fail_after(10):
        origin = await start_proxy(nursery, config)
        conn = await Client.open(int(origin.rsplit(":", 1)[1]))
        got, body = await conn.request("GET", "/metrics", sent)
        await conn.aclose()
    assert got == status, body
    if status == 401:
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
        assert b"trioproxy_" not in body
    else:
        assert b"# HELP trioproxy_" in body


async def test_an_options_fd_set_by_hand_is_one_clear_line() -> None:
    env = os.environ | {"TRIOPROXY_OPTIONS_FD": "99"}
    with trio.fail_after(30):
        done = await trio.run_process(
            [*CLI, "serve", "--port", "0"], env=env, capture_stderr=True, check=False
        )
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(b"trioproxy: TRIOPROXY_OPTIONS_FD names no options"), line
