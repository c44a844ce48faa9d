"""A chunked response body, decoded as it arrives (RFC 9112 section 7.1).

Why not h11's reader: it runs once per relayed event, and there it cost a
fifth of the proxy's CPU (an event object, a state machine step and a
buffer copy per chunk). The common read holds one whole chunk; here that is
one search for the size line, one slice and a check of the CRLF after it
(a fast path for exactly that read, before the general loop).
What a read holds is handed on at once, joined: several chunks that came
together go to the client as one write.

Strict where h11 is: a size of hex digits, with optional extensions,
ended by CRLF; chunk data followed by CRLF; a trailer section ended by an
empty line. Lines are bounded, so an upstream cannot make the buffer grow
without end.
"""

import re

__all__ = ["ChunkError", "ChunkedBody"]

_MAX_LINE = 64 * 1024
"""The longest size line, or trailer section, kept while waiting for its end."""
_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")


class ChunkError(ValueError):
    """The upstream's chunked framing is broken."""


class ChunkedBody:
    __slots__ = ("_buf", "_crlf", "_left", "_trailer", "done", "extra")

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0
        """Bytes of the current chunk's data still to come."""
        self._crlf = False
        """The CRLF after a chunk's data is still to come."""
        self._trailer = False
        self.done = False
        """The last chunk and the trailer section are in."""
        self.extra = False
        """Bytes came after the body's end: the connection cannot be reused."""

    def feed(self, data: bytes) -> bytes:
        """The body bytes in ``data`` (with what was left over before), perhaps none."""
        if not (self._buf or self._left or self._crlf or self._trailer):
            # The common read: one whole chunk, no more, found with one search
            # and one match. Anything else takes the loop below from the same state.
            eol = data.find(b"\r\n")
            size = _SIZE.fullmatch(data, 0, eol) if eol > 0 else None
            if size is not None:
                start = eol + 2
                stop = start + int(size[1], 16)
                if start < stop == len(data) - 2 and data.endswith(b"\r\n"):
                    return data[start:stop]
        buf = self._buf + data if self._buf else data
        end = len(buf)
        pos = 0
        out: list[bytes] = []
        while pos < end or self._left:
            if self._left:
                take = min(self._left, end - pos)
                if not take:
                    break
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ChunkError("chunk data not followed by CRLF")
                pos += 2
                self._crlf = False
            if self._trailer:
                pos = self._skip_trailer(buf, pos)
                break
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if end - pos > _MAX_LINE:
                    raise ChunkError("chunk size line too long")
                break
            size = _SIZE.fullmatch(buf, pos, eol)
            if size is None:
                raise ChunkError(f"bad chunk size line {buf[pos:eol][:40]!r}")
            pos = eol + 2
            self._left = int(size[1], 16)
            self._trailer = not self._left  # the last chunk: its trailer section follows
        self._buf = buf[pos:] if pos < end else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _skip_trailer(self, buf: bytes, pos: int) -> int:
        """Past the trailer section (its fields are not relayed), if it is whole."""
        while not self.done:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if len(buf) - pos > _MAX_LINE:
                    raise ChunkError("trailer section too long")
                return pos
            self.done = eol == pos
            pos = eol + 2
        self.extra = pos < len(buf)
        return len(buf)
