"""The proxies every benchmark run measures, on the same simulated upstream.

Each peer is a command with ``{upstream}`` (the upstream's OpenAI base URL)
and ``{port}`` (where it must listen) filled in, the same form
``trioproxy conformance --proxy-cmd`` takes.
"""

import importlib.metadata
import subprocess
import sys
from dataclasses import dataclass

from benchmarks.peers._configured import TLS_ARGS
from benchmarks.peers.litellm_proxy import VENV as LITELLM_VENV
from benchmarks.peers.litellm_proxy import VERSION as LITELLM_VERSION

__all__ = ["PEERS", "Peer"]

_PY = sys.executable
_DEBIAN = {
    "nginx": "nginx-light",
    "haproxy": "haproxy",
    "caddy": "caddy",
    "apache": "apache2-bin",
}
"""Peers from Debian's packages, by the package whose version the results record."""


def _peer_script(name: str, *variant: str) -> str:
    return " ".join([_PY, "-m", f"benchmarks.peers.{name}", "{upstream}", "{port}", *variant])


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    command: str
    package: str  # whose version the results record
    note: str
    only: tuple[str, ...] = ()
    """The benchmarks that measure this peer; empty: all of them."""
    tls_command: str = ""
    """The command for the conformance run when the peer can also listen with TLS
    and HTTP/2 (``{tls_port}`` and the certificate's files filled in)."""
    fix: str = ""
    """For a peer that fails the conformance run: the setting that fixed it when
    tried (docs/conformance.md), or that none was found."""

    def measured_by(self, benchmark: str) -> bool:
        return not self.only or benchmark in self.only

    def version(self) -> str:
        if self.package in _DEBIAN:
            found = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", _DEBIAN[self.package]],
                capture_output=True,
                text=True,
                check=False,
            )
            return found.stdout.strip() if found.returncode == 0 and found.stdout else "?"
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
        tls_command=_peer_script("trioproxy_tls", TLS_ARGS),
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
        "bare trio relay",
        f"{_PY} -m benchmarks.peers.bare_trio_relay {{upstream}} {{port}}",
        "trio",
        "bytes copied between two trio sockets, no HTTP server: the floor per event",
        only=("scale",),
    ),
    Peer(
        "starlette+httpx",
        f"{_PY} -m benchmarks.peers.starlette_proxy {{upstream}} {{port}}",
        "starlette",
        "hand-written StreamingResponse proxy on uvicorn",
        fix="no setting: the code must watch for the disconnect while it waits "
        "(a race, as trioproxy's relay)",
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
        tls_command=_peer_script("nginx_proxy", "deploy", TLS_ARGS),
    ),
    Peer(
        "nginx default",
        _peer_script("nginx_proxy", "default"),
        "nginx",
        "a bare proxy_pass: buffered, HTTP/1.0 upstream",
        only=("cancellation",),
        tls_command=_peer_script("nginx_proxy", "default", TLS_ARGS),
    ),
    Peer(
        "haproxy",
        _peer_script("haproxy_proxy"),
        "haproxy",
        "HTTP mode, default settings",
        only=("cancellation",),
        fix="`option abortonclose` (next row)",
        tls_command=_peer_script("haproxy_proxy", "", TLS_ARGS),
    ),
    Peer(
        "haproxy abortonclose",
        _peer_script("haproxy_proxy", "abortonclose"),
        "haproxy",
        "option abortonclose",
        only=("cancellation",),
        tls_command=_peer_script("haproxy_proxy", "abortonclose", TLS_ARGS),
    ),
    Peer(
        "caddy",
        _peer_script("caddy_proxy"),
        "caddy",
        "reverse_proxy, default settings",
        only=("cancellation",),
        tls_command=_peer_script("caddy_proxy", "", TLS_ARGS),
    ),
    Peer(
        "caddy flush",
        _peer_script("caddy_proxy", "flush"),
        "caddy",
        "reverse_proxy with flush_interval -1",
        only=("cancellation",),
        fix="drop `flush_interval -1`: Caddy flushes event streams by itself (row above)",
        tls_command=_peer_script("caddy_proxy", "flush", TLS_ARGS),
    ),
    Peer(
        "apache",
        _peer_script("apache_proxy"),
        "apache",
        "mod_proxy_http ProxyPass, default settings",
        only=("cancellation",),
        fix="none found; `flushpackets=on` (next row) does not help",
        tls_command=_peer_script("apache_proxy", "", TLS_ARGS),
    ),
    Peer(
        "apache flush",
        _peer_script("apache_proxy", "flush"),
        "apache",
        "ProxyPass with flushpackets=on",
        only=("cancellation",),
        fix="none found",
        tls_command=_peer_script("apache_proxy", "flush", TLS_ARGS),
    ),
    Peer(
        "litellm",
        f"{_PY} -m benchmarks.peers.litellm_proxy {{upstream}} {{port}}",
        "litellm",
        "LiteLLM proxy, in its own venv",
        fix="`general_settings: cancel_on_disconnect: true` (next row) for the waiting phases",
    ),
    Peer(
        "litellm cancel_on_disconnect",
        _peer_script("litellm_proxy", "cancel"),
        "litellm",
        "general_settings.cancel_on_disconnect: true",
        only=("cancellation",),
        fix="mid-stream and storms (over their bounds): none found",
    ),
    Peer(
        "polling-100ms",
        f"{_PY} -m benchmarks.peers.polling_proxy {{upstream}} {{port}}",
        "starlette",
        "checks is_disconnected() every 100 ms",
        fix="a shorter interval only shortens the wait; watching `http.disconnect` ends it",
    ),
)
