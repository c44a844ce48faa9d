"""``trioproxy demo``: the proxy's promise, shown on loopback in a few seconds.

Starts the simulated upstream and the proxy in one process, streams one whole
answer, then stops a request in every phase, by FIN and by RST, and prints
how long the upstream took to see its connection close.
"""

from functools import partial

import httpx
import trio

from trioproxy.conformance import SCENARIOS, StopKind, StopResult, stop_in_phase
from trioproxy.proxy.app import serve_proxy
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.server import hypercorn_config
from trioproxy.sim import SimParams, SimUpstream, serve_sim

__all__ = ["run_demo"]


async def run_demo() -> list[StopResult]:
    sim = SimUpstream(SimParams(tokens=24, interval_s=0.02))
    async with trio.open_nursery() as nursery:
        (upstream,) = await nursery.start(partial(serve_sim, sim, server="guarded"))
        proxy = ProxyConfig(upstream=f"{upstream}/v1")
        (bound,) = await nursery.start(serve_proxy, proxy, hypercorn_config("127.0.0.1", 0))
        host, port = bound.removeprefix("http://").rsplit(":", 1)
        print(f"simulated upstream {upstream}, trioproxy {bound}\n")
        await _stream_one(bound)
        results = []
        for scenario in SCENARIOS:
            for kind in StopKind:
                sim_id = f"demo-{scenario.name}-{kind}"
                results.append(await stop_in_phase(host, int(port), sim, scenario, kind, sim_id))
        _print_table(results)
        nursery.cancel_scope.cancel()
    return results


async def _stream_one(base: str) -> None:
    print("a whole streamed answer, token by token:")
    request = {
        "model": "sim-small",
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
    }
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("POST", "/v1/chat/completions", json=request) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                content = line.partition('"content":"')[2].partition('"')[0]
                print(content, end="", flush=True)
    print("[DONE]\n")


def _print_table(results: list[StopResult]) -> None:
    print(f"{'phase':<20} {'stop':<5} {'upstream':<14} {'client close -> upstream close':>31}")
    for r in results:
        ms = "-" if r.propagation_ms is None else f"{r.propagation_ms:.2f} ms"
        print(f"{r.scenario:<20} {r.kind:<5} {r.upstream:<14} {ms:>31}")
    print("\n'never opened': stopped while uploading its body, before any upstream connection.")
