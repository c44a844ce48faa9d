"""HTTP/1.1 guards: strict request framing, and pipelined bytes that never blind the read loop.

1. Framing (RFC 9112 section 6.1, 6.3). h11 takes a request with both
   ``Content-Length`` and ``Transfer-Encoding: chunked`` as chunked and keeps
   the connection, so the bytes after the chunked body run as a second
   request: the classic smuggling desync with any front proxy that reads the
   length instead. It also unfolds obs-folded header lines, merges repeated
   equal ``Content-Length`` lines and accepts any ``HTTP/d.d``. The guard's
   request reader refuses all of these, before a stream exists: 400 (505 for
   an unknown version), ``Connection: close``, and nothing after the bad
   request is ever read.

2. Pipelining. Bytes that arrive after a complete request (pipelining, or a
   keep-alive client whose next request races the end of the last response)
   make h11 answer ``PAUSED``, and hypercorn then blocks its read loop until
   the response ends. While it is blocked a FIN or RST goes unseen: the
   request is never told the client left, and the task and socket leak for
   good. The guard tells hypercorn ``NEED_DATA`` instead, so the read loop
   keeps reading (and sees the client leave); the early bytes wait in h11's
   buffer, bounded by ``h11_max_incomplete_size``, and are served as soon as
   the response in flight has ended.

3. An answer given before the request's body was read carries
   ``Connection: close``: hypercorn closes such a connection, and a client
   that was not told reuses it for its next request and loses that request.

4. Body chunks of a chunked answer skip h11's ``send``: an event object
   and a state machine step per chunk, for bytes that are only the chunk's
   framing (h11's ``ChunkedWriter`` is stateless, and a ``Data`` event
   changes no state). The relay sends one such chunk per relayed event.

5. The end of a response (``_maybe_recycle``) runs inside the application's
   last ``send()``; it is shielded so that an application cancelling itself
   right then cannot leave the connection half recycled or unclosed.

Each guard is a method of :class:`GuardedH11Protocol`, hypercorn's HTTP/1.1
protocol class subclassed; hypercorn's own class is never changed. The same
class hands each request its connection's hang-up (:mod:`.hangup`) and calls
the request's :data:`~trioproxy.asgi.CLIENT_GONE` hook (:mod:`.gone`).

6. ``Upgrade: h2c`` is ignored (RFC 9110 section 7.8 lets a server ignore
   an upgrade): the request is answered over HTTP/1.1. hypercorn switched to
   h2c on any route, ``/admin/`` included, with no or an invalid
   ``HTTP2-Settings``: a front proxy that passes the upgrade on sees a
   connection it can no longer inspect (h2c smuggling). RFC 9113 section 3.1
   deprecates the upgrade; h2c with prior knowledge and h2 over TLS (ALPN)
   are the ways to HTTP/2.
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import h11
import trio
from h11._readers import maybe_read_from_IDLE_client
from h11._receivebuffer import ReceiveBuffer
from h11._writers import ChunkedWriter
from hypercorn.config import Config
from hypercorn.events import Event, RawData
from hypercorn.protocol.events import Body, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import AppWrapper, ConnectionState, TaskGroup, WorkerContext

from trioproxy.asgi import CLIENT_HANGUP
from trioproxy.server.guards.gone import call_client_gone
from trioproxy.server.guards.hangup import Hangup

__all__ = ["GuardedH11Protocol", "StrictConnection"]

_BLANK = re.compile(rb"\n\r?\n")  # h11's end of a head
_FOLD = re.compile(rb"\r?\n[ \t]")
_CONTENT_LENGTH = re.compile(rb"\ncontent-length[ \t]*:([^\r\n]*)", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\ntransfer-encoding[ \t]*:", re.IGNORECASE)
_VERSIONS = frozenset({b"1.0", b"1.1"})
_RECYCLE_S = 10.0


def _h2_preface(request: h11.Request) -> bool:
    """``PRI * HTTP/2.0``: h2c with prior knowledge, which hypercorn hands to its h2 side."""
    return request.method == b"PRI" and request.target == b"*" and request.http_version == b"2.0"


def _asks_h2c(request: h11.Request) -> bool:
    """``Upgrade: h2c``, alone or in a list."""
    return any(
        token.strip().lower() == b"h2c"
        for name, value in request.headers
        if name == b"upgrade"  # h11 lowercases header names
        for token in value.split(b",")
    )


def _read_request(buf: ReceiveBuffer) -> h11.Request | None:
    head = buf._data  # no copy: the head is searched where it lies
    blank = _BLANK.search(head)
    if blank is not None:
        _check_framing(head, blank.start())
    request = maybe_read_from_IDLE_client(buf)
    if request is None:
        return None
    if request.http_version not in _VERSIONS and not _h2_preface(request):
        raise h11.RemoteProtocolError("HTTP version not supported", error_status_hint=505)
    return request


def _check_framing(head: bytearray, end: int) -> None:
    """Refuse what h11 would otherwise smooth over: it unfolds folded lines and
    merges equal ``Content-Length`` lines before anyone can count them."""
    if _FOLD.search(head, 0, end + 1):
        raise h11.RemoteProtocolError("obs-fold in a request header", error_status_hint=400)
    lengths = _CONTENT_LENGTH.findall(head, 0, end + 1)
    if len(lengths) > 1 or (lengths and not lengths[0].strip(b" \t").isdigit()):
        raise h11.RemoteProtocolError("more than one Content-Length", error_status_hint=400)
    if lengths and _TRANSFER_ENCODING.search(head, 0, end + 1):
        raise h11.RemoteProtocolError(
            "Content-Length with Transfer-Encoding", error_status_hint=400
        )


class StrictConnection(h11.Connection):
    """The server side of h11 with strict request framing, never pausing on pipelined bytes."""

    def __init__(self, max_pipelined_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_pipelined_bytes)
        self._max_pipelined_bytes = max_pipelined_bytes
        self._refused = False

    def _get_io_object(self, role: Any, event: Any, io_dict: Any) -> Any:
        found = super()._get_io_object(role, event, io_dict)
        return _read_request if found is maybe_read_from_IDLE_client else found

    @property
    def their_state(self) -> Any:  # h11's Sentinel types are private
        # h11 marks the client's side ERROR for the errors it raises itself;
        # this one is raised here, after it. Marked the same, hypercorn treats
        # it as any refused request: the app's answer after its 400 is dropped
        # (``_send_h11_event``), not raised as "Response in MUST_CLOSE".
        return h11.ERROR if self._refused else super().their_state

    def next_event(self) -> Any:
        event = super().next_event()
        if event is h11.PAUSED and self.their_state is h11.DONE:
            if len(self.trailing_data[0]) > self._max_pipelined_bytes:
                self._refused = True
                raise h11.RemoteProtocolError("too many pipelined bytes", error_status_hint=400)
            return h11.NEED_DATA
        return event


class GuardedH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol with the guards above as its methods."""

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
        *,
        hangup: Hangup | None = None,
    ) -> None:
        super().__init__(
            app, config, context, task_group, connection_state, ssl, client, server, send
        )
        self.connection = StrictConnection(config.h11_max_incomplete_size)
        self._hangup = hangup  # one per connection, for each of its requests in turn

    async def stream_send(self, event: StreamEvent) -> None:
        if type(event) is Body:
            connection = self.connection
            if connection.our_state is h11.SEND_BODY and type(connection._writer) is ChunkedWriter:
                data = event.data
                if data:  # empty data would read as the last chunk
                    await self.send(RawData(data=b"%x\r\n%s\r\n" % (len(data), data)))
                return
        # An answer given before the request's body was read (401, 400, 413)
        # ends the connection: say so, or a keep-alive client sends its next
        # request on a connection that is closing (RFC 9112 section 9.6).
        if type(event) is Response and self.connection.their_state is h11.SEND_BODY:
            event = replace(event, headers=[*event.headers, (b"connection", b"close")])
        await super().stream_send(event)

    async def _check_protocol(self, event: h11.Request) -> None:
        # hypercorn's check answers 101 to an h2c upgrade (and hands the
        # h2c preface to its h2 side, which a request with headers is not).
        if not _asks_h2c(event):
            await super()._check_protocol(event)

    async def _create_stream(self, request: h11.Request) -> None:
        await super()._create_stream(request)
        scope: dict[str, Any] | None = getattr(self.stream, "scope", None)
        if scope is not None and self._hangup is not None:
            scope.setdefault("extensions", {})[CLIENT_HANGUP] = self._hangup
            scope[CLIENT_HANGUP] = self._hangup  # where the proxy looked before extensions

    async def _close_stream(self) -> None:
        if self.stream is not None:
            call_client_gone(self.stream)
        await super()._close_stream()

    async def _maybe_recycle(self) -> None:
        # Shielded from the app's own cancel, but bounded: it puts the
        # disconnect in the app's queue, which a stuck app may never empty.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _RECYCLE_S):
            await super()._maybe_recycle()
        connection = self.connection
        if (
            connection.our_state is h11.IDLE
            and connection.their_state is h11.IDLE
            and connection.trailing_data[0]
        ):
            # Hypercorn would have resumed its paused read loop here; the
            # guard never paused it, so the waiting request is served now.
            await self._handle_events()
