"""The tests' one raw socket upstream: it plays a script (write these bytes,
read the next request, hold, close or reset) and records what it received.

Its socket is bound when it is made (127.0.0.1, or ``host``, port 0), so its
port can go into settings before anything runs, and it is served by
:meth:`ScriptedUpstream.serve` in whichever trio run needs it: the test's own
(``await upstream.start(nursery)``) or each case's run of the fuzzer, a dup of
the socket wrapped for that run and closed with it.
"""

import contextlib
import re
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import trio

__all__ = ["Play", "Received", "ScriptedUpstream", "Then", "plain_answer"]

_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d{1,9})[ \t]*\r?$")
_CHUNKED = re.compile(rb"(?im)^transfer-encoding:.*chunked")


@dataclass(frozen=True)
class Received:
    method: bytes
    target: bytes
    raw: bytes
    """The head and the first 4 KiB of the body, as they came."""

    def header(self, name: bytes) -> bytes:
        """The first value of header ``name`` (lower case), or b""."""
        found = re.search(rb"(?im)^" + re.escape(name) + rb":[ \t]*(.*?)[ \t]*\r?$", self.raw)
        return found[1] if found else b""


def plain_answer(received: Received) -> Sequence[bytes]:
    """A valid answer: an event stream if the request asked for one, else JSON."""
    if b"text/event-stream" in received.raw.lower() or b'"stream": true' in received.raw:
        event = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n'
        kind = b"text/event-stream"
    else:
        event = b'{"object":"list","data":[{"id":"m","object":"model"}],"choices":[]}'
        kind = b"application/json"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (kind, len(event))
    return [head + b"connection: close\r\n\r\n" + event]


type Answer = Sequence[bytes] | Callable[[Received], Sequence[bytes]]
type Play = Callable[[trio.SocketStream, Received], Awaitable[None]]
type Then = Literal["close", "reset", "drain", "hold", "next"]
"""After the answer: close; reset (RST); read until the proxy closes, then set
``closed``; hold the connection open until the run ends; or read the next
request on the same connection (keep-alive)."""


@dataclass
class ScriptedUpstream:
    answer: Answer = ()
    """The pieces of each answer, written one at a time (or made from the
    request); empty: :func:`plain_answer`."""
    then: Then = "close"
    pace_s: float = 0.0
    """A pause after each piece: a trickle, each read of the proxy's seeing a little more."""
    play: Play | None = None
    """Instead of ``answer``: a coroutine given the connection once the request
    was read, for a script that waits on the test."""
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    ended: int = 0
    """Connections this side has closed (after its script, or the proxy's close)."""
    closed: trio.Event = field(default_factory=trio.Event)
    """Set when the proxy closed (or reset) a connection after a ``drain``."""
    _sock: socket.socket = field(init=False)
    _changed: trio.Event = field(init=False, default_factory=trio.Event)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self._sock.bind((self.host, 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        """The base URL a proxy's upstream setting names."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def script(self, answer: Answer = (), then: Then = "close", pace_s: float = 0.0) -> None:
        """What the next connections get; the defaults: plain_answer, then close."""
        self.answer, self.then, self.pace_s = answer, then, pace_s

    async def start(self, nursery: trio.Nursery) -> str:
        """Serve in ``nursery``'s run; returns :attr:`url`."""
        await nursery.start(self.serve)
        return self.url

    def close(self) -> None:
        self._sock.close()

    async def wait_ended(self, count: int) -> None:
        """Until ``count`` connections have been closed on this side."""
        while self.ended < count:
            await self._changed.wait()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._sock.dup()))
        async with listener:
            task_status.started()
            await trio.serve_listeners(self._handle, [listener])

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        # The proxy may let go first: the rest of the answer is moot.
        moot = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)
        try:
            async with stream:
                with contextlib.suppress(*moot):
                    await self._converse(stream)
        finally:
            self.ended += 1
            self._changed.set()
            self._changed = trio.Event()

    async def _converse(self, stream: trio.SocketStream) -> None:
        while (received := await _read_request(stream)) is not None:
            self.received.append(received)
            if self.play is not None:
                await self.play(stream, received)
                return
            answer = self.answer(received) if callable(self.answer) else self.answer
            for piece in answer or plain_answer(received):
                await stream.send_all(piece)
                if self.pace_s:
                    await trio.sleep(self.pace_s)
            if self.then != "next":
                await self._end(stream)
                return

    async def _end(self, stream: trio.SocketStream) -> None:
        if self.then == "hold":
            await trio.sleep_forever()  # until the run ends
        elif self.then == "reset":
            # Linger on with a zero timeout: close() sends RST, not FIN.
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif self.then == "drain":
            try:
                while await stream.receive_some(65536):
                    pass
            finally:  # an EOF or a reset (the proxy closed with bytes unread)
                self.closed.set()


async def _read_request(stream: trio.SocketStream) -> Received | None:
    """The next request, whole; None when the proxy closed before sending one."""
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                if not data:
                    return None
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if length := _LENGTH.search(head):
            while len(body) < int(length[1]) and (chunk := await stream.receive_some(65536)):
                body += chunk
        elif _CHUNKED.search(head):
            while not body.endswith(b"0\r\n\r\n") and (chunk := await stream.receive_some(65536)):
                body += chunk
    method, _, rest = head.partition(b" ")
    return Received(method, rest.partition(b" ")[0], head + b"\r\n\r\n" + body[:4096])
