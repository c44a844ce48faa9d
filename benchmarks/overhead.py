"""Benchmark (b): requests/s and p50 / p99 latency at 32 connections, for every peer.

Two answers: a small JSON (a non-streaming chat completion) and a 200-event
SSE stream. The upstream is nginx serving a file and the load generator is
wrk, both in C, so neither is the bottleneck; each proxy runs one process.
Run: ``python -m benchmarks.overhead [--seconds 10] [--peer NAME ...]``.
"""

import argparse
import json
import os
import pathlib
import re
import tempfile

import httpx
import trio

from benchmarks.fastup import fast_upstream, request_body
from benchmarks.peers import PEERS, Peer
from trioproxy.conformance import free_port, running_proxy

RESULTS = pathlib.Path(__file__).parent / "results"
CONNECTIONS = 32

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_script(kind: str) -> str:
    path = pathlib.Path(tempfile.mkdtemp(prefix="wrk-")) / "post.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(request_body(kind))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return str(path)


def parse_wrk(output: str) -> dict[str, float | str]:
    def latency(percent: str) -> float:
        value, unit = re.search(rf"\s{percent}%\s+([\d.]+)(us|ms|s)\b", output).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(failed.group(1)) if failed else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


async def measure(peer: Peer, kind: str, seconds: int) -> dict[str, float | str]:
    with fast_upstream(kind, free_port()) as upstream:
        async with running_proxy(peer.command, upstream) as (host, port):
            url = f"http://{host}:{port}/v1/chat/completions"
            async with httpx.AsyncClient(timeout=30) as client:  # one whole answer first
                check = await client.post(
                    url, content=request_body(kind), headers={"content-type": "application/json"}
                )
            assert check.status_code == 200, (peer.name, check.status_code, check.text[:200])
            script = wrk_script(kind)
            warm = ["wrk", "-t2", f"-c{CONNECTIONS}", "-d2s", "-s", script, url]
            await trio.run_process(warm, capture_stdout=True)
            run = [
                "wrk",
                "-t2",
                f"-c{CONNECTIONS}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                script,
                url,
            ]
            done = await trio.run_process(run, capture_stdout=True)
    return parse_wrk(done.stdout.decode())


async def main(args: argparse.Namespace) -> None:
    out: dict[str, object] = {
        "connections": CONNECTIONS,
        "seconds": args.seconds,
        "cores": os.cpu_count(),
        "peers": {},
    }
    for peer in (p for p in PEERS if p.measured_by("overhead")):
        if (args.peer and peer.name not in args.peer) or peer.missing():
            continue
        results = {}
        for kind in ("json", "sse"):
            results[kind] = await measure(peer, kind, args.seconds)
            print(f"{peer.name:<16} {kind:<5} {results[kind]}", flush=True)
        out["peers"][peer.name] = results | {"version": peer.version()}  # type: ignore[index]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overhead.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--peer", action="append")
    trio.run(main, parser.parse_args())
