"""Benchmark: stops on real engines (vLLM, llama-server, with the tiny model of
``scripts/engines/install.sh``) with no proxy and behind every peer, in every
phase (prompt processing, mid-stream, non-streaming), by FIN and by RST. The
engine is the judge: whether it logged an abort, how long after the stop that
line appeared, and the tokens it generated before and after the stop, from
its own counters (``trioproxy.engines.judge``). One request at a time.

Run: ``python -m benchmarks.engines [--repeats N] [--engine E ...] [--peer NAME ...]``
(``--peer direct`` is the engine with no proxy). Writes
``benchmarks/results/engines.json`` and prints one line per cell. Long: a
stop that does not reach the engine costs the whole answer (up to 25 s).
"""

import argparse
import contextlib
import json
import os
import pathlib
import platform
import statistics
import tempfile
from collections.abc import AsyncIterator

import trio

from benchmarks.peers import PEERS, Peer
from trioproxy.conformance import StopKind, running_proxy
from trioproxy.engines import ENGINES, Engine, find_installed, running_engine
from trioproxy.engines.judge import MAX_TOKENS, PHASES, Stopped, stop_once

RESULTS = pathlib.Path(__file__).parent / "results"
DIRECT = "direct"
WAIT_ABORT_S = 10.0  # past it a stop counts as never aborted (llama-server: prompt batches)


@contextlib.asynccontextmanager
async def _origin(engine: Engine, peer: Peer | None) -> AsyncIterator[str]:
    if peer is None:
        yield engine.origin
        return
    async with running_proxy(peer.command, f"{engine.origin}/v1") as (host, port):
        yield f"http://{host}:{port}"


def _cell(stops: list[Stopped]) -> dict[str, object]:
    seen = [s.abort_seen_ms for s in stops if s.abort_seen_ms is not None]
    return {
        "stops": len(stops),
        "aborted": sum(s.aborted for s in stops),
        "after_stop": [s.after_stop for s in stops],
        "before_stop": [s.before_stop for s in stops],
        "abort_seen_ms_median": statistics.median(seen) if seen else None,
    }


async def measure(engine: Engine, peer: Peer | None, repeats: int) -> dict[str, object]:
    cells: dict[str, object] = {}
    async with _origin(engine, peer) as origin:
        for phase in PHASES:
            for kind in StopKind:
                stops = [
                    await stop_once(engine, origin, phase, kind, WAIT_ABORT_S)
                    for _ in range(repeats)
                ]
                cells[f"{phase.name} {kind}"] = cell = _cell(stops)
                name = peer.name if peer else DIRECT
                print(f"{engine.engine:9} {name:18} {phase.name:17} {kind}: {cell}", flush=True)
    return cells


async def main(args: argparse.Namespace) -> None:
    out: dict[str, object] = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "config": {"repeats": args.repeats, "max_tokens": MAX_TOKENS},
        "engines": {},
    }
    peers: list[Peer | None] = [None, *(p for p in PEERS if p.measured_by("cancellation"))]
    wanted = [p for p in peers if not args.peer or (p.name if p else DIRECT) in args.peer]
    for name in args.engine or ENGINES:
        installed = find_installed(name)
        if isinstance(installed, str):
            print(f"== {name}: not measured: {installed}")
            continue
        log = pathlib.Path(tempfile.mkdtemp(prefix="engines-bench-")) / f"{name}.log"
        results: dict[str, object] = {}
        with running_engine(installed, log) as engine:
            for peer in wanted:
                if peer is not None and (reason := peer.missing()):
                    print(f"== {name} behind {peer.name}: not measured: {reason}")
                    continue
                key = peer.name if peer else DIRECT
                results[key] = await measure(engine, peer, args.repeats)
        out["engines"][name] = results  # type: ignore[index]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engines.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", action="append", choices=ENGINES, help="only these engines")
    parser.add_argument("--peer", action="append", help="only these peers (direct: no proxy)")
    trio.run(main, parser.parse_args())
