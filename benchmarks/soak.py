"""Soak: thousands of requests, most stopped in a random phase; does anything leak?

Run: ``python -m benchmarks.soak [--requests N] [--concurrency C] [--seed S]``.

trioproxy runs as its own process (so its memory and file descriptors can
be read from ``/proc``) in front of the simulated upstream. Clients send a
mix: HTTP/1.1 requests stopped by FIN or RST in every phase (upload, waiting
for headers, thinking, streaming, non-streaming), HTTP/2 streams reset
mid-stream, and whole answers, streamed or not, whose content is checked.
Every ``--sample`` requests the proxy's RSS and open fds are read; their
slopes per 1,000 requests after the warm-up, the upstreams left running, the
requests the proxy still lists in flight at the end, and the outcomes go to
``benchmarks/results/soak.json``.
"""

import argparse
import json
import pathlib
import random
import re
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import trio

from trioproxy.conformance import (
    SCENARIOS,
    H2Client,
    RawClient,
    StopKind,
    chat_body,
    request_bytes,
    running_proxy,
    stop_in_phase,
)
from trioproxy.sim import Render, SimUpstream, serve_sim

RESULTS = pathlib.Path(__file__).parent / "results"
ADMIN = "soak-admin"


@dataclass
class Tally:
    outcomes: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[int, int, int]] = field(default_factory=list)
    """(requests done, RSS KiB, open fds) of the proxy process."""
    done: int = 0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.done += 1


def proc_sample(pid: int) -> tuple[int, int]:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    fds = len(list(pathlib.Path(f"/proc/{pid}/fd").iterdir()))
    return rss, fds


async def whole(target: tuple[str, int], sim_id: str, stream: bool) -> str:
    headers = {"x-sim-id": sim_id, "x-sim-tokens": "20"}
    client = await RawClient.connect(*target)
    try:
        await client.send(request_bytes("POST", "/v1/chat/completions", chat_body(stream), headers))
        if stream:  # chunked: to the last chunk
            await client.read_until(b"\r\n0\r\n\r\n")
        else:  # to its Content-Length
            await client.read_until(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", client.received)
            while length and len(client.body) < int(length[1]) and await client.read_more():
                pass
    finally:
        client.close()
    render = Render("chat", "sim-small", sim_id)
    expected = render.stream(20) if stream else render.whole(20)
    return "whole" if client.body == expected else "corrupt"


async def h2_reset(target: tuple[str, int], sim: SimUpstream, sim_id: str) -> str:
    client = await H2Client.connect(*target)
    try:
        sim_headers = {"x-sim-id": sim_id, "x-sim-tokens": "1000000", "x-sim-interval": "0.005"}
        stream_id = await client.request("/v1/chat/completions", sim_headers, chat_body(True))
        await client.pump_until(lambda: client.data[stream_id].count(b"data: ") >= 2)
        await client.reset(stream_id)
        with trio.move_on_after(5):
            await sim.fate(sim_id).ended.wait()
    finally:
        client.close()
    return "h2 reset: closed" if sim.fate(sim_id).outcome == "disconnected" else "h2 reset: running"


async def one(n: int, rng: random.Random, target: tuple[str, int], sim: SimUpstream) -> str:
    sim_id = f"soak-{n}"
    roll = rng.random()
    if roll < 0.2:
        return await whole(target, sim_id, stream=rng.random() < 0.5)
    if roll < 0.3:
        return await h2_reset(target, sim, sim_id)
    scenario = rng.choice(SCENARIOS)
    kind = rng.choice(list(StopKind))
    result = await stop_in_phase(*target, sim, scenario, kind, sim_id)
    return f"stopped: {result.upstream}"


async def drive(
    args: argparse.Namespace, sim: SimUpstream, target: tuple[str, int], pid: int
) -> Tally:
    tally = Tally()
    rng = random.Random(args.seed)
    numbers = iter(range(args.requests))

    async def worker() -> None:
        for n in numbers:
            try:
                with trio.fail_after(30):
                    outcome = await one(n, rng, target, sim)
            except (OSError, ConnectionError, trio.TooSlowError) as exc:
                outcome = f"client error: {type(exc).__name__}"
            tally.count(outcome)
            if tally.done % args.sample == 0:
                rss, fds = proc_sample(pid)
                tally.samples.append((tally.done, rss, fds))
                print(f"{tally.done:>6} requests  RSS {rss / 1024:7.1f} MiB  fds {fds}", flush=True)

    async with trio.open_nursery() as nursery:
        for _ in range(args.concurrency):
            nursery.start_soon(worker)
    return tally


def slope_per_1000(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of value over requests, per 1,000 requests."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


async def left_running(sim: SimUpstream, wait_s: float) -> int:
    with trio.move_on_after(wait_s):
        while any(f.outcome == "running" and f.started.is_set() for f in sim.fates):  # noqa: ASYNC110
            await trio.sleep(0.1)  # the upstreams' own clocks: nothing to wait on
    return sum(f.outcome == "running" and f.started.is_set() for f in sim.fates)


async def main(args: argparse.Namespace) -> None:
    sim = SimUpstream()
    async with trio.open_nursery() as nursery:
        (origin,) = await nursery.start(partial(serve_sim, sim, server="guarded"))
        command = f"{sys.executable} -m trioproxy serve --upstream {{upstream}} --port {{port}}"
        command += f" --admin-key {ADMIN}"
        pid: list[int] = []
        started = time.monotonic()
        async with running_proxy(command, f"{origin}/v1", pid=pid) as target:
            first = proc_sample(pid[0])
            tally = await drive(args, sim, target, pid[0])
            running = await left_running(sim, 10.0)
            async with httpx.AsyncClient(base_url=f"http://{target[0]}:{target[1]}") as http:
                listed = await http.get(
                    "/admin/requests", headers={"authorization": f"Bearer {ADMIN}"}
                )
            in_flight = len(listed.json()["requests"])
            last = proc_sample(pid[0])
        nursery.cancel_scope.cancel()
    warm = [s for s in tally.samples if s[0] > args.warmup]
    report: dict[str, Any] = {
        "requests": tally.done,
        "concurrency": args.concurrency,
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": dict(sorted(tally.outcomes.items())),
        "rss_kib": {"start": first[0], "end": last[0]},
        "fds": {"start": first[1], "end": last[1]},
        "rss_kib_per_1000": round(slope_per_1000([(s[0], s[1]) for s in warm]), 1),
        "fds_per_1000": round(slope_per_1000([(s[0], s[2]) for s in warm]), 2),
        "upstreams_left_running": running,
        "in_flight_at_end": in_flight,
        "samples": tally.samples,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sample", type=int, default=500, help="read RSS and fds every N")
    parser.add_argument("--warmup", type=int, default=1000, help="requests before slopes count")
    parser.add_argument("--seed", type=int, default=1)
    trio.run(main, parser.parse_known_args()[0])  # run_all passes its own options on
