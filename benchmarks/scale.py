"""Benchmark (c): many concurrent paced streams through each peer.

1000 streams, a token every 20 ms, from a paced upstream of several
processes (``benchmarks.ticker``: SO_REUSEPORT, event bytes built once),
driven by wrk (C) with one connection per stream; each stream is TOKENS
events long, and the client counts events from the bytes wrk read (a
stream slowed past the run's end still counts what reached the client).
A "no proxy" row runs wrk straight against the upstream: the most this
harness can show. Per peer: events per second at the client (of what the
pacing allows), CPU seconds the proxy spends per 1000 relayed events (its
request set-up included, once per TOKENS events), memory per open stream
(RSS of the proxy's processes, idle and mid-run), and how late a stream's
last token arrives (wrk's p50 / p99 latency less the stream's paced length).
On a 2-core machine wrk, the upstream and the proxy share the cores:
compare peers within one run.
Run: ``python -m benchmarks.scale [--streams 1000] [--interval 0.02] [--seconds 15]``.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import trio

from benchmarks.overhead import parse_wrk
from benchmarks.peers import PEERS, Peer
from benchmarks.ticker import EVENT, framed
from trioproxy.conformance import free_port, running_proxy, wait_accepting

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


def wrk_script() -> str:
    path = pathlib.Path(tempfile.mkdtemp(prefix="wrk-")) / "stream.lua"
    body = json.dumps({"model": "sim-small", "stream": True, "messages": []})
    path.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return str(path)


async def drive(
    url: str, streams: int, seconds: float, pid: int | None
) -> tuple[dict[str, float | str], float, int]:
    """wrk for ``seconds``: its figures, the proxy's CPU seconds meanwhile, its RSS mid-run."""
    run = ["wrk", "-t2", f"-c{streams}", f"-d{seconds:g}s", "--timeout", "60s", "--latency"]
    run += ["-s", wrk_script(), url]
    pids = tree(pid) if pid else []
    cpu0 = cpu_s(pids)
    mid_rss = 0
    async with trio.open_nursery() as nursery:
        done: list[subprocess.CompletedProcess[bytes]] = []

        async def wrk() -> None:
            done.append(await trio.run_process(run, capture_stdout=True))

        nursery.start_soon(wrk)
        await trio.sleep(seconds / 2)
        mid_rss = rss_bytes(tree(pid)) if pid else 0
    output = done[0].stdout.decode()
    figures = parse_wrk(output)
    figures["bytes_per_s"] = _transfer(output)
    return figures, cpu_s(pids) - cpu0, mid_rss


_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _transfer(output: str) -> float:
    """wrk's bytes read per second: partial answers count too, unlike its requests."""
    found = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", output)
    return float(found[1]) * _SIZES[found[2]] if found else 0.0


async def measure(
    peer: Peer | None, args: argparse.Namespace, upstream_port: int
) -> dict[str, float | str]:
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    stream_s = args.tokens * args.interval
    if peer is None:
        url = f"{upstream}/chat/completions"
        figures, cpu, mid_rss = await drive(url, args.streams, args.seconds, None)
        idle_rss = 0
    else:
        pid: list[int] = []
        async with running_proxy(peer.command, upstream, pid=pid) as (host, port):
            await trio.sleep(1)
            idle_rss = rss_bytes(tree(pid[0]))
            url = f"http://{host}:{port}/v1/chat/completions"
            figures, cpu, mid_rss = await drive(url, args.streams, args.seconds, pid[0])
    if figures["non_2xx"]:
        raise RuntimeError(f"{peer.name if peer else 'upstream'}: {figures['non_2xx']} errors")
    # Events counted at the client from the bytes it read (a stream slowed past
    # the run's end still counts what reached it); each event is one chunk.
    events = float(figures["bytes_per_s"]) * args.seconds / len(framed(EVENT))
    expected = args.streams / args.interval * args.seconds
    return {
        "events_per_s": events / args.seconds,
        "expected_events_per_s": expected / args.seconds,
        "cpu_s_per_1000_events": cpu / (events / 1000) if peer and events else float("nan"),
        "memory_kib_per_stream": (mid_rss - idle_rss) / 1024 / args.streams if peer else 0.0,
        "late_p50_ms": float(figures["p50_ms"]) - stream_s * 1000,
        "late_p99_ms": float(figures["p99_ms"]) - stream_s * 1000,
        "socket_errors": figures["socket_errors"],
    }


async def main(args: argparse.Namespace) -> None:
    out: dict[str, object] = {
        "streams": args.streams,
        "interval_s": args.interval,
        "tokens": args.tokens,
        "seconds": args.seconds,
        "upstream_procs": args.upstream_procs,
        "cores": os.cpu_count(),
        "peers": {},
    }
    port = free_port()
    pace = [str(port), str(args.interval), str(args.tokens), "--procs", str(args.upstream_procs)]
    ticker = await trio.lowlevel.open_process([sys.executable, "-m", "benchmarks.ticker", *pace])
    try:
        await wait_accepting(("127.0.0.1", port), 20, ticker)
        peers: list[Peer | None] = [None, *(p for p in PEERS if p.measured_by("scale"))]
        for peer in peers:
            if peer and ((args.peer and peer.name not in args.peer) or peer.missing()):
                continue
            name = peer.name if peer else "no proxy"
            result = await measure(peer, args, port)
            print(f"{name:<16} {json.dumps(result)}", flush=True)
            version = peer.version() if peer else "-"
            out["peers"][name] = result | {"version": version}  # type: ignore[index]
    finally:
        ticker.terminate()
        with trio.CancelScope(shield=True):
            await ticker.wait()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--tokens", type=int, default=50, help="events per stream")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--upstream-procs", type=int, default=2)
    parser.add_argument("--peer", action="append")
    trio.run(main, parser.parse_known_args()[0])  # run_all passes its own options on
