"""HTTP/2 guards: what one stream or one connection may do to the server.

1. Pseudo-headers. hypercorn decodes ``:method`` and ``:path`` as ASCII; one
   non-ASCII byte raised ``UnicodeDecodeError`` out of the connection's task
   and ended the server. A request whose ``:method`` is not an RFC 9110 token
   or whose ``:path`` is not printable ASCII is reset (PROTOCOL_ERROR) before
   hypercorn sees it.

2. DATA after close. A DATA frame for a stream hypercorn already closed (a
   POST answered before its body finished: a 413, a 404) raised ``KeyError``
   and killed the connection with every sibling stream (hypercorn issue
   #329). Such DATA is dropped, its flow-control credit returned.

3. Flow control. hypercorn's ``StreamBuffer.pop(0)`` (the client's window is
   0) returned ``b""``, "under the low-water mark", and unpaused the sender,
   so ``send()`` never blocked and a relay drained its upstream into memory
   for a client that read nothing. The buffer here unpauses on what is *left*
   in it, so ``send()`` waits once ``h2_stream_buffer_bytes`` are held.

4. Resets. A stream reset in the same read as the request that opened it
   never starts (no task, no upstream connection), and a connection that
   resets more than ``h2_max_resets_per_s`` streams in a second is closed
   with GOAWAY(ENHANCE_YOUR_CALM) (CVE-2023-44487, "rapid reset").

5. Frame budgets. Resets, PRIORITY, WINDOW_UPDATE, SETTINGS, PING, empty
   DATA and CONTINUATION frames are each counted per connection and per
   second as h2 parses them (:mod:`.frames`); the frame over its kind's
   budget ends the connection with GOAWAY(ENHANCE_YOUR_CALM), and hypercorn
   acts on no frame of that read.

6. Priorities are ignored (RFC 9113 section 5.3.2 allows it). hypercorn put
   every PRIORITY frame into its ``priority.PriorityTree``, streams never
   opened included: about 3 ms a frame with 999 siblings, so 2,000 frames a
   second stalled the process, and a chain of exclusive dependencies ended
   the connection in a ``RecursionError``. The tree now holds only the
   streams that were opened, each at the default weight: the send task
   takes them in turn.

7. Logs. hpack logs every header block it decodes, values and all (client
   and admin keys included), at DEBUG, and h2 can log frames: the serve loop
   sets their loggers above CRITICAL (:func:`quiet_header_loggers`), so
   ``--log-level DEBUG`` prints none of it.

8. A connection's end releases its streams' sends. hypercorn's send task
   stops when the connection closes, so an answer's end waiting in
   ``drain()`` for a window the client never opened (a zero-window client
   that left after a whole JSON answer was queued) waited for good: the
   request never ended, never logged, and held its key's slot. Every stream
   buffer is closed with the connection, which ends those sends.

Each guard is a method of :class:`GuardedH2Protocol`, hypercorn's HTTP/2
protocol class subclassed; hypercorn's own classes are never changed.
"""

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

import h2.errors
import h2.events
import h2.exceptions
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event
from hypercorn.protocol.h2 import BufferCompleteError, H2Protocol, StreamBuffer
from hypercorn.typing import AppWrapper, ConnectionState, TaskGroup, WorkerContext

from trioproxy.server.guards.frames import BudgetedFrameBuffer, FrameBudget
from trioproxy.server.guards.gone import call_client_gone
from trioproxy.server.guards.limits import limits_of

__all__ = ["FlowControlledBuffer", "GuardedH2Protocol", "quiet_header_loggers"]

log = logging.getLogger("trioproxy.server")

_PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PATH = re.compile(rb"[\x21-\x7e]+")


