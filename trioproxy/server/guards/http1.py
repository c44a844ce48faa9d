"""HTTP/1.1 guards: strict request framing, pipelined bytes that never blind the read loop,
and a connection read and written by hand.

1. Framing (RFC 9112 section 6.1, 6.3). h11 takes a request with both
   ``Content-Length`` and ``Transfer-Encoding: chunked`` as chunked and keeps
   the connection, so the bytes after the chunked body run as a second
   request: the classic smuggling desync with any front proxy that reads the
   length instead. It also unfolds obs-folded header lines, merges repeated
   equal ``Content-Length`` lines and accepts any ``HTTP/d.d``. The
   connection's request reader (:mod:`.h1_read`) refuses all of these,
   before a stream exists: 400 (505 for an unknown version), ``Connection:
   close``, and nothing after the bad request is ever read.

2. Pipelining. Bytes that arrive after a complete request (pipelining, or a
   keep-alive client whose next request races the end of the last response)
   make h11 answer ``PAUSED``, and hypercorn then blocks its read loop until
   the response ends. While it is blocked a FIN or RST goes unseen: the
   request is never told the client left, and the task and socket leak for
   good. The connection tells hypercorn ``NEED_DATA`` instead, so the read
   loop keeps reading (and sees the client leave); the early bytes wait in its
   buffer, bounded by ``h11_max_incomplete_size``, and are served as soon as
   the response in flight has ended.

3. An answer given before the request's body was read carries
   ``Connection: close``: hypercorn closes such a connection, and a client
   that was not told reuses it for its next request and loses that request.

4. No h11 on the way: the connection (:mod:`.h1_connection`) is hypercorn's
   ``h11.Connection`` by hand, with the same states, events and bytes, and
   a response's head, body and end go to it without an h11 event built for
   each. h11's reading and writing were 13% of the proxy's CPU per JSON
   request; the relay sends one body chunk per relayed event.

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

7. ``Upgrade: websocket`` is ignored too: no application this server runs
   (the proxy, the simulator, the checker) serves WebSockets, so the request
   is answered over HTTP/1.1 as what it is, a ``GET``, and an application's
   101 is refused. hypercorn would have started a WebSocket stream whose
   application ends it at once.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import h11
import trio
from hypercorn.config import Config
from hypercorn.events import Event, RawData
from hypercorn.protocol.events import Body, EndBody, Request, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import STREAM_ID, H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.typing import AppWrapper, ConnectionState, TaskGroup, WorkerContext

from trioproxy.asgi import CLIENT_HANGUP
from trioproxy.server.guards.gone import call_client_gone
from trioproxy.server.guards.h1_connection import ServerConnection
from trioproxy.server.guards.h1_read import ParsedRequest
from trioproxy.server.guards.hangup import Hangup

__all__ = ["GuardedH11Protocol"]

_RECYCLE_S = 10.0
_CLOSE = (b"connection", b"close")


def _asks_h2c(request: h11.Request) -> bool:
    """``Upgrade: h2c``, alone or in a list."""
    return any(
        token.strip().lower() == b"h2c"
        for name, value in request.headers
        if name == b"upgrade"  # names are lower case
        for token in value.split(b",")
    )


class GuardedH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol with the guards above as its methods."""

    connection: ServerConnection  # type: ignore[assignment]

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
        send_bytes: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            app, config, context, task_group, connection_state, ssl, client, server, send
        )
        # The server's write of plain bytes: a relayed chunk needs no RawData event.
        self._send_bytes = send_bytes or self._send_raw
        self.connection = ServerConnection(
            config.h11_max_incomplete_size, raw_names=config.h11_pass_raw_headers
        )
        self._hangup = hangup  # one per connection, for each of its requests in turn

    async def _send_raw(self, data: bytes) -> None:
        if data:
            await self.send(RawData(data=data))

    async def stream_send(self, event: StreamEvent) -> None:
        # Response, body and end go straight to the connection's writer, with
        # no h11 event built for each (hypercorn's own ``stream_send`` would).
        connection = self.connection
        try:
            if type(event) is Body:
                data = connection.send_data(event.data)
            elif type(event) is EndBody:
                data = connection.send_end()
            elif type(event) is Response:
                data = self._response_head(event)
            else:
                return await super().stream_send(event)
        except h11.LocalProtocolError:
            if connection.their_state is not h11.ERROR:  # as hypercorn's _send_h11_event
                raise
            return
        await self._send_bytes(data)  # an empty one (a body's end with a length) writes nothing

    def _response_head(self, event: Response) -> bytes:
        headers = event.headers
        # An answer given before the request's body was read (401, 400, 413)
        # ends the connection: say so, or a keep-alive client sends its next
        # request on a connection that is closing (RFC 9112 section 9.6).
        if self.connection.their_state is h11.SEND_BODY:
            headers = [*headers, _CLOSE]
        headers = [*headers, *self.config.response_headers("h11")]
        if event.status_code < 200:
            return self.connection.send_informational(event.status_code, headers)
        if self.keep_alive_requests >= self.config.keep_alive_max_requests:
            headers.append(_CLOSE)
        return self.connection.send_response(event.status_code, headers)

    async def _check_protocol(self, event: h11.Request) -> None:
        # hypercorn's check answers 101 to an h2c upgrade (and hands the
        # h2c preface to its h2 side, which a request with headers is not).
        if not _asks_h2c(event):
            await super()._check_protocol(event)

    async def _create_stream(self, request: h11.Request) -> None:
        # hypercorn's, less the WebSocket upgrade (guard 7), and with the hang-up.
        assert isinstance(request, ParsedRequest)
        stream = HTTPStream(
            self.app,
            self.config,
            self.context,
            self.task_group,
            self.ssl,
            self.client,
            self.server,
            self.stream_send,
            STREAM_ID,
        )
        self.stream = stream
        await stream.handle(
            Request(
                stream_id=STREAM_ID,
                headers=request.raw_headers,
                http_version=request.http_version.decode(),
                method=request.method.decode("ascii").upper(),
                raw_path=request.target,
                state=self.connection_state,
            )
        )
        if self._hangup is not None:
            scope: dict[str, Any] = stream.scope  # type: ignore[assignment]
            scope["extensions"][CLIENT_HANGUP] = self._hangup
            scope[CLIENT_HANGUP] = self._hangup  # where the proxy looked before extensions
        self.keep_alive_requests += 1
        await self.context.mark_request()

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
