"""The conformance checker: does any proxy's client stop reach the upstream, and how fast?

It runs against any HTTP proxy put in front of the simulated upstream
(:mod:`trioproxy.sim`), and imports nothing of trioproxy's proxy: only the
simulator and the shared ASGI types.

- :mod:`.runner`: the run, scenario by scenario, storms and integrity;
- :mod:`.scenarios`: one request stopped in one phase by one kind of stop;
- :mod:`.probe`, :mod:`.probe_h2`: the raw HTTP/1.1 and HTTP/2 clients that stop;
- :mod:`.proxy_process`: the proxy under test, started from a command;
- :mod:`.report`: the results and their verdict (correct, and how fast), as JSON;
- :mod:`.table`, :mod:`.html`: the same as the printed table and as a page;
- :mod:`.answers`: whole answers, and the integrity scenario;
- :mod:`.cli`: ``trioproxy conformance``.
"""

from trioproxy.conformance.html import render_html
from trioproxy.conformance.probe import RawClient, StopKind, chat_body, request_bytes, sim_model
from trioproxy.conformance.probe_h2 import H2Client
from trioproxy.conformance.proxy_process import Target, free_port, running_proxy, wait_accepting
from trioproxy.conformance.report import (
    FORMAT,
    FORMAT_VERSION,
    Report,
    RunConfig,
    ScenarioResult,
    Speed,
    write_json,
)
from trioproxy.conformance.runner import run_conformance, with_sim
from trioproxy.conformance.scenarios import (
    SCENARIOS,
    Reached,
    Scenario,
    StopResult,
    stop_in_phase,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SCENARIOS",
    "H2Client",
    "RawClient",
    "Reached",
    "Report",
    "RunConfig",
    "Scenario",
    "ScenarioResult",
    "Speed",
    "StopKind",
    "StopResult",
    "Target",
    "chat_body",
    "free_port",
    "render_html",
    "request_bytes",
    "run_conformance",
    "running_proxy",
    "sim_model",
    "stop_in_phase",
    "wait_accepting",
    "with_sim",
    "write_json",
]
