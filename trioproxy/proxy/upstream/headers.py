"""Which headers cross the proxy, in each direction.

Pure functions over ASGI-style header lists (lower-case ``bytes`` names);
no I/O. Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection
and must not be forwarded; ``host`` and ``content-length`` are recomputed by
the upstream client for the new connection, and ``content-length`` again on
the way back.
"""

from collections.abc import Iterable

__all__ = ["CREDENTIALS", "DROP_UP", "HOP_BY_HOP", "Headers", "request_headers", "response_headers"]

type Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
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


CREDENTIALS = frozenset({b"authorization", b"x-api-key", b"api-key"})
"""Where clients put API keys: OpenAI's, Anthropic's and Azure's headers."""


DROP_UP = HOP_BY_HOP | _RECOMPUTED_UPSTREAM
_DROP_DOWN = HOP_BY_HOP | {b"content-length"}


def request_headers(
    headers: Headers,
    drop: frozenset[bytes] = DROP_UP,
    added: Iterable[tuple[bytes, bytes]] = (),
) -> Headers:
    """Client request headers as the upstream should see them: those named in ``drop``
    left out, then ``added`` appended.

    An upstream's :class:`~trioproxy.proxy.upstream.conventions.Conventions` hold
    both: ``drop`` names every credential header when the proxy holds the key or
    checks client keys (a client never needs, or sees, the real key, and the
    proxy's own client keys never reach an upstream), and every header the
    upstream's conventions add, so the upstream gets one value, the configured one.
    """
    if any(name == b"connection" for name, _ in headers):  # names it marks go too
        drop = drop | _connection_tokens(headers)
    # hypercorn hands names in lower case (h11 and h2 both normalize them).
    kept = [(name, value) for name, value in headers if name not in drop]
    kept.extend(added)
    return kept


def response_headers(headers: Iterable[tuple[bytes, bytes]], length: int | None = None) -> Headers:
    """Upstream response headers as the client should see them (names in lower case).

    ``Content-Length`` is the proxy's to say, once: ``length`` when the body
    goes on as the upstream framed it, else none. A body that is dechunked,
    or that the proxy may add to (an event stream's heartbeats and error
    event), is framed anew by the client's connection, and the upstream's
    length would be a lie there.
    """
    listed = [(name.lower(), value) for name, value in headers]
    drop = _DROP_DOWN
    if any(name == b"connection" for name, _ in listed):
        drop = drop | _connection_tokens(listed)
    kept = [(name, value) for name, value in listed if name not in drop]
    if length is not None:
        kept.append((b"content-length", b"%d" % length))
    return kept
