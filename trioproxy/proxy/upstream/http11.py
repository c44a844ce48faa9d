"""The upstream side's HTTP/1.1, by hand: a request's bytes, a response's head and its framing.

Why not h11 here: per proxied request its event objects, header
normalization and state machine cost more CPU than the rest of the
upstream exchange, and a stop waits in line behind that work. The proxy
speaks to its upstreams in one narrow way (one request, whole, then its
response), so what h11 checks that matters here is kept:

- the request's head carries no bare CR, LF or NUL that could split it;
- the response's status line is ``HTTP/1.0`` or ``HTTP/1.1`` and a status
  from 100 to 599 (RFC 9110 section 15), never 101 (no upgrade is asked
  for); field names are tokens and values visible characters, spaces and
  tabs (RFC 9110 section 5.5); a folded line or a head over ``MAX_HEAD``
  bytes is refused;
- the heads before the final one (``100 Continue``, ``103 Early Hints``)
  are skipped, but every head byte counts: past ``MAX_HEADS`` bytes of
  heads in all, the answer is refused. Each byte is scanned once, however
  the heads are cut into reads, so a run of heads costs time in proportion
  to its bytes;
- the body's framing follows RFC 9112 section 6.3: none for HEAD, 1xx, 204
  and 304; chunked when ``Transfer-Encoding`` says so (any other coding is
  refused); else ``Content-Length`` (one value, or equal ones); else up to
  the connection's close, which is never reused. ``Content-Length`` with
  ``Transfer-Encoding`` is refused, as nginx does: an upstream whose
  framing can be read two ways is not relayed at all;
- a connection is kept only for HTTP/1.1 without ``Connection: close``.
"""

import re
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "MAX_HEAD",
    "MAX_HEADS",
    "Framing",
    "Head",
    "HeadReader",
    "ProtocolError",
    "parse_head",
    "request_head",
]

MAX_HEAD = 64 * 1024
"""The longest one head."""
MAX_HEADS = 128 * 1024
"""All head bytes up to the final head's end, informational heads included."""

_HEAD_END = re.compile(rb"\n\r?\n")
"""A head ends at its first empty line (lines end in CRLF, or in a bare LF)."""
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
    declared: int | None = None
    """The ``Content-Length`` that still describes the body as it is read:
    with ``Framing.LENGTH``, or an answer to HEAD. None for a chunked or
    close-delimited body, and for 204 and 304, which have no body."""


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


class HeadReader:
    """The final response head, from the bytes of a connection as they are read."""

    __slots__ = ("_buf", "_head_request", "_scan", "_spent")

    def __init__(self, head_request: bool) -> None:
        self._head_request = head_request
        self._buf = bytearray()
        """The head not yet whole, from its first byte."""
        self._scan = 0
        """Where the search for its end goes on: what is before was searched."""
        self._spent = 0
        """The bytes of the informational heads already skipped."""

    def feed(self, data: bytes | bytearray) -> tuple[Head, bytes] | None:
        """The final head and the body bytes that came with it, or None while it is incomplete."""
        buf = self._buf
        buf += data
        start = 0
        while (found := _HEAD_END.search(buf, self._scan)) is not None:
            end, body_at = found.start(), found.end()
            if end - start > MAX_HEAD:
                raise ProtocolError("response head too long")
            self._spent += body_at - start
            if self._spent > MAX_HEADS:
                raise ProtocolError(f"over {MAX_HEADS} bytes of response heads")
            if buf[end - 1 : end] == b"\r":
                end -= 1
            head = _parse(bytes(buf[start:end]), self._head_request)
            start = self._scan = body_at
            if head is not None:
                return head, bytes(buf[body_at:])
        if len(buf) - start > MAX_HEAD:
            raise ProtocolError("response head too long")
        if self._spent + len(buf) - start > MAX_HEADS:
            raise ProtocolError(f"over {MAX_HEADS} bytes of response heads")
        # Once per read, and only what follows a head that ended in this read.
        del buf[:start]
        self._scan = max(len(buf) - 2, 0)  # an end may begin in the last two bytes
        return None


def parse_head(data: bytes, head_request: bool) -> tuple[Head, int] | None:
    """The response head at the start of ``data`` and where its body starts, or
    None while it is incomplete. Informational (1xx) heads are skipped."""
    parsed = HeadReader(head_request).feed(data)
    if parsed is None:
        return None
    head, body = parsed
    return head, len(data) - len(body)


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
    if not 100 <= code <= 599 or code == 101:
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
    if chunked and lengths:  # RFC 9112 section 6.3: a sign of smuggling
        raise ProtocolError("Content-Length with Transfer-Encoding")
    declared = _length(lengths) if lengths else None
    framing, length = Framing.CLOSE, 0
    if code in _NO_BODY_STATUS:
        framing, declared = Framing.NONE, None
    elif head_request:
        framing = Framing.NONE
    elif chunked:
        framing = Framing.CHUNKED
    elif declared is not None:
        framing, length = Framing.LENGTH, declared
    return Head(code, headers, framing, length, keep_alive=not close, declared=declared)


def _length(values: set[bytes]) -> int:
    if len(values) > 1 or not (value := next(iter(values))).isdigit() or len(value) > 18:
        raise ProtocolError("bad Content-Length")
    return int(value)
