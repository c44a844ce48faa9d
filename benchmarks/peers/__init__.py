"""The proxies every benchmark run measures, on the same simulated upstream.

Each peer is a command with ``{upstream}`` (the upstream's OpenAI base URL)
and ``{port}`` (where it must listen) filled in, the same form
``trioproxy conformance --proxy-cmd`` takes.
"""

import importlib.metadata
import subprocess
import sys
from dataclasses import dataclass

from benchmarks.peers.litellm_proxy import VENV as LITELLM_VENV
from benchmarks.peers.litellm_proxy import VERSION as LITELLM_VERSION

__all__ = ["PEERS", "Peer"]

_PY = sys.executable


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    command: str
    package: str  # whose version the results record
    note: str
    only: tuple[str, ...] = ()
    """The benchmarks that measure this peer; empty: all of them."""

    def measured_by(self, benchmark: str) -> bool:
        return not self.only or benchmark in self.only

    def version(self) -> str:
        if self.package == "nginx":
            found = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
            return found.stderr.strip().rpartition("/")[2] if found.returncode == 0 else "?"
        if self.package == "litellm":
            return LITELLM_VERSION if (LITELLM_VENV / "bin" / "litellm").exists() else "?"
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    def missing(self) -> str | None:
        """Why this peer cannot run here, or None."""
        if self.version() == "?":
            return f"{self.package} is not installed: run bash benchmarks/install_peers.sh"
        return None


PEERS = (
    Peer(
        "trioproxy",
        f"{_PY} -m trioproxy serve --upstream {{upstream}} --port {{port}}",
        "trioproxy",
        "nursery race, no polling",
    ),
    Peer(
        "trioproxy x2",
        f"{_PY} -m trioproxy serve --upstream {{upstream}} --port {{port}} --workers 2",
        "trioproxy",
        "two worker processes",
        only=("overhead",),
    ),
    Peer(
        "bare hypercorn",
        f"{_PY} -m benchmarks.peers.bare_hypercorn {{upstream}} {{port}}",
        "hypercorn",
        "stock hypercorn-trio answering a canned body: this stack's ceiling",
        only=("overhead",),
    ),
    Peer(
        "starlette+httpx",
        f"{_PY} -m benchmarks.peers.starlette_proxy {{upstream}} {{port}}",
        "starlette",
        "hand-written StreamingResponse proxy on uvicorn",
    ),
    Peer(
        "starlette fast",
        f"{_PY} -m benchmarks.peers.starlette_proxy {{upstream}} {{port}} fast",
        "uvloop",
        "the same on uvicorn with uvloop and httptools",
        only=("overhead", "scale"),
    ),
    Peer(
        "nginx",
        f"{_PY} -m benchmarks.peers.nginx_proxy {{upstream}} {{port}}",
        "nginx",
        "proxy_buffering off: the floor",
    ),
    Peer(
        "litellm",
        f"{_PY} -m benchmarks.peers.litellm_proxy {{upstream}} {{port}}",
        "litellm",
        "LiteLLM proxy, in its own venv",
    ),
    Peer(
        "polling-100ms",
        f"{_PY} -m benchmarks.peers.polling_proxy {{upstream}} {{port}}",
        "starlette",
        "checks is_disconnected() every 100 ms",
    ),
)
