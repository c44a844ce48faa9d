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
   and admin keys included), at DEBUG, and h2 can log frames: their loggers
   are set above CRITICAL, so ``--log-level DEBUG`` prints none of it.

8. A connection's end releases its streams' sends. hypercorn's send task
   stops when the connection closes, so an answer's end waiting in
   ``drain()`` for a window the client never opened (a zero-window client
   that left after a whole JSON answer was queued) waited for good: the
   request never ended, never logged, and held its key's slot. Every stream
   buffer is closed with the connection, which ends those sends.
"""

import contextlib
import logging
import re
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import hypercorn.protocol.h2 as hypercorn_h2
from hypercorn.events import Closed
from hypercorn.protocol.h2 import H2Protocol, StreamBuffer

from trioproxy.server.guards.frames import BudgetedFrameBuffer, FrameBudget
from trioproxy.server.guards.limits import limits_of

__all__ = ["FlowControlledBuffer", "install"]

log = logging.getLogger("trioproxy.server")

_PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PATH = re.compile(rb"[\x21-\x7e]+")


class FlowControlledBuffer(StreamBuffer):
    """hypercorn's per-stream send buffer, holding at most ``high_water`` bytes
    (plus the one chunk that crossed it) for a client that is not reading."""

    high_water = limits_of(None).h2_stream_buffer_bytes
    frames: FrameBudget | None = None
    """The connection's budget, told of each DATA frame taken to be sent."""

    async def push(self, data: bytes) -> None:
        if self._complete:
            raise hypercorn_h2.BufferCompleteError()
        self.buffer.extend(data)
        await self._is_empty.clear()
        if len(self.buffer) >= self.high_water:
            await self._paused.wait()
            await self._paused.clear()

    async def pop(self, max_length: int) -> bytes:
        length = min(len(self.buffer), max_length)
        data = bytes(self.buffer[:length])
        del self.buffer[:length]
        if data and self.frames is not None:
            self.frames.data_frame_sent()  # hypercorn sends what it pops as one frame
        if len(self.buffer) < self.high_water // 2:  # what is left, not what was taken
            await self._paused.set()
        if not self.buffer:
            await self._is_empty.set()
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


def install() -> None:
    for name in _HEADER_LOGGERS:
        logging.getLogger(name).setLevel(_SILENT)
    setattr(hypercorn_h2, "StreamBuffer", FlowControlledBuffer)  # noqa: B010 (mypy: misc)
    init = H2Protocol.__init__
    handle_events = H2Protocol._handle_events
    create_stream = H2Protocol._create_stream
    handle_event = H2Protocol.handle

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        # Nothing has been received yet: the parser can be swapped whole.
        self._trioproxy_frames = FrameBudget(limits_of(self.config))
        self.connection.incoming_buffer = BudgetedFrameBuffer(self._trioproxy_frames, self.client)

    async def _priority_updated(self: Any, event: h2.events.PriorityUpdated) -> None:
        return  # ignored: no tree node for a stream never opened, no re-weighting

    async def _handle_events(self: Any, events: list[h2.events.Event]) -> None:
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
                await handle_events(self, [*known, event])
                known = []
                continue
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.connection.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                continue
            known.append(event)
        await handle_events(self, known)

    async def _create_stream(self: Any, request: h2.events.RequestReceived) -> None:
        await create_stream(self, request)
        buffer = self.stream_buffers.get(request.stream_id)
        if buffer is not None:
            buffer.high_water = limits_of(self.config).h2_stream_buffer_bytes
            buffer.frames = self._trioproxy_frames

    async def handle(self: Any, event: Any) -> None:
        await handle_event(self, event)
        if isinstance(event, Closed):
            # hypercorn's sender stops with the connection, so an answer's end
            # waiting for a window that never opened (drain()) waited for good,
            # and its request with it: release every stream's send.
            for buffer in list(self.stream_buffers.values()):
                await buffer.close()

    setattr(H2Protocol, "__init__", __init__)  # noqa: B010 (mypy: method-assign)
    setattr(H2Protocol, "handle", handle)  # noqa: B010
    setattr(H2Protocol, "_priority_updated", _priority_updated)  # noqa: B010
    setattr(H2Protocol, "_handle_events", _handle_events)  # noqa: B010
    setattr(H2Protocol, "_create_stream", _create_stream)  # noqa: B010
