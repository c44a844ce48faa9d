"""A/B: trioproxy from two checkouts, interleaved in one run, beside this stack's floors.

``python -m benchmarks.ab A_DIR B_DIR [--rounds 2] [--seconds 5]`` measures,
round by round and in alternating order, trioproxy as checked out in
``A_DIR`` and in ``B_DIR`` (each its own ``PYTHONPATH``): JSON requests/s
(the overhead benchmark's wrk run) beside bare hypercorn-trio and the same
canned app on each checkout's own server; CPU per relayed event at paced
streams (the scale benchmark's) beside the bare trio relay; and the stop
matrix with its storms (the cancellation benchmark's). Short by design, for
a shared machine: the figures go to ``benchmarks/results/ab.json`` and the
terminal, not to the report.
"""

import argparse
import json
import pathlib
import sys
from typing import Any

import trio

from benchmarks import overhead, scale
from benchmarks.cancellation import measure as stops
from benchmarks.peers import PEERS, Peer
from trioproxy.conformance import RunConfig, free_port, wait_accepting

RESULTS = pathlib.Path(__file__).parent / "results"
_PY = sys.executable


_CANNED = pathlib.Path(__file__).parent / "peers" / "bare_hypercorn.py"


def _python(checkout: str) -> str:
    # -P: the working directory (this checkout) must not come before PYTHONPATH.
    return f"env PYTHONPATH={checkout} {_PY} -P"


def _trioproxy(label: str, checkout: str) -> Peer:
    command = f"{_python(checkout)} -m trioproxy serve --upstream {{upstream}} --port {{port}}"
    return Peer(f"trioproxy {label}", command, "trioproxy", f"trioproxy from {checkout}")


def _server_alone(label: str, checkout: str) -> Peer:
    # This checkout's script, run by its path, importing the other's trioproxy.
    command = f"{_python(checkout)} {_CANNED} {{upstream}} {{port}} guarded"
    return Peer(f"server {label}", command, "trioproxy", "the canned app on trioproxy's server")


def _named(name: str) -> Peer:
    return next(p for p in PEERS if p.name == name)


def _order(peers: list[Peer], round_: int) -> list[Peer]:
    return peers if round_ % 2 == 0 else peers[::-1]


async def main(args: argparse.Namespace) -> None:
    a, b = args.a, args.b
    out: dict[str, Any] = {"a": a, "b": b, "rounds": args.rounds, "seconds": args.seconds}
    json_peers = [
        _trioproxy("A", a),
        _trioproxy("B", b),
        _named("bare hypercorn"),
        _server_alone("A", a),
        _server_alone("B", b),
    ]
    rows: dict[str, list[object]] = {p.name: [] for p in json_peers}
    out["json_requests_per_s"] = rows
    for round_ in range(args.rounds):
        for peer in _order(json_peers, round_):
            figures = await overhead.measure(peer, "json", args.seconds)
            rows[peer.name].append(figures["requests_per_s"])
            print(f"json  {peer.name:<16} {json.dumps(figures)}", flush=True)

    scale_args = argparse.Namespace(
        streams=args.streams, interval=0.02, tokens=50, seconds=args.seconds * 2
    )
    scale_peers = [_trioproxy("A", a), _trioproxy("B", b), _named("bare trio relay")]
    cpu: dict[str, list[float]] = {p.name: [] for p in scale_peers}
    out["cpu_us_per_event"] = cpu
    port = free_port()
    pace = [str(port), "0.02", "50", "--procs", "2"]
    ticker = await trio.lowlevel.open_process([_PY, "-m", "benchmarks.ticker", *pace])
    try:
        await wait_accepting(("127.0.0.1", port), 20, ticker)
        for round_ in range(args.rounds):
            for peer in _order(scale_peers, round_):
                figures = await scale.measure(peer, scale_args, port)
                cpu[peer.name].append(float(figures["cpu_s_per_1000_events"]) * 1000)
                print(f"scale {peer.name:<16} {json.dumps(figures)}", flush=True)
    finally:
        ticker.terminate()
        with trio.CancelScope(shield=True):
            await ticker.wait()

    config = RunConfig(repeats=args.repeats, storms=(200, 1000), storm_bound_ms=50.0)
    stop_rows: dict[str, list[list[float | None]]] = {}
    out["stops"] = stop_rows
    for round_ in range(args.rounds):
        for peer in _order([_trioproxy("A", a), _trioproxy("B", b)], round_):
            report = await stops(peer, config)
            print(f"stops {peer.name} round {round_ + 1}\n{report.table()}", flush=True)
            for result in report.results:
                if result.samples_ms:
                    key = f"{peer.name} / {result.name}"
                    stop_rows.setdefault(key, []).append(
                        [result.percentile(0.5), result.percentile(0.99), result.never_closed]
                    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ab.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    trio.run(main, parser.parse_args())
