"""The server side of one HTTP/1.1 connection, by hand, for hypercorn's ``H11Protocol``.

What hypercorn uses of ``h11.Connection`` and nothing else: ``receive_data``,
``next_event`` (h11's events and sentinels, as hypercorn's read loop expects
them), ``send`` (h11's response events to bytes), ``our_state`` and
``their_state`` (h11's state sentinels), ``trailing_data``,
``start_next_cycle`` and ``they_are_waiting_for_100_continue``; and, for the
guarded protocol's hot path, :meth:`ServerConnection.send_response`,
:meth:`~ServerConnection.send_data` and :meth:`~ServerConnection.send_end`,
which take no event objects. Why not h11: its per-request event objects,
header normalization and state machine were 13% of the proxy's CPU under
JSON load (py-spy), for rules that fit in these few states.

The states are h11's, with its transitions (``h11/_state.py``) less the
protocol switches, since none is served (an ``Upgrade`` is ignored, RFC 9110
section 7.8, and ``CONNECT`` is not tunnelled):

- client: IDLE -request-> SEND_BODY -end of body-> DONE; the connection's
  close moves IDLE or DONE to CLOSED; a bad request moves any state to ERROR;
- server: IDLE -request-> SEND_RESPONSE -response-> SEND_BODY -end-> DONE
  (a response may also be sent from IDLE: the answer to bytes that were no
  request); a refused event moves it to ERROR;
- a side that is DONE moves to MUST_CLOSE when the connection is not kept
  (``Connection: close`` either way, or HTTP/1.0), or when the other side
  closed or failed; ``start_next_cycle`` moves DONE and DONE back to IDLE.

Bytes that come while the client is DONE (pipelining) wait in the buffer,
bounded by the same size as an incomplete head; the read loop is told
NEED_DATA, never PAUSED (see :mod:`.http1`, guard 2).
"""

from typing import Any

import h11

from trioproxy.server.guards.h1_read import HEAD_END, ChunkedBody, parse_request, refuse
from trioproxy.server.guards.h1_write import (
    BodyWriter,
    Framing,
    informational_head,
    response_head,
)

__all__ = ["ServerConnection"]

_END = h11.EndOfMessage()  # immutable: one for every request
_IDLE, _DONE, _CLOSED, _ERROR = h11.IDLE, h11.DONE, h11.CLOSED, h11.ERROR
_MUST_CLOSE = h11.MUST_CLOSE