class FlowControlledBuffer(StreamBuffer):
    """A stream's send buffer holding at most ``high_water`` bytes (plus the one
    chunk that crossed it) for a client that is not reading.

    It has hypercorn's ``StreamBuffer`` interface (the protocol calls only
    that) and none of its state: every method is its own.
    """

    def __init__(self, high_water: int, frames: FrameBudget) -> None:
        # No super().__init__(): the base's state would go unused.
        self.buffer = bytearray()
        self.high_water = high_water
        self.frames = frames  # told of each DATA frame taken to be sent
        self._done = False  # no more pushes: the response's body has ended
        # As hypercorn's: both start unset, so the first drain waits for the
        # send task's first pop, and a push past high water for a pop after it.
        self._empty = trio.Event()  # set: all pushed so far was popped
        self._room = trio.Event()  # set: a pop left room since push last waited

    async def drain(self) -> None:
        await self._empty.wait()

    def set_complete(self) -> None:
        self._done = True

    async def close(self) -> None:
        self._done = True
        self.buffer = bytearray()
        self._empty.set()
        self._room.set()

    @property
    def complete(self) -> bool:
        return self._done and not self.buffer

    async def push(self, data: bytes) -> None:
        if self._done:
            raise BufferCompleteError()
        self.buffer.extend(data)
        if self._empty.is_set():
            self._empty = trio.Event()
        if len(self.buffer) >= self.high_water:
            await self._room.wait()
            self._room = trio.Event()

    async def pop(self, max_length: int) -> bytes:
        length = min(len(self.buffer), max_length)
        data = bytes(self.buffer[:length])
        del self.buffer[:length]
        if data:
            self.frames.data_frame_sent()  # hypercorn sends what it pops as one frame
        if len(self.buffer) < self.high_water // 2:  # what is left, not what was taken
            self._room.set()
        if not self.buffer:
            self._empty.set()
        return data


def _bad_request_line(event: h2.events.RequestReceived) -> str | None:
    pseudo: dict[bytes, bytes] = {}
    for name, value in event.headers or ():
        if name[:1] == b":":
            if name in pseudo:
                return f"repeated {name.decode('ascii', 'replace')}"
            pseudo[name] = value
    method, path = pseudo.get(b":method", b""), pseudo.get(b":path", b"")
    if not _TOKEN.fullmatch(method):
        return "bad :method"
    # Only a plain CONNECT has no :path; an extended one (:protocol, WebSocket
    # over HTTP/2) has one, and hypercorn decodes it like any other.
    plain_connect = method == b"CONNECT" and b":protocol" not in pseudo
    if not plain_connect and not _PATH.fullmatch(path):
        return "bad :path"
    return None


_SILENT = logging.CRITICAL + 1
_HEADER_LOGGERS = ("hpack", "h2")


def quiet_header_loggers() -> None:
    """hpack's and h2's loggers print nothing, at any level the process logs at."""
    for name in _HEADER_LOGGERS:
        logging.getLogger(name).setLevel(_SILENT)


class GuardedH2Protocol(H2Protocol):
    """hypercorn's HTTP/2 protocol with the guards above as its methods."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        task_group: TaskGroup,
        connection_state: ConnectionState,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        send: Callable[[Event], Awaitable[None]],
    ) -> None:
        super().__init__(
            app, config, context, task_group, connection_state, ssl, client, server, send
        )
        self._limits = limits_of(config)
        self._frames = FrameBudget(self._limits)
        # Nothing has been received yet: the parser can be swapped whole.
        self.connection.incoming_buffer = BudgetedFrameBuffer(self._frames, client)

    async def handle(self, event: Event) -> None:
        await super().handle(event)
        if isinstance(event, Closed):  # guard 8: no send waits for a closed connection
            for buffer in list(self.stream_buffers.values()):
                await buffer.close()

    async def _priority_updated(self, event: h2.events.PriorityUpdated) -> None:
        return  # ignored: no tree node for a stream never opened, no re-weighting

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        reset_now = {e.stream_id for e in events if isinstance(e, h2.events.StreamReset)}
        known: list[h2.events.Event] = []
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                bad = _bad_request_line(event)
                if bad is not None:
                    log.info("HTTP/2 stream from %s reset: %s", self.client, bad)
                    self.connection.reset_stream(event.stream_id, _PROTOCOL_ERROR)
                    continue
                if event.stream_id in reset_now:
                    continue  # reset in the same read: never started, never sent upstream
                # Streams are created while events are handled: a stream
                # opened in this batch must exist before its DATA is checked.
                await super()._handle_events([*known, event])
                known = []
                continue
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                continue
            known.append(event)
        await super()._handle_events(known)

    async def _create_stream(self, request: h2.events.RequestReceived) -> None:
        await super()._create_stream(request)
        # hypercorn made its own buffer; nothing was pushed into it while the
        # stream started (the app's task has not run yet), so it is replaced.
        stream_id = request.stream_id
        theirs = self.stream_buffers.get(stream_id)
        if theirs is not None and not theirs.buffer and not theirs.complete:
            self.stream_buffers[stream_id] = FlowControlledBuffer(
                self._limits.h2_stream_buffer_bytes, self._frames
            )

    async def _close_stream(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            call_client_gone(stream)
        await super()._close_stream(stream_id)
