"""The simulator: an OpenAI-compatible upstream that records when each request's
connection closed, for tests, benchmarks, the demo and the conformance checker.

It imports nothing of the proxy: it runs on the shared server
(:mod:`trioproxy.server`) and speaks ASGI (:mod:`trioproxy.asgi`).
"""

from trioproxy.sim.render import Render, render_for, token_text
from trioproxy.sim.serve import SimServer, serve_sim
from trioproxy.sim.upstream import Fate, SimParams, SimUpstream

__all__ = [
    "Fate",
    "Render",
    "SimParams",
    "SimServer",
    "SimUpstream",
    "render_for",
    "serve_sim",
    "token_text",
]