class ServerConnection:
    """One connection's HTTP/1.1 state, server side; no I/O."""

    __slots__ = (
        "_buf",
        "_chunked",
        "_closed",
        "_keep_alive",
        "_left",
        "_max_buffered",
        "_method",
        "_raw_names",
        "_scan",
        "_their_version",
        "_writer",
        "our_state",
        "their_state",
        "they_are_waiting_for_100_continue",
    )

    def __init__(self, max_buffered: int, raw_names: bool = False) -> None:
        self._max_buffered = max_buffered
        """The longest incomplete head, and the most pipelined bytes held."""
        self._raw_names = raw_names
        self.our_state: Any = _IDLE
        self.their_state: Any = _IDLE
        self.they_are_waiting_for_100_continue = False
        self._buf = bytearray()
        self._closed = False
        self._scan = 0
        """Where the search for a head's end goes on: what is before was searched."""
        # Invariant: set while their_state is SEND_BODY, for this request only.
        self._left = 0
        self._chunked: ChunkedBody | None = None
        self._keep_alive = True
        """Until a request or response says otherwise; never set back."""
        self._method: bytes | None = None
        self._their_version: bytes | None = None
        # Invariant: set while our_state is SEND_BODY.
        self._writer = BodyWriter(Framing.NONE, 0)

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        return bytes(self._buf), self._closed

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._closed = True
        elif self._closed:
            raise RuntimeError("received close, then received more data?")
        else:
            self._buf += data

    def next_event(self) -> Any:
        """The next of the client's events, as ``h11.Connection.next_event``."""
        if self.their_state is _ERROR:
            raise refuse("Can't receive data when peer state is ERROR")
        try:
            return self._next()
        except h11.RemoteProtocolError:
            self.their_state = _ERROR
            self._settle()
            raise

    def _next(self) -> Any:
        state, buf = self.their_state, self._buf
        if state is h11.SEND_BODY:
            return self._read_body()
        if buf:
            if state is _IDLE:
                return self._read_head()
            if state is _DONE:  # pipelined: kept for the next cycle, bounded
                if len(buf) > self._max_buffered:
                    raise refuse("too many pipelined bytes")
                return h11.NEED_DATA
            raise refuse("Got data when expecting EOF")
        if not self._closed:
            return h11.NEED_DATA
        self.their_state = _CLOSED
        self._settle()
        return h11.ConnectionClosed()

    def _incomplete(self) -> Any:
        """NEED_DATA for an event begun and not whole: bounded, and never coming after a close."""
        if len(self._buf) > self._max_buffered:
            raise refuse("Receive buffer too long", 431)
        if self._closed:
            raise refuse("peer unexpectedly closed connection")
        return h11.NEED_DATA

    def _read_head(self) -> Any:
        buf = self._buf
        blank = HEAD_END.search(buf, self._scan)
        if blank is None:
            if buf[0] < 0x21:
                raise refuse("illegal request line")
            self._scan = max(len(buf) - 2, 0)  # an end may begin in the last two bytes
            return self._incomplete()
        head = bytes(buf[: blank.start()])
        del buf[: blank.end()]
        self._scan = 0
        request = parse_request(head, self._raw_names)
        if self.our_state is not _IDLE:
            raise refuse("a request before the last response")
        self.their_state, self.our_state = h11.SEND_BODY, h11.SEND_RESPONSE
        self._method, self._their_version = request.method, request.http_version
        self._keep_alive = self._keep_alive and request.keep_alive
        self.they_are_waiting_for_100_continue = request.expects_continue
        self._left = request.body_length
        self._chunked = ChunkedBody() if request.chunked else None
        return request

    def _read_body(self) -> Any:
        buf = self._buf
        if self._chunked is not None:
            data = self._chunked.read(buf)
        elif self._left == 0:
            data = b""
        elif buf:
            data = bytes(buf[: self._left])
            del buf[: len(data)]
            self._left -= len(data)
        else:
            data = None
        if data is None:
            return self._incomplete()
        self.they_are_waiting_for_100_continue = False
        if data:
            return h11.Data(data=data)
        self.their_state = _DONE
        self._settle()
        return _END

    def send(self, event: Any) -> bytes:
        """h11's response events to bytes, as ``h11.Connection.send`` (hypercorn's own paths)."""
        kind = type(event)
        if kind is h11.Response:
            return self.send_response(event.status_code, event.headers.raw_items(), event.reason)
        if kind is h11.InformationalResponse:
            return self.send_informational(
                event.status_code, event.headers.raw_items(), event.reason
            )
        if kind is h11.EndOfMessage and not event.headers:
            return self.send_end()
        self._fail()
        raise h11.LocalProtocolError(f"not sent by this server: {event!r}")

    def send_informational(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b""
    ) -> bytes:
        if self.our_state is not h11.SEND_RESPONSE:
            raise self._refused("an informational response")
        # A head refused for its fields changes no state, as h11's event constructors
        # refuse it before its connection sees it: the 500 that follows can be sent.
        data = informational_head(status, headers, reason)
        self.they_are_waiting_for_100_continue = False
        return data

    def send_response(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b""
    ) -> bytes:
        if self.our_state is not h11.SEND_RESPONSE and self.our_state is not _IDLE:
            raise self._refused("a response")
        head, framing, length, keeps = response_head(  # refused fields: as above
            status,
            headers,
            method=self._method,
            http11_client=self._their_version is not None and self._their_version >= b"1.1",
            keep_alive=self._keep_alive,
            reason=reason,
        )
        self._keep_alive = keeps
        self._writer = BodyWriter(framing, length)
        self.our_state = h11.SEND_BODY
        self.they_are_waiting_for_100_continue = False
        self._settle()
        return head

    def send_data(self, data: bytes) -> bytes:
        if self.our_state is not h11.SEND_BODY:
            raise self._refused("data")
        try:
            return self._writer.data(data)
        except h11.LocalProtocolError:
            self._fail()
            raise

    def send_end(self) -> bytes:
        if self.our_state is not h11.SEND_BODY:
            raise self._refused("the end of a body")
        try:
            data = self._writer.end()
        except h11.LocalProtocolError:
            self._fail()
            raise
        self.our_state = _DONE
        self._settle()
        return data

    def _refused(self, what: str) -> h11.LocalProtocolError:
        state = self.our_state
        self._fail()
        return h11.LocalProtocolError(f"can't send {what} in our state {state}")

    def _fail(self) -> None:
        """Our side is in ERROR from now on, as h11's is after a refused send."""
        self.our_state = _ERROR
        self._settle()

    def start_next_cycle(self) -> None:
        if self.our_state is not _DONE or self.their_state is not _DONE:
            raise h11.LocalProtocolError("not in a reusable state")
        self.our_state = self.their_state = _IDLE
        self._method = None

    def _settle(self) -> None:
        """h11's state-triggered transitions (``_state.py``), less the protocol switches."""
        ours, theirs = self.our_state, self.their_state
        if not self._keep_alive:
            ours = _MUST_CLOSE if ours is _DONE else ours
            theirs = _MUST_CLOSE if theirs is _DONE else theirs
        if (theirs is _CLOSED and ours in (_DONE, _IDLE)) or (theirs is _ERROR and ours is _DONE):
            ours = _MUST_CLOSE
        if (ours is _CLOSED and theirs in (_DONE, _IDLE)) or (ours is _ERROR and theirs is _DONE):
            theirs = _MUST_CLOSE
        self.our_state, self.their_state = ours, theirs
