"""Benchmark (a): the conformance matrix, with storms of 100 and 1000 streams, for every peer.

Run: ``python -m benchmarks.cancellation [--repeats N] [--peer NAME ...]``.
Writes ``benchmarks/results/cancellation.json`` and prints one table per peer.
"""

import argparse
import json
import os
import pathlib
import platform

import trio

from benchmarks.peers import PEERS, Peer
from trioproxy.conformance import (
    Report,
    RunConfig,
    Target,
    run_conformance,
    running_proxy,
    with_sim,
)
from trioproxy.sim import SimUpstream

RESULTS = pathlib.Path(__file__).parent / "results"


async def measure(peer: Peer, config: RunConfig) -> Report:
    async def body(sim: SimUpstream, upstream: str) -> Report:
        tls: list[Target] = []
        command = peer.tls_command or peer.command
        async with running_proxy(command, upstream, tls=tls) as target:
            return await run_conformance(sim, target, config, peer.name, *tls)

    return await with_sim(body)


async def main(args: argparse.Namespace) -> None:
    # Strict: a benchmark grades speed as well, so ``passed`` (and the tables' ✓)
    # means correct and within the bounds, as in the results before the verdict.
    config = RunConfig(repeats=args.repeats, storms=(200, 1000), storm_bound_ms=50.0, strict=True)
    out: dict[str, object] = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {
            "repeats": config.repeats,
            "storms": config.storms,
            "bound_ms": config.bound_ms,
            "storm_bound_ms": config.storm_bound_ms,
            "strict": config.strict,
        },
        "peers": {},
    }
    for peer in (p for p in PEERS if p.measured_by("cancellation")):
        if args.peer and peer.name not in args.peer:
            continue
        if reason := peer.missing():
            print(f"== {peer.name}: not measured: {reason}")
            continue
        print(f"== {peer.name} {peer.version()} ({peer.note})", flush=True)
        report = await measure(peer, config)
        print(report.table(), flush=True)
        out["peers"][peer.name] = report.as_json() | {"version": peer.version()}  # type: ignore[index]
    path = RESULTS / "cancellation.json"
    if args.peer and path.exists():  # some peers measured again: the others' results stay
        merged = json.loads(path.read_text()).get("peers", {}) | out["peers"]
        out["peers"] = {p.name: merged[p.name] for p in PEERS if p.name in merged}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--peer", action="append", help="only these peers")
    trio.run(main, parser.parse_args())
