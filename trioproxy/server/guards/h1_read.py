"""Reading a client's HTTP/1.1 request by hand: its head, then its body's framing.

The grammar is h11's (its ``_abnf``: a request line, field lines, bare LF
accepted as a line end), and every request h11's server side refuses is
refused here with the same status. The guard's rules are stricter than h11's,
and come first (RFC 9112 sections 5.2, 6.1, 6.3): an obs-folded line, more
than one ``Content-Length`` line or one that is not all digits, and
``Content-Length`` beside ``Transfer-Encoding`` are all refused (400), where
h11 would unfold, merge and prefer chunked. Then, in h11's order: a malformed
line (400), a transfer coding other than ``chunked`` (501), a missing or
repeated ``Host`` in HTTP/1.1 (400), a version other than 1.0 and 1.1 (505;
``PRI * HTTP/2.0``, the HTTP/2 preface, is let through for hypercorn's h2 side).

A request is returned as an :class:`h11.Request`, which is what hypercorn's
read loop looks for, built from the values checked here rather than through
h11's constructor, which would validate them all a second time.
"""

import re

import h11

__all__ = [
    "FIELD_LINE",
    "FIELD_NAME",
    "FIELD_VALUE",
    "HEAD_END",
    "MAX_LENGTH_DIGITS",
    "ChunkedBody",
    "ParsedRequest",
    "parse_request",
    "refuse",
]

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_CHAR = rb"[^\x00\s]"  # h11's field-vchar: visible characters and obs-text
_FIELD_CONTENT = rb"%s+(?:[ \t]+%s+)*" % (_FIELD_CHAR, _FIELD_CHAR)
_REQUEST_LINE = re.compile(rb"(%s) ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])" % _TOKEN)
FIELD_LINE = re.compile(rb"(%s):[ \t]*((?:%s)?)[ \t]*" % (_TOKEN, _FIELD_CONTENT))
"""One field line, its value without the whitespace around it (fullmatch)."""
FIELD_NAME = re.compile(_TOKEN)
FIELD_VALUE = re.compile(rb"(?:%s)?" % _FIELD_CONTENT)
"""A value as sent: no whitespace around it (fullmatch)."""
_CHUNK_HEADER = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*\r\n")
MAX_LENGTH_DIGITS = 20  # h11's bound: about 10**20 bytes
HEAD_END = re.compile(rb"\n\r?\n")
"""A head (or a trailer section) ends at its first empty line."""
_VERSIONS = frozenset({b"1.0", b"1.1"})


class ParsedRequest(h11.Request):
    """An ``h11.Request`` whose fields this module already validated.

    ``headers`` is a list of (lower-case name, value) pairs, as iterating
    h11's ``Headers`` gives; ``raw_headers`` keeps the names as sent.
    """

    __slots__ = ("body_length", "chunked", "expects_continue", "keep_alive", "raw_headers")

    raw_headers: list[tuple[bytes, bytes]]
    body_length: int
    """With ``chunked`` false: the body's bytes (0 without ``Content-Length``)."""
    chunked: bool
    keep_alive: bool
    """HTTP/1.1 without ``Connection: close`` (h11 keeps no HTTP/1.0 connection)."""
    expects_continue: bool
    """``Expect: 100-continue`` in HTTP/1.1 (RFC 9110 section 10.1.1)."""

    def __init__(
        self, method: bytes, target: bytes, version: bytes, fields: list[tuple[bytes, bytes]]
    ) -> None:
        # h11.Request is a frozen dataclass: its fields are set as its own constructor does.
        for name, value in (("method", method), ("target", target), ("http_version", version)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "headers", fields)


def refuse(message: str, status: int = 400) -> h11.RemoteProtocolError:
    return h11.RemoteProtocolError(message, error_status_hint=status)


def _tokens(value: bytes) -> list[bytes]:
    """A comma-separated list, as h11's ``get_comma_header`` reads one."""
    return [token.strip() for token in value.lower().split(b",") if token.strip()]


