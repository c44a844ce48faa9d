"""The ``trioproxy`` command, run as users run it: separate processes on real ports."""

import os
import signal

import httpx
import trio

from tests.helpers import CLI, children, run_cli
from trioproxy.conformance import RawClient, StopKind, chat_body, free_port, request_bytes


async def test_serve_relays_and_a_stop_closes_the_upstream() -> None:
    with trio.fail_after(60):
        async with run_cli("sim", "--port", "0") as sim:
            upstream = await sim.origin()
            async with run_cli("serve", "--upstream", f"{upstream}/v1", "--port", "0") as proxy:
                origin = await proxy.origin()
                async with httpx.AsyncClient(base_url=origin) as client:
                    whole = await client.post(
                        "/v1/chat/completions",
                        headers={"x-sim-tokens": "5"},
                        json={"model": "m", "stream": True, "messages": []},
                    )
                host, port = origin.removeprefix("http://").rsplit(":", 1)
                stopped = await RawClient.connect(host, int(port))
                await stopped.send(
                    request_bytes(
                        "POST",
                        "/v1/chat/completions",
                        chat_body(True),
                        {"x-sim-id": "cli", "x-sim-tokens": "100000"},
                    )
                )
                await stopped.read_until(b"data: ", count=3)
                stopped.stop(StopKind.RST)
                await proxy.wait_for(b" 499 outcome=client_closed phase=streaming")
                async with httpx.AsyncClient(base_url=upstream) as client:
                    fates = (await client.get("/sim/fates")).json()["fates"]
                proxy.process.send_signal(signal.SIGINT)
                log = await proxy.drain()
                assert await proxy.process.wait() == 0
    assert whole.content.endswith(b"data: [DONE]\n\n")
    (fate,) = [f for f in fates if f["sim_id"] == "cli"]
    assert fate["outcome"] == "disconnected"
    assert b"Traceback" not in log and b"ERROR" not in log


async def test_serve_without_upstream_says_it_uses_the_simulator() -> None:
    with trio.fail_after(30):
        async with run_cli("serve", "--port", "0") as proxy:
            line = await proxy.wait_for(b"simulated upstream")
            origin = await proxy.origin()
            async with httpx.AsyncClient(base_url=origin) as client:
                models = await client.get("/v1/models")
    assert b"no upstream configured" in line
    assert models.json()["data"][0]["id"] == "sim-small"


async def test_demo_prints_a_closed_upstream_for_every_phase() -> None:
    with trio.fail_after(60):
        result = await trio.run_process([*CLI, "demo"], capture_stdout=True, capture_stderr=True)
    out = result.stdout.decode()
    rows = [
        line.split()
        for line in out.splitlines()
        if line.split()[:1]
        and line.split()[0]
        in {"upload", "waiting_headers", "waiting_first_byte", "streaming", "non_streaming"}
    ]
    assert len(rows) == 10, out
    assert all(row[2] == "closed" or row[2:4] == ["never", "opened"] for row in rows), out
    assert b"Traceback" not in result.stderr


async def test_sigterm_drains_then_stops_what_is_left() -> None:
    with trio.fail_after(60):
        async with run_cli("sim", "--port", "0") as sim:
            upstream = await sim.origin()
            async with run_cli(
                "serve", "--upstream", f"{upstream}/v1", "--port", "0", "--grace-period", "1.5"
            ) as proxy:
                origin = await proxy.origin()
                host, port = origin.removeprefix("http://").rsplit(":", 1)
                clients = []
                for sim_id, tokens in (("short", "40"), ("long", "100000")):
                    client = await RawClient.connect(host, int(port))
                    await client.send(
                        request_bytes(
                            "POST",
                            "/v1/chat/completions",
                            chat_body(True),
                            {"x-sim-id": sim_id, "x-sim-tokens": tokens, "x-sim-interval": "0.02"},
                        )
                    )
                    await client.read_until(b"data: ")
                    clients.append(client)
                proxy.process.send_signal(signal.SIGTERM)
                short, long = clients
                await short.read_all()  # finishes within the grace period
                await long.read_all()  # cut when the grace period ends
                assert await proxy.process.wait() == 0
                log = await proxy.drain()
                async with httpx.AsyncClient(base_url=upstream) as http:
                    fates = {f["sim_id"]: f for f in (await http.get("/sim/fates")).json()["fates"]}
    assert short.body.endswith(b"data: [DONE]\n\n")
    assert b"[DONE]" not in long.received
    # Cut at the grace period's end, it is told why: an SSE error event, then the end.
    assert b'"code": "shutting_down"' in long.received.rsplit(b"event: error\n", 1)[1]
    assert fates["short"]["outcome"] == "completed"
    assert fates["long"]["outcome"] == "disconnected"
    assert b"outcome=shutdown" in log and b"Traceback" not in log


async def test_workers_share_one_port() -> None:
    with trio.fail_after(60):
        port = free_port()
        async with run_cli("serve", "--port", str(port), "--workers", "2") as proxy:
            await proxy.wait_for(b"trioproxy relaying to", count=2)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                try:
                    answers = [await client.get("/health") for _ in range(4)]
                except httpx.ReadTimeout:
                    proxy.process.kill()
                    raise AssertionError((await proxy.drain()).decode()) from None
            proxy.process.send_signal(signal.SIGTERM)
            assert await proxy.process.wait() == 0
            log = await proxy.drain()
    assert all(a.status_code == 200 for a in answers)
    assert log.count(b"Running on http://127.0.0.1:%d" % port) == 2, log.decode()


async def test_a_worker_that_dies_is_replaced() -> None:
    with trio.fail_after(60):
        port = free_port()
        async with run_cli("serve", "--port", str(port), "--workers", "2") as proxy:
            await proxy.wait_for(b"trioproxy relaying to", count=2)
            first, second = children(proxy.process.pid)
            os.kill(first, signal.SIGKILL)
            line = await proxy.wait_for(b"started in place of worker %d" % first)
            await proxy.wait_for(b"trioproxy relaying to", count=3)
            replaced = children(proxy.process.pid)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                answers = [await client.get("/health") for _ in range(6)]
            proxy.process.send_signal(signal.SIGTERM)
            assert await proxy.process.wait() == 0
            log = await proxy.drain()
    assert b"worker %d exited (signal SIGKILL)" % first in log, log.decode()
    assert b"WARNING" in log and b"Traceback" not in log
    assert second in replaced and first not in replaced and len(replaced) == 2, line
    assert all(a.status_code == 200 for a in answers)


async def test_a_wrong_config_stops_start_up(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "bad.toml"
    path.write_text("[server]\nprot = 1\n")
    with trio.fail_after(30):
        done = await trio.run_process(
            [*CLI, "serve", "--config", str(path)], capture_stderr=True, check=False
        )
    assert done.returncode != 0
    assert b"unknown key server.prot" in done.stderr
