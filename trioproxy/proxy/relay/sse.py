"""Server-sent-event framing the relay needs: counting events, and the error event.

The relay forwards upstream bytes untouched; these helpers only look at them
(to count events for the access log) or add one final event when the upstream
breaks mid-stream. An event ends at a blank line, written ``\\n\\n`` or
``\\r\\n\\r\\n`` (or mixed); a terminator may be split across chunks.
"""

import json

__all__ = ["EventCounter", "error_event"]


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
