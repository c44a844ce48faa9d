"""The raw socket upstream behind the live proxy: it writes whatever a case says.

Its listening socket is bound once (the proxy's settings name its port) and
served only while a case runs, each case in its own ``trio.run``: a dup of
the socket is wrapped for that run and closed with it. Each connection gets
one request read and one answer written, then it is closed, so a hostile
answer can never be taken as the start of the next one.
"""

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

__all__ = ["Received", "ScriptedUpstream", "plain_answer"]

_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d{1,9})[ \t]*\r?$")
_CHUNKED = re.compile(rb"(?im)^transfer-encoding:.*chunked")


@dataclass(frozen=True)
class Received:
    method: bytes
    target: bytes
    raw: bytes
    """The head and the first 4 KiB of the body, as they came."""


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


@dataclass
class ScriptedUpstream:
    answer: Sequence[bytes] = ()
    """The bytes of the next answers, written one piece at a time; empty: plain_answer."""
    pace_s: float = 0.0
    """A pause after each piece: a trickle, each read of the proxy's seeing a little more."""
    hold: bool = False
    """Keep the connection open after the answer (an upstream that never ends its body)."""
    received: list[Received] = field(default_factory=list)
    _sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]

    def script(self, answer: Sequence[bytes] = (), hold: bool = False, pace_s: float = 0.0) -> None:
        """What the next case's connections get; the defaults: plain_answer."""
        self.answer, self.hold, self.pace_s = answer, hold, pace_s

    def close(self) -> None:
        self._sock.close()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._sock.dup()))
        async with listener:
            task_status.started()
            await trio.serve_listeners(self._handle, [listener])

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                received = await _read_request(stream)
                self.received.append(received)
                for piece in self.answer or plain_answer(received):
                    await stream.send_all(piece)
                    if self.pace_s:
                        await trio.sleep(self.pace_s)
                if self.hold:
                    await trio.sleep_forever()  # until the case's run ends
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                pass  # the proxy let go first: the answer is moot


async def _read_request(stream: trio.SocketStream) -> Received:
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
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
