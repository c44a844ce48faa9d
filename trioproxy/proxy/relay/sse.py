"""Server-sent-event framing the relay needs: counting events, the error event, and
the events' fields for the assembler of ``stream_upstream`` (:func:`events`).

The relay forwards upstream bytes untouched; these helpers only look at them
(to count events for the access log) or add one final event when the upstream
breaks mid-stream. An event ends at a blank line, written ``\\n\\n`` or
``\\r\\n\\r\\n`` (or mixed); a terminator may be split across chunks.
"""

import json

__all__ = ["EventCounter", "error_event", "events"]


class EventCounter:
    """Counts complete SSE events in a byte stream fed chunk by chunk."""

    __slots__ = ("_tail", "events")

    def __init__(self) -> None:
        self.events = 0
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        # Two bytes of the previous chunk are enough to see a terminator that
        # straddles the boundary; one that lies wholly in them was counted then.
        data = self._tail + chunk
        seen = data.count(b"\n\n") + data.count(b"\n\r\n") - self._tail.count(b"\n\n")
        self.events += seen
        self._tail = data[-2:]


def error_event(message: str, error_type: str, code: str | None = None) -> bytes:
    """An SSE ``error`` event with an OpenAI-style error object."""
    payload = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"


def events(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The whole events in ``data`` as ``(field, data)`` pairs, and the bytes left over.

    ``field`` is ``event``'s name (``b""`` for none), or ``b"error"`` for an ``error:``
    line (llama.cpp's server writes its errors so). Lines end in LF, CRLF or CR; a
    CR at the very end is kept for the next chunk's LF.
    """
    if data.endswith(b"\r"):
        data, held = data[:-1], b"\r"
    else:
        held = b""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    found: list[tuple[bytes, bytes]] = []
    start = 0
    name, parts = b"", list[bytes]()
    for i, line in enumerate(lines[:-1]):
        if not line:
            if parts:
                found.append((name, b"\n".join(parts)))
            name, parts, start = b"", [], i + 1
            continue
        key, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if key == b"data":
            parts.append(value)
        elif key == b"event":
            name = value
        elif key == b"error":  # not SSE, but what some servers send
            name = b"error"
            parts.append(value)
    rest = b"\n".join(lines[start:]) + held
    return found, rest
