"""Benchmark (c): many concurrent paced streams through each peer.

1000 streams, a token every 20 ms from a paced upstream (``benchmarks.ticker``):
CPU seconds the proxy spends per 1000 relayed events, memory per open stream
(RSS of the proxy's processes, before and after the streams open), and the
delay clients see between the upstream's send and their receipt (p50 / p99).
The clients run in this process; on a 2-core machine they, the upstream and
the proxy share the cores, so compare peers within one run.
Run: ``python -m benchmarks.scale [--streams 1000] [--interval 0.02] [--seconds 5]``.
"""

import argparse
import json
import os
import pathlib
import sys
import time

import trio

from benchmarks.peers import PEERS, Peer
from trioproxy.conformance import free_port, running_proxy
from trioproxy.probe import chat_body, request_bytes

RESULTS = pathlib.Path(__file__).parent / "results"
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    pids = [pid]
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            pids += tree(int(child))
    return pids


def cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/statm") as statm:
            total += int(statm.read().split()[1]) * _PAGE
    return total


class Clients:
    def __init__(self) -> None:
        self.events = 0
        self.delays_ms: list[float] = []
        self.recording = False
        self.opened = 0
        self.all_open = trio.Event()

    async def stream(self, target: tuple[str, int], count: int) -> None:
        body = chat_body(True)
        stream = await trio.open_tcp_stream(*target)
        async with stream:
            await stream.send_all(request_bytes("POST", "/v1/chat/completions", body, {}))
            first = True
            pending = b""
            while data := await stream.receive_some(65536):
                now = time.monotonic()
                if first:
                    first = False
                    self.opened += 1
                    if self.opened == count:
                        self.all_open.set()
                pending += data
                *events, pending = pending.split(b"\n\n")
                for event in events:
                    start = event.find(b'"content":"')
                    if start < 0:
                        continue
                    self.events += 1
                    if self.recording:
                        stamp = float(event[start + 11 : event.index(b" ", start + 11)])
                        self.delays_ms.append((now - stamp) * 1000)


async def measure(peer: Peer, streams: int, interval: float, seconds: float) -> dict[str, float]:
    port = free_port()
    ticker = await trio.lowlevel.open_process(
        [sys.executable, "-m", "benchmarks.ticker", str(port), str(interval), "1000000"]
    )
    try:
        await trio.sleep(1)
        pid: list[int] = []
        upstream = f"http://127.0.0.1:{port}/v1"
        async with running_proxy(peer.command, upstream, pid=pid) as target:
            await trio.sleep(1)
            idle_rss = rss_bytes(tree(pid[0]))
            clients = Clients()
            async with trio.open_nursery() as nursery:
                for _ in range(streams):
                    nursery.start_soon(clients.stream, target, streams)
                with trio.move_on_after(60):
                    await clients.all_open.wait()
                await trio.sleep(1)
                pids = tree(pid[0])
                open_rss = rss_bytes(pids)
                cpu0, events0 = cpu_s(pids), clients.events
                clients.recording = True
                await trio.sleep(seconds)
                clients.recording = False
                cpu1, events1 = cpu_s(pids), clients.events
                nursery.cancel_scope.cancel()
    finally:
        ticker.terminate()
        with trio.CancelScope(shield=True):
            await ticker.wait()
    delays = sorted(clients.delays_ms)
    relayed = events1 - events0
    return {
        "streams_open": clients.opened,
        "events_per_s": relayed / seconds,
        "expected_events_per_s": streams / interval,
        "cpu_s_per_1000_events": (cpu1 - cpu0) / (relayed / 1000) if relayed else float("nan"),
        "memory_kib_per_stream": (open_rss - idle_rss) / 1024 / max(clients.opened, 1),
        "delay_p50_ms": delays[len(delays) // 2] if delays else float("nan"),
        "delay_p99_ms": delays[int(len(delays) * 0.99)] if delays else float("nan"),
    }


async def main(args: argparse.Namespace) -> None:
    out: dict[str, object] = {
        "streams": args.streams,
        "interval_s": args.interval,
        "seconds": args.seconds,
        "cores": os.cpu_count(),
        "peers": {},
    }
    for peer in (p for p in PEERS if p.measured_by("scale")):
        if (args.peer and peer.name not in args.peer) or peer.missing():
            continue
        result = await measure(peer, args.streams, args.interval, args.seconds)
        print(f"{peer.name:<16} {json.dumps(result)}", flush=True)
        out["peers"][peer.name] = result | {"version": peer.version()}  # type: ignore[index]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--peer", action="append")
    trio.run(main, parser.parse_args())
