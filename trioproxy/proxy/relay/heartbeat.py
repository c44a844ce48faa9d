"""SSE comment heartbeats while the upstream is silent after headers were sent.

Load balancers and proxies cut connections idle for 60-125 s; a model that
thinks longer than that loses its client. A comment line (``: keep-alive``)
is ignored by every SSE parser. It is only ever sent between two events,
never inside one that a chunk left half-written.
"""

import trio

from trioproxy.asgi import Send
from trioproxy.proxy.relay.sse import EventCounter

__all__ = ["Heartbeat"]

COMMENT = b": keep-alive\n\n"


class Heartbeat:
    """Sends the relay's chunks, and a comment when none came for ``every_s``."""

    __slots__ = (
        "_at_boundary",
        "_event_stream",
        "_last",
        "_send",
        "_started",
        "enabled",
        "every_s",
    )

    def __init__(self, send: Send, every_s: float) -> None:
        self._send = send
        self.every_s = every_s
        self.enabled = every_s > 0
        self._event_stream = False
        self._at_boundary = True
        self._last = 0.0
        self._started = trio.Event()

    def stream_started(self, counter: EventCounter | None) -> None:
        self._event_stream = counter is not None
        self._last = trio.current_time()
        self._started.set()

    async def send_chunk(self, chunk: bytes) -> None:
        if self.enabled:
            # Before the send: a beat due while it is under way must see this chunk.
            self._last = trio.current_time()
            self._at_boundary = chunk.endswith((b"\n\n", b"\r\n\r\n"))
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def run(self) -> None:
        await self._started.wait()
        if not self._event_stream:
            return  # a heartbeat would corrupt a JSON body
        while True:
            due = self._last + self.every_s
            await trio.sleep_until(due)
            if trio.current_time() < self._last + self.every_s:
                continue  # a chunk came meanwhile
            if self._at_boundary:
                await self._send({"type": "http.response.body", "body": COMMENT, "more_body": True})
            self._last = trio.current_time()
