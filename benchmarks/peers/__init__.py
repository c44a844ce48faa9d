"""The proxies every benchmark run measures, on the same simulated upstream.

Each peer is a command with ``{upstream}`` (the upstream's OpenAI base URL)
and ``{port}`` (where it must listen) filled in, the same form
``trioproxy conformance --proxy-cmd`` takes.
"""

import importlib.metadata
import shutil
import sys
from dataclasses import dataclass

__all__ = ["PEERS", "Peer"]

_PY = sys.executable


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    command: str
    package: str  # whose version the results record
    note: str

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    def missing(self) -> str | None:
        """Why this peer cannot run here, or None."""
        if self.package in ("starlette", "trioproxy") and self.version() == "?":
            return f"pip package {self.package} is not installed"
        executable = self.command.split()[0]
        if shutil.which(executable) is None and not executable.startswith(_PY):
            return f"{executable} not found"
        return None


PEERS = (
    Peer(
        "trioproxy",
        f"{_PY} -m trioproxy serve --upstream {{upstream}} --port {{port}}",
        "trioproxy",
        "nursery race, no polling",
    ),
    Peer(
        "starlette+httpx",
        f"{_PY} -m benchmarks.peers.starlette_proxy {{upstream}} {{port}}",
        "starlette",
        "hand-written StreamingResponse proxy on uvicorn",
    ),
    Peer(
        "polling-100ms",
        f"{_PY} -m benchmarks.peers.polling_proxy {{upstream}} {{port}}",
        "starlette",
        "checks is_disconnected() every 100 ms",
    ),
)
