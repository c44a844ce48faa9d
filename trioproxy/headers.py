"""Which headers cross the proxy, in each direction.

Pure functions over ASGI-style header lists (lower-case ``bytes`` names);
no I/O. Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection
and must not be forwarded; ``host`` and ``content-length`` are recomputed by
the upstream client for the new connection.
"""

from collections.abc import Iterable

__all__ = ["Headers", "request_headers", "response_headers"]

type Headers = list[tuple[bytes, bytes]]

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
    }
)
_RECOMPUTED_UPSTREAM = frozenset({b"host", b"content-length"})


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names a ``Connection`` header marks as hop-by-hop as well."""
    return frozenset(
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    )


_CREDENTIALS = frozenset({b"authorization", b"x-api-key", b"api-key"})
"""Where clients put API keys: OpenAI's, Anthropic's and Azure's headers."""


def request_headers(
    headers: Headers, upstream_key: str | None, *, strip_credentials: bool = False
) -> Headers:
    """Client request headers as the upstream should see them.

    ``strip_credentials`` drops every credential header the client sent (the
    proxy's own client keys must never reach an upstream); ``upstream_key``
    then goes as ``Authorization: Bearer``, so a client never needs, or sees,
    the real key.
    """
    drop = _HOP_BY_HOP | _RECOMPUTED_UPSTREAM | _connection_tokens(headers)
    if strip_credentials or upstream_key is not None:
        drop |= _CREDENTIALS
    kept = [(name, value) for name, value in headers if name.lower() not in drop]
    if upstream_key is not None:
        kept.append((b"authorization", b"Bearer " + upstream_key.encode("latin-1")))
    return kept


def response_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Upstream response headers as the client should see them."""
    listed = list(headers)
    drop = _HOP_BY_HOP | _connection_tokens(listed)
    return [(name.lower(), value) for name, value in listed if name.lower() not in drop]
