"""One request to an upstream and its response, on a connection of the pool's:
the I/O of an exchange whose life :mod:`.state` keeps, with every wire error
mapped to :mod:`.errors` where it is caught."""

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import trio

from trioproxy.proxy.upstream.chunked import ChunkedBody, ChunkError
from trioproxy.proxy.upstream.connection import Connection, Origin, receive_plain, send_plain
from trioproxy.proxy.upstream.errors import (
    WIRE_ERRORS,
    Aborted,
    ConnectTimeout,
    HeadersTimeout,
    IdleTimeout,
    UpstreamBroken,
    UpstreamError,
    wire_error,
)
from trioproxy.proxy.upstream.http11 import Framing, Head, HeadReader, ProtocolError
from trioproxy.proxy.upstream.state import ExchangeState, State

__all__ = ["Deadlines", "UpstreamExchange"]

_READ = 65536
_SENT, _BODY, _READ_ALL, _WHOLE = State.SENT, State.BODY, State.READ, State.WHOLE


@dataclass(frozen=True, slots=True)
class Deadlines:
    connect_s: float
    headers_s: float
    """From the request sent to the response's headers: the model's queue and prompt."""
    idle_s: float
    """Longest silence before a body chunk."""


class _Pool(Protocol):
    """What an exchange takes its connections from, and gives them back to (the pool)."""

    def take_idle(self, origin: Origin) -> Connection | None: ...
    async def open_connection(self, origin: Origin) -> Connection: ...
    def put_idle(self, origin: Origin, conn: Connection) -> None: ...