def parse_request(head: bytes, raw_names: bool = False) -> ParsedRequest:
    """The request in ``head``: its lines up to the blank one, the last LF left off.

    Raises ``h11.RemoteProtocolError`` with the status to answer.
    """
    lines = head.split(b"\n")
    for i, line in enumerate(lines):
        if line.endswith(b"\r"):
            lines[i] = line[:-1]
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    fields: list[tuple[bytes, bytes]] = []
    raw: list[tuple[bytes, bytes]] = []
    lengths: list[bytes] = []
    codings: list[bytes] = []
    hosts = 0
    connection: list[bytes] = []
    expect: list[bytes] = []
    malformed = request_line is None
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise refuse("obs-fold in a request header")
        field = FIELD_LINE.fullmatch(line)
        if field is None:
            malformed = True
            continue
        raw_name, value = field.groups()
        name = raw_name.lower()
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            value = value.lower()
            codings.append(value)
        elif name == b"host":
            hosts += 1
        elif name == b"connection":
            connection += _tokens(value)
        elif name == b"expect":
            expect += _tokens(value)
        fields.append((name, value))
        if raw_names:
            raw.append((raw_name, value))
    if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
        raise refuse("more than one Content-Length, or one that is not a number")
    if lengths and codings:
        raise refuse("Content-Length with Transfer-Encoding")
    if malformed or request_line is None:
        raise refuse("illegal request line or header line")
    if lengths and len(lengths[0]) > MAX_LENGTH_DIGITS:
        raise refuse("bad Content-Length")
    if len(codings) > 1:
        raise refuse("multiple Transfer-Encoding headers", 501)
    if codings and codings[0] != b"chunked":
        raise refuse("Only Transfer-Encoding: chunked is supported", 501)
    method, target, version = request_line.groups()
    if version == b"1.1" and hosts == 0:
        raise refuse("Missing mandatory Host: header")
    if hosts > 1:
        raise refuse("Found multiple Host: headers")
    if version not in _VERSIONS and not (method == b"PRI" and target == b"*" and version == b"2.0"):
        raise refuse("HTTP version not supported", 505)
    request = ParsedRequest(method, target, version, fields)
    http11 = version >= b"1.1"
    for name, value in (
        ("raw_headers", raw if raw_names else fields),
        ("body_length", int(lengths[0]) if lengths else 0),
        ("chunked", bool(codings)),
        ("keep_alive", http11 and b"close" not in connection),
        ("expects_continue", http11 and b"100-continue" in expect),
    ):
        object.__setattr__(request, name, value)
    return request


class ChunkedBody:
    """A chunked request body (RFC 9112 section 7.1), read as h11 reads one.

    Extensions are read and dropped; trailer fields are checked as field
    lines (an obs-fold refused) and dropped, since nothing downstream reads them.
    """

    __slots__ = ("_discard", "_left", "_trailer")

    def __init__(self) -> None:
        self._left = 0
        """Bytes of the current chunk still to come."""
        self._discard = b""
        """What remains of the CRLF after a chunk's data."""
        self._trailer = False

    def read(self, buf: bytearray) -> bytes | None:
        """The next piece of body data (``b""`` at the body's end), or None for more bytes.

        Takes what it reads off the front of ``buf``.
        """
        if self._trailer:
            return b"" if _take_trailer(buf) else None
        if self._discard:
            got = bytes(buf[: len(self._discard)])
            if not self._discard.startswith(got):
                raise refuse("malformed chunk footer")
            del buf[: len(got)]
            self._discard = self._discard[len(got) :]
            if self._discard:
                return None
        if self._left == 0:
            end = buf.find(b"\r\n")
            if end < 0:
                return None
            header = _CHUNK_HEADER.fullmatch(buf, 0, end + 2)
            if header is None:
                raise refuse("illegal chunk header")
            self._left = int(header.group(1), 16)
            del buf[: end + 2]
            if self._left == 0:
                self._trailer = True
                return self.read(buf)
        if not buf:
            return None
        data = bytes(buf[: self._left])
        del buf[: len(data)]
        self._left -= len(data)
        if self._left == 0:
            self._discard = b"\r\n"
        return data


def _take_trailer(buf: bytearray) -> bool:
    """Take the trailer section off ``buf`` if it is whole; refuse a malformed one."""
    if buf[:1] == b"\n" or buf[:2] == b"\r\n":  # no trailer fields
        del buf[: 1 if buf[:1] == b"\n" else 2]
        return True
    blank = HEAD_END.search(buf)
    if blank is None:
        return False
    for line in bytes(buf[: blank.start()]).split(b"\n"):
        line = line[:-1] if line.endswith(b"\r") else line
        if line[:1] in (b" ", b"\t") or FIELD_LINE.fullmatch(line) is None:
            raise refuse("illegal trailer line")
    del buf[: blank.end()]
    return True
