"""The built-in simulated upstream, importable by tests, benchmarks and the demo."""

from trioproxy.sim.render import Render, render_for, token_text
from trioproxy.sim.upstream import Fate, SimParams, SimUpstream

__all__ = ["Fate", "Render", "SimParams", "SimUpstream", "render_for", "token_text"]