class UpstreamExchange(ExchangeState):
    """One request to an upstream and its response: status, headers and a body read
    chunk by chunk within the exchange's moving deadline.

    Made by ``UpstreamPool.exchange`` before any I/O, so whoever must stop it
    holds it from the start; entered with :meth:`open`.
    """

    __slots__ = (
        "_chunked",
        "_conn",
        "_cut_in_read",
        "_deadlines",
        "_head_request",
        "_left",
        "_on_sent",
        "_origin",
        "_pending",
        "_pool",
        "_read",
        "_request",
        "_scope",
        "_slack_s",
        "_write",
        "declared",
        "framing",
        "headers",
        "status",
    )

    def __init__(
        self,
        pool: _Pool,
        origin: Origin,
        request: tuple[bytes, ...],
        head_request: bool,
        deadlines: Deadlines,
        on_sent: Callable[[], None] | None,
    ) -> None:
        super().__init__()
        self._pool = pool
        self._origin = origin
        self._request = request
        """The request's bytes, head and body: one part, or the head and a large
        body apart (joined, a 16 MiB body was copied once more while it was sent)."""
        self._head_request = head_request
        self._deadlines = deadlines
        self._on_sent = on_sent
        self._conn: Connection | None = None
        """The connection in use; set and cleared under the state's lock."""
        self._read: Callable[[int], Awaitable[bytes | bytearray]]
        self._write: Callable[[bytes], Awaitable[None]]
        """The connection's read and write, chosen once with the connection: a plain
        TCP socket's skip trio's stream layers (``receive_plain``, ``send_plain``)."""
        self._scope: trio.CancelScope
        """The exchange's one moving deadline, from :meth:`open`."""
        # How early the idle timeout may fire: a second, or a tenth of a short one.
        self._slack_s = min(1.0, deadlines.idle_s / 10)
        self._cut_in_read = False
        """A cancel came out of the upstream read: at a timeout, the upstream was silent."""
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        """Names in lower case."""
        self.framing = Framing.NONE
        self.declared: int | None = None
        """The upstream's ``Content-Length``, while it still describes the body as read."""
        self._chunked: ChunkedBody | None = None
        self._left = 0
        """With a length (no body is a length of 0): body bytes still to come."""
        self._pending = b""

    def abort(self) -> None:
        """Stop the exchange now, from any thread: its socket is shut down (the
        upstream sees it go), it is never pooled, and whatever fails next in it is
        :class:`~.errors.Aborted`. Nothing once the exchange is over."""
        self.abort_with(self._shut_down)

    def _shut_down(self) -> None:
        if self._conn is not None:
            self._conn.shut_down()

    @asynccontextmanager
    async def open(self) -> AsyncIterator["UpstreamExchange"]:
        """The response's head is in when this enters; leaving it returns the
        connection to the pool if the body was read whole, else closes it."""
        failed_in = State.BODY  # where a passed deadline found the exchange
        with trio.CancelScope(deadline=trio.current_time() + self._deadlines.connect_s) as scope:
            self._scope = scope
            try:
                await self._begin()
            except BaseException:
                failed_in = self.state
                self.end(self._close)
                raise
            try:
                yield self
            finally:
                await self._release()
        if scope.cancelled_caught:
            raise self._late(failed_in) from None

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    async def next_chunk(self) -> bytes | None:
        """The next body bytes, or None once the body is whole."""
        while not self._pending:
            if self.state is _READ_ALL:
                self.to(_WHOLE)
                return None
            data = await self._receive()
            if not data:
                if self.state is State.SHUT_DOWN:  # our own shut-down, read as an end
                    raise Aborted("the exchange was aborted by a stop")
                if self.framing is not Framing.CLOSE:
                    raise UpstreamBroken("upstream closed mid-answer")
                self.keep_alive = False
                self.to(_READ_ALL)
            else:
                self._pending = self._take(data)
        chunk, self._pending = self._pending, b""
        return chunk

    async def read(self, limit: int) -> bytes:
        """The body, or its first ``limit`` bytes: the rest is then left unread
        (and the connection closed), so an endless answer costs no memory."""
        chunks = []
        size = 0
        while size < limit and (chunk := await self.next_chunk()) is not None:
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[:limit]

    def _take(self, data: bytes) -> bytes:
        """The body bytes in what was read; bytes past the body's end forbid reuse."""
        if self._chunked is not None:
            try:
                data = self._chunked.feed(data)
            except ChunkError as exc:
                raise wire_error(exc, "upstream answer broken", UpstreamBroken, False) from exc
            if self._chunked.done:
                self.keep_alive = self.keep_alive and not self._chunked.extra
                self.to(_READ_ALL)
        elif self.framing is not Framing.CLOSE:
            if len(data) < self._left:
                self._left -= len(data)
                return data
            if len(data) > self._left:  # past the body's end (or any byte after none)
                self.keep_alive = False
                data = data[: self._left]
            self._left = 0
            if self.state is _BODY:
                self.to(_READ_ALL)
        return data

    async def _receive(self) -> bytes:
        # The idle deadline moves at most once a second: setting a deadline
        # costs more than reading one, and a stream sends many chunks a second.
        due = trio.current_time() + self._deadlines.idle_s
        scope = self._scope
        if not due - self._slack_s <= scope.deadline <= due:
            scope.deadline = due
        try:
            data = await self._read(_READ)
        except WIRE_ERRORS as exc:
            raise wire_error(
                exc, "upstream connection broken", UpstreamBroken, self.aborted
            ) from exc
        except trio.Cancelled:
            self._cut_in_read = True
            raise
        return bytes(data)

    async def _begin(self) -> None:
        """A connection (an idle one, else a new one), the request sent, the head read."""
        pool = self._pool
        conn = pool.take_idle(self._origin)
        reused = conn is not None
        while True:
            if conn is None:
                conn = await pool.open_connection(self._origin)
            if not self.attach(functools.partial(self._bind, conn), conn.close):
                raise Aborted("the exchange was aborted by a stop")
            try:
                return await self._send_and_read_head(conn)
            except _Stale as exc:
                if not reused:
                    message = f"upstream closed the connection without answering: {exc}"
                    raise UpstreamBroken(message) from exc
                # closed by the upstream as it was reused: once more, on a new one
                if not self.retry(self._close):
                    raise Aborted("the exchange was aborted by a stop") from exc
            conn, reused = None, False

    async def _send_and_read_head(self, conn: Connection) -> None:
        self._scope.deadline = trio.current_time() + self._deadlines.headers_s
        try:
            for part in self._request:
                await self._write(part)
        except WIRE_ERRORS as exc:
            if self.aborted:
                raise wire_error(exc, "", UpstreamBroken, True) from exc
            raise _Stale(str(exc)) from exc
        if not self.to(_SENT):
            raise Aborted("the exchange was aborted by a stop")
        if self._on_sent is not None:
            self._on_sent()
        reader = HeadReader(self._head_request)
        answered = False
        while True:
            read: bytes | bytearray
            try:
                read = await self._read(_READ)
            except WIRE_ERRORS as exc:
                if answered or self.aborted:
                    raise wire_error(exc, "", UpstreamBroken, self.aborted) from exc
                raise _Stale(str(exc)) from exc
            if not read:
                if self.aborted:
                    raise Aborted("the exchange was aborted by a stop")
                if not answered:
                    raise _Stale("closed before answering")
                raise UpstreamBroken("upstream closed the connection without answering")
            answered = True
            try:
                parsed = reader.feed(read)
            except ProtocolError as exc:
                what = "upstream answered something that is not HTTP"
                raise wire_error(exc, what, UpstreamBroken, self.aborted) from exc
            if parsed is not None:
                return self._headed(*parsed)

    def _headed(self, head: Head, leftover: bytes) -> None:
        self.status = head.status
        self.headers = head.headers
        self.framing = head.framing
        self.declared = head.declared
        self.keep_alive = head.keep_alive
        self._left = head.length
        if head.framing is Framing.CHUNKED:
            self._chunked = ChunkedBody()
        if head.framing is Framing.NONE or (head.framing is Framing.LENGTH and not self._left):
            self.to(_READ_ALL)  # no body: read to its end already
        else:
            self.to(_BODY)
        self._pending = self._take(leftover) if leftover else b""

    def _bind(self, conn: Connection) -> None:
        """Under the state's lock: the connection this exchange uses."""
        self._conn = conn
        stream = conn.stream
        if type(stream) is trio.SocketStream:
            self._read = functools.partial(receive_plain, stream)
            self._write = functools.partial(send_plain, stream)
        else:
            self._read, self._write = stream.receive_some, stream.send_all

    def _close(self) -> None:
        """Under the state's lock: the connection closed and let go."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _release(self) -> None:
        conn = self._conn
        if self.end(self._close):
            assert conn is not None
            self._pool.put_idle(self._origin, conn)
        else:
            await trio.lowlevel.checkpoint()

    def _late(self, state: State) -> UpstreamError:
        """The error for a passed deadline, from where the exchange was."""
        deadlines = self._deadlines
        if state is State.CONNECTING:
            return ConnectTimeout(f"connecting to the upstream took over {deadlines.connect_s:g} s")
        if state is State.SENT:
            return HeadersTimeout(f"no response headers within {deadlines.headers_s:g} s")
        if not self._cut_in_read:
            return IdleTimeout(f"the client took no answer bytes for {deadlines.idle_s:g} s")
        return IdleTimeout(f"upstream silent for {deadlines.idle_s:g} s mid-answer")


class _Stale(Exception):
    """A reused connection failed before any byte of its response came."""
