"""The proxy's settings, in one typed object with units in the names."""

from dataclasses import dataclass

__all__ = ["MiB", "ProxyConfig"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    upstream: str
    """OpenAI-style base URL: ``/v1/chat/completions`` goes to ``{upstream}/chat/completions``."""
    upstream_key: str | None = None
    connect_timeout_s: float = 10.0
    headers_timeout_s: float = 600.0
    """From request sent to upstream response headers: the model's queue and prompt."""
    idle_timeout_s: float = 300.0
    """Longest upstream silence between two body chunks."""
    max_body_bytes: int = 32 * MiB
    upstream_ca: str | None = None
    """PEM bundle to verify an HTTPS upstream with, instead of the system's."""

    def upstream_url(self, raw_path: bytes, query: bytes) -> str:
        # raw_path keeps the client's percent-encoding byte for byte.
        tail = raw_path[len(b"/v1") :].decode("latin-1")
        url = self.upstream.rstrip("/") + tail
        return f"{url}?{query.decode('latin-1')}" if query else url
