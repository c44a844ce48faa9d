"""The upstream side's HTTP/1.1, by hand: a request's bytes, a response's head and its framing.

Why not h11 here: per proxied request its event objects, header
normalization and state machine cost more CPU than the rest of the
upstream exchange, and a stop waits in line behind that work. The proxy
speaks to its upstreams in one narrow way (one request, whole, then its
response), so what h11 checks that matters here is kept:

- the request's head carries no bare CR, LF or NUL that could split it;
- the response's status line is ``HTTP/1.0`` or ``HTTP/1.1`` and a three
  digit status; field names are tokens and values visible characters,
  spaces and tabs (RFC 9110 section 5.5); a folded line or a head over
  ``MAX_HEAD`` bytes is refused;
- the body's framing follows RFC 9112 section 6.3: none for HEAD, 1xx, 204
  and 304; chunked when ``Transfer-Encoding`` says so (any other coding is
  refused); else ``Content-Length`` (one value, or equal ones); else up to
  the connection's close, which is never reused;
- a connection is kept only for HTTP/1.1 without ``Connection: close``.
"""

import re
from dataclasses import dataclass
from enum import Enum

__all__ = ["MAX_HEAD", "Framing", "Head", "ProtocolError", "parse_head", "request_head"]

MAX_HEAD = 64 * 1024

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(rb"\r?\n")
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: .*)?", re.DOTALL)
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEAD_CHARS = bytes([9, 10, 13, *range(0x20, 0x7F), *range(0x80, 0x100)])
"""What a head may hold: visible characters, spaces, HTAB, and CR and LF to end lines."""
_NO_BODY_STATUS = frozenset({204, 304})


class ProtocolError(ValueError):
    """The upstream's answer is not HTTP/1.1 as this client reads it."""


class Framing(Enum):
    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"
    """Up to the connection's close."""


@dataclass(slots=True)
class Head:
    status: int
    headers: list[tuple[bytes, bytes]]
    """Names in lower case."""
    framing: Framing
    length: int
    """With ``Framing.LENGTH``: the body's bytes."""
    keep_alive: bool


def request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method, target)]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"\r\n")
    head = b"\r\n".join(lines)
    # One count instead of a check per field: a CR or LF inside a name,
    # value or target would split the head (request smuggling).
    if head.count(b"\n") != len(lines) or head.count(b"\r") != len(lines) or b"\0" in head:
        raise ProtocolError("a request header holds CR, LF or NUL")
    return head


def parse_head(data: bytes, head_request: bool) -> tuple[Head, int] | None:
    """The response head at the start of ``data`` and where its body starts, or
    None while it is incomplete. Informational (1xx) heads are skipped."""
    start = 0
    while True:
        # Byte searches first: a regular expression costs more than the rest.
        end = data.find(b"\r\n\r\n", start)
        if end >= 0 and b"\n\n" not in data[start:end] and b"\n\r\n" not in data[start:end]:
            body_at = end + 4
        else:  # a head whose lines end in bare LF, or one not all in yet
            found = _HEAD_END.search(data, start)
            if found is None:
                if len(data) - start > MAX_HEAD:
                    raise ProtocolError("response head too long")
                return None
            end, body_at = found.start(), found.end()
        if end - start > MAX_HEAD:
            raise ProtocolError("response head too long")
        head = _parse(data[start:end], head_request)
        start = body_at
        if head is not None:
            return head, start


def _parse(raw: bytes, head_request: bool) -> Head | None:
    if raw.translate(None, _HEAD_CHARS) or raw.count(b"\r") != raw.count(b"\r\n"):
        raise ProtocolError("control character in the response head")
    lines = raw.split(b"\r\n")
    if len(lines) != raw.count(b"\n") + 1:  # some lines end in a bare LF
        lines = _LINE.split(raw)
    status_line, *lines = lines
    status = _STATUS.fullmatch(status_line)
    if status is None:
        raise ProtocolError(f"bad status line {status_line[:60]!r}")
    code = int(status[2])
    if code < 100:
        raise ProtocolError(f"bad status {code}")
    headers = []
    chunked = False
    lengths: set[bytes] = set()
    close = status[1] == b"0"
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TOKEN_CHARS):  # a folded line neither
            raise ProtocolError(f"bad header line {line[:60]!r}")
        name, value = name.lower(), value.strip(b" \t")
        headers.append((name, value))
        if name == b"transfer-encoding":
            if value.lower() != b"chunked" or chunked:
                raise ProtocolError(f"unsupported Transfer-Encoding {value[:40]!r}")
            chunked = True
        elif name == b"content-length":
            lengths.add(value)
        elif name == b"connection":
            close = close or b"close" in (t.strip().lower() for t in value.split(b","))
    if code < 200:
        return None
    framing, length = Framing.CLOSE, 0
    if head_request or code in _NO_BODY_STATUS:
        framing = Framing.NONE
    elif chunked:
        framing = Framing.CHUNKED
    elif lengths:
        if len(lengths) > 1 or not (value := lengths.pop()).isdigit() or len(value) > 18:
            raise ProtocolError("bad Content-Length")
        framing, length = Framing.LENGTH, int(value)
    return Head(code, headers, framing, length, keep_alive=not close)
