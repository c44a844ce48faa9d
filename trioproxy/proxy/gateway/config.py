"""The proxy's settings, in one typed object with units in the names."""

from dataclasses import dataclass, field

from trioproxy.proxy.upstream.routing import Router, Upstream

__all__ = ["ClientKey", "MiB", "ProxyConfig"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A key clients send, by the name logs, metrics and the admin show instead."""

    name: str
    key: str = field(repr=False)
    max_concurrent: int | None = None
    """Requests in flight at once with this key; past it, 429."""
    per_minute: int | None = None
    """Requests started in any 60 s with this key; past it, 429."""


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
    client_keys: tuple[ClientKey, ...] = ()
    """Named keys, with limits of their own; together with ``api_keys``."""
    admin_key: str | None = None
    metrics_key: str | None = None
    """``/metrics`` needs this key or the admin key; None: ``/metrics`` is open."""
    cors_origins: tuple[str, ...] = ()
    heartbeat_s: float = 0.0
    """SSE comment every this many seconds of upstream silence; 0: none."""
    early_headers: bool = False
    """Answer 200 at once and send heartbeats while the upstream has not answered."""

    def keys(self) -> tuple[ClientKey, ...]:
        """Every key a client may send: the named ones, then ``api_keys`` as key-1, key-2, ..."""
        unnamed = (ClientKey(f"key-{i}", k) for i, k in enumerate(sorted(self.api_keys), 1))
        return (*self.client_keys, *unnamed)

    def router(self) -> Router:
        upstreams = self.upstreams or (Upstream("default", self.upstream, self.upstream_key),)
        return Router(upstreams)

    def __repr__(self) -> str:  # keys stay out of logs and tracebacks
        return f"ProxyConfig(upstreams={self.router().upstreams!r})"
