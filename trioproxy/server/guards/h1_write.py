"""Writing the server's HTTP/1.1 responses by hand: the head, then the body's framing.

The bytes are h11's for the same response (its ``Connection``'s clean-up of
a response's headers, and its writers), which ``tests/test_h1_wire.py``
checks by hypothesis:

- every field is checked once, here, whoever made it (the application's
  headers pass through hypercorn's ``build_and_validate_headers``, which only
  strips them): a name is a token, a value holds no NUL, CR, LF or other
  whitespace than inner spaces and tabs, so no value can split the head;
- the body's framing follows RFC 9112 section 6.3 as h11 chooses it: none
  for HEAD, 204, 304 and a 2xx to CONNECT; else ``Transfer-Encoding:
  chunked`` (the only coding sent); else ``Content-Length``; else, with
  neither, chunked for an HTTP/1.1 client, and for HTTP/1.0 no framing
  header and the connection's close (then ``Connection: close`` is said);
- a connection that is not kept says ``Connection: close``. One deviation
  from h11: no tunnel is served, so a 2xx to CONNECT ends the connection
  (and says so) where h11 would switch protocols.

A response that breaks a rule raises ``h11.LocalProtocolError``, as h11 does.
"""

from enum import Enum

import h11

from trioproxy.server.guards.h1_read import FIELD_NAME, FIELD_VALUE, MAX_LENGTH_DIGITS

__all__ = ["BodyWriter", "Framing", "informational_head", "response_head"]

_NO_BODY_STATUS = frozenset({204, 304})

_Field = tuple[bytes, bytes, bytes]
"""(name as given, lower-case name, value)"""


class Framing(Enum):
    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"
    """Up to the connection's close (an HTTP/1.0 client, no length known)."""


def _fields(headers: list[tuple[bytes, bytes]]) -> list[_Field]:
    """Each field checked as h11 checks it; a repeated equal length dropped, as h11 does."""
    out = []
    length: bytes | None = None
    chunked = False
    for name, value in headers:
        if FIELD_NAME.fullmatch(name) is None or FIELD_VALUE.fullmatch(value) is None:
            raise h11.LocalProtocolError(f"illegal header field {name!r}: {value!r}")
        lower = name.lower()
        if lower == b"content-length":
            values = {part.strip() for part in value.split(b",")}
            value = values.pop()
            if values or not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
                raise h11.LocalProtocolError("bad Content-Length")
            if length is not None:
                if length != value:
                    raise h11.LocalProtocolError("conflicting Content-Length headers")
                continue
            length = value
        elif lower == b"transfer-encoding":
            value = value.lower()
            if chunked or value != b"chunked":
                raise h11.LocalProtocolError("Only Transfer-Encoding: chunked is supported")
            chunked = True
        out.append((name, lower, value))
    return out


def _tokens(fields: list[_Field], name: bytes) -> set[bytes]:
    return {
        token.strip()
        for _, lower, value in fields
        if lower == name
        for token in value.lower().split(b",")
        if token.strip()
    }


def _replace(fields: list[_Field], name: bytes, values: list[bytes]) -> list[_Field]:
    """h11's ``set_comma_header``: ``name`` dropped, its new values appended, title-cased."""
    kept = [field for field in fields if field[1] != name]
    return kept + [(name.title(), name, value) for value in values]


def _framing(method: bytes | None, status: int, fields: list[_Field]) -> tuple[Framing, int]:
    """h11's ``_body_framing`` for a response."""
    if (
        status in _NO_BODY_STATUS
        or method == b"HEAD"
        or (method == b"CONNECT" and 200 <= status < 300)
    ):
        return Framing.NONE, 0
    for _, lower, _value in fields:
        if lower == b"transfer-encoding":
            return Framing.CHUNKED, 0
    for _, lower, value in fields:
        if lower == b"content-length":
            return Framing.LENGTH, int(value)
    return Framing.CLOSE, 0


def _head(status: int, reason: bytes, fields: list[_Field]) -> bytes:
    # h11 writes Host first (RFC 9110 section 7.2 asks it of requests).
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    lines += [b"%s: %s\r\n" % (raw, value) for raw, lower, value in fields if lower == b"host"]
    lines += [b"%s: %s\r\n" % (raw, value) for raw, lower, value in fields if lower != b"host"]
    lines.append(b"\r\n")
    return b"".join(lines)


def response_head(
    status: int,
    headers: list[tuple[bytes, bytes]],
    *,
    method: bytes | None,
    http11_client: bool,
    keep_alive: bool,
    reason: bytes = b"",
) -> tuple[bytes, Framing, int, bool]:
    """A final response's head, its body's framing and length, and whether the
    connection is kept after it.

    ``method`` is the request's (None when answering bytes that were no
    request); ``keep_alive`` whether the request lets the connection be kept.
    """
    if not 200 <= status < 1000:
        raise h11.LocalProtocolError("Response status_code should be in range [200, 1000)")
    fields = _fields(headers)
    need_close = method == b"CONNECT" and 200 <= status < 300
    # The framing headers are those of GET when the request was HEAD.
    shown = b"GET" if method == b"HEAD" else method
    if _framing(shown, status, fields)[0] in (Framing.CHUNKED, Framing.CLOSE):
        fields = _replace(fields, b"content-length", [])
        if http11_client:
            fields = _replace(fields, b"transfer-encoding", [b"chunked"])
        else:
            fields = _replace(fields, b"transfer-encoding", [])
            need_close = need_close or method != b"HEAD"
    if not keep_alive or need_close:
        tokens = _tokens(fields, b"connection") - {b"keep-alive"} | {b"close"}
        fields = _replace(fields, b"connection", sorted(tokens))
    framing, length = _framing(method, status, fields)
    keeps = keep_alive and b"close" not in _tokens(fields, b"connection")
    return _head(status, reason, fields), framing, length, keeps


def informational_head(
    status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b""
) -> bytes:
    """A 1xx head; never 101, since no protocol switch is served."""
    if not 100 <= status < 200:
        raise h11.LocalProtocolError(
            "InformationalResponse status_code should be in range [100, 200)"
        )
    if status == 101:
        raise h11.LocalProtocolError("no protocol switch is served")
    return _head(status, reason, _fields(headers))


class BodyWriter:
    """The framing of one response's body, as h11's writers frame it."""

    __slots__ = ("_framing", "_left")

    def __init__(self, framing: Framing, length: int) -> None:
        self._framing = framing
        self._left = length
        """With a length (or none): the bytes still owed."""

    def data(self, data: bytes) -> bytes:
        framing = self._framing
        if framing is Framing.CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if framing is Framing.CLOSE:
            return data
        if len(data) > self._left:
            raise h11.LocalProtocolError("Too much data for declared Content-Length")
        self._left -= len(data)
        return data

    def end(self) -> bytes:
        if self._framing is Framing.CHUNKED:
            return b"0\r\n\r\n"
        if self._left:
            raise h11.LocalProtocolError("Too little data for declared Content-Length")
        return b""
