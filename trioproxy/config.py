"""The proxy's settings, in one typed object with units in the names."""

from dataclasses import dataclass

from trioproxy.routing import Router, Upstream

__all__ = ["MiB", "ProxyConfig"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    upstream: str
    """The single-upstream form: every request goes to this OpenAI-style base URL."""
    upstream_key: str | None = None
    upstreams: tuple[Upstream, ...] = ()
    """Several upstreams, routed by model (takes the place of ``upstream``)."""
    connect_timeout_s: float = 10.0
    headers_timeout_s: float = 600.0
    """From request sent to upstream response headers: the model's queue and prompt."""
    idle_timeout_s: float = 300.0
    """Longest upstream silence between two body chunks."""
    cooldown_s: float = 10.0
    """How long an upstream whose connections fail is skipped when it has replicas."""
    max_body_bytes: int = 32 * MiB
    body_timeout_s: float = 60.0
    """The whole request body must arrive within this long (else 408)."""
    upstream_ca: str | None = None
    """PEM bundle to verify an HTTPS upstream with, instead of the system's."""
    api_keys: frozenset[str] = frozenset()
    """Keys clients must send as ``Authorization: Bearer``; empty: no check."""
    admin_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    heartbeat_s: float = 0.0
    """SSE comment every this many seconds of upstream silence; 0: none."""
    early_headers: bool = False
    """Answer 200 at once and send heartbeats while the upstream has not answered."""

    def router(self) -> Router:
        upstreams = self.upstreams or (Upstream("default", self.upstream, self.upstream_key),)
        return Router(upstreams)

    def __repr__(self) -> str:  # keys stay out of logs and tracebacks
        return f"ProxyConfig(upstreams={self.router().upstreams!r})"
