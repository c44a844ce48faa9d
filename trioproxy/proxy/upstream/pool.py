"""The upstream client on the hot path: HTTP/1.1 on trio streams, one pool per origin.

Why not httpx here: per proxied request its models (``Request``,
``Response``, URL parsing, cookies, headers) and httpcore's per-read timeout
scopes and locks cost more CPU than everything else the relay does; a stop
waits in line behind that work. Nor h11, for the same reason one layer down
(:mod:`.http11` and :mod:`.chunked` say what they keep of it). What matters
here is kept, and nothing else:

- TLS with verification (the configured CA bundle, ``server_hostname``);
- one deadline per exchange that moves: connect, then the wait for response
  headers, then the silence before each body chunk (moved at most once a
  second). A deadline that passes while the relay is blocked sending to its
  client says so: that client took nothing for the idle timeout;
- a connection goes back to its origin's idle list only when its response
  was read to the end; any other exit (the client left, an error, a
  timeout) closes it, and the upstream sees it go at once;
- an idle connection the upstream closed is noticed before reuse; a reused
  one that fails before the first response byte is retried once on a new
  connection.

HTTP/2 is never spoken to an upstream: a cancelled HTTP/2 stream needs an
RST_STREAM that nothing here would send.

The exception tree: :class:`UpstreamError`, with ``timed_out`` (504, or an
SSE ``error`` event of type ``upstream_timeout``) and ``unreached`` (nothing
reached the upstream: a fallback may be tried).
"""

import contextlib
import functools
import ipaddress
import select
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass

import trio

from trioproxy.asgi import Hangup
from trioproxy.proxy.upstream.chunked import ChunkedBody, ChunkError
from trioproxy.proxy.upstream.http11 import (
    Framing,
    Head,
    HeadReader,
    ProtocolError,
    request_head,
)

__all__ = [
    "Deadlines",
    "Origin",
    "UpstreamError",
    "UpstreamHandle",
    "UpstreamPool",
    "UpstreamResponse",
]

type Origin = tuple[str, str, int]
"""Scheme, host, port: from the configuration only."""

_READ = 65536


class UpstreamError(Exception):
    """The upstream failed, was unreachable, or too slow: the upstream's fault, not the client's."""

    def __init__(self, message: str, *, timed_out: bool = False, unreached: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.unreached = unreached


@dataclass(frozen=True, slots=True)
class Deadlines:
    connect_s: float
    headers_s: float
    """From the request sent to the response's headers: the model's queue and prompt."""
    idle_s: float
    """Longest silence before a body chunk."""


class _Connection:
    __slots__ = ("closed", "idle_until", "lock", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.idle_until = 0.0
        self.closed = False
        """Closed by us (a stop may close it from another task): never pooled again."""
        self.lock: AbstractContextManager[bool] | None = None
        """While a client's hang-up may shut it down from another thread: held to close it."""

    @property
    def _socket(self) -> trio.socket.SocketType:
        stream = self.stream
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        assert isinstance(stream, trio.SocketStream)
        return stream.socket

    def still_open(self) -> bool:
        """Not expired, and nothing to read: a readable idle socket is one the upstream closed."""
        if self.closed or trio.current_time() > self.idle_until:
            return False
        poller = select.poll()  # select() cannot take a descriptor past 1023
        poller.register(self._socket.fileno(), select.POLLIN)
        return not poller.poll(0)

    def close_now(self) -> None:
        """Close the socket from any task, without waiting: a task blocked on it wakes."""
        # Under the hang-up's lock, if armed: the descriptor's number is not
        # reused while the watcher's thread may shut it down.
        with self.lock or contextlib.nullcontext():
            self.closed = True
            self._socket.close()

    def shut_down(self) -> None:
        """From the hang-up watcher's thread, under ``lock``: the upstream sees the
        client go at once; the loop closes the socket when it gets there."""
        if not self.closed:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    async def close(self) -> None:
        # At once, with no TLS close_notify to wait on; a second close (the
        # stop closed it already) costs nothing.
        if not self.closed:
            self.close_now()
        await trio.lowlevel.checkpoint()


class UpstreamResponse:
    """Status, headers and a body read chunk by chunk within the exchange's moving deadline."""

    __slots__ = (
        "_chunked",
        "_conn",
        "_left",
        "_pending",
        "_read_all",
        "_scope",
        "_slack_s",
        "declared",
        "framing",
        "headers",
        "idle_s",
        "keep_alive",
        "receiving",
        "status",
        "whole",
    )

    def __init__(
        self,
        conn: _Connection,
        head: Head,
        leftover: bytes,
        scope: trio.CancelScope,
        idle_s: float,
    ) -> None:
        self._conn = conn
        self._scope = scope
        self.status = head.status
        self.headers = head.headers
        """Names in lower case."""
        self.framing = head.framing
        self.declared = head.declared
        """The upstream's ``Content-Length``, while it still describes the body as read."""
        self.keep_alive = head.keep_alive
        """The upstream keeps the connection, and sent nothing after the body."""
        self.idle_s = idle_s
        # How early the idle timeout may fire: a second, or a tenth of a short one.
        self._slack_s = min(1.0, idle_s / 10)
        self.receiving = False
        """Waiting on the upstream (else the relay is busy with its client)."""
        self._chunked = ChunkedBody() if head.framing is Framing.CHUNKED else None
        self._left = head.length
        """With a length (no body is a length of 0): body bytes still to come."""
        self._read_all = (
            head.framing is not Framing.CLOSE and self._chunked is None and not self._left
        )
        """The body's last byte was read."""
        self.whole = self._read_all
        """The body was handed out to its end."""
        self._pending = self._take(leftover) if leftover else b""

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    async def next_chunk(self) -> bytes | None:
        """The next body bytes, or None once the body is whole."""
        while not self._pending:
            if self._read_all:
                self.whole = True
                return None
            data = await self._receive()
            if not data:
                if self.framing is not Framing.CLOSE:
                    raise UpstreamError("upstream closed mid-answer")
                self.keep_alive = False
                self._read_all = True
            else:
                self._pending = self._take(data)
        chunk, self._pending = self._pending, b""
        return chunk

    def _take(self, data: bytes) -> bytes:
        """The body bytes in what was read; bytes past the body's end forbid reuse."""
        if self._chunked is not None:
            try:
                data = self._chunked.feed(data)
            except ChunkError as exc:
                raise UpstreamError(f"upstream answer broken: {exc}") from exc
            self._read_all = self._chunked.done
            self.keep_alive = self.keep_alive and not self._chunked.extra
        elif self.framing is not Framing.CLOSE:
            if len(data) > self._left:
                self.keep_alive = False
                data = data[: self._left]
            self._left -= len(data)
            self._read_all = not self._left
        return data

    async def read(self, limit: int) -> bytes:
        """The body, or its first ``limit`` bytes: the rest is then left unread
        (and the connection closed), so an endless answer costs no memory."""
        chunks = []
        size = 0
        while size < limit and (chunk := await self.next_chunk()) is not None:
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[:limit]

    async def _receive(self) -> bytes:
        # The idle deadline moves at most once a second: setting a deadline
        # costs more than reading one, and a stream sends many chunks a second.
        due = trio.current_time() + self.idle_s
        scope = self._scope
        if not due - self._slack_s <= scope.deadline <= due:
            scope.deadline = due
        self.receiving = True
        try:
            data = await self._conn.stream.receive_some(_READ)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise UpstreamError(f"upstream connection broken: {exc}") from exc
        self.receiving = False
        return bytes(data)


class UpstreamPool:
    """Per origin, a last-in-first-out list of idle HTTP/1.1 connections; no cap."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        keepalive_expiry_s: float = 5.0,
        *,
        ssl_contexts: Mapping[Origin, ssl.SSLContext] | None = None,
    ) -> None:
        """``ssl_contexts``: for the origins verified with a CA of their own."""
        self._ssl_context = ssl_context
        self._ssl_contexts = dict(ssl_contexts or {})
        for context in (ssl_context, *self._ssl_contexts.values()):
            context.set_alpn_protocols(["http/1.1"])
        self._keepalive_expiry_s = keepalive_expiry_s
        self._idle: dict[Origin, list[_Connection]] = {}

    def idle_connections(self) -> int:
        return sum(len(conns) for conns in self._idle.values())

    @asynccontextmanager
    async def request(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        deadlines: Deadlines,
        on_sent: Callable[[], None] | None = None,
        handle: "UpstreamHandle | None" = None,
    ) -> AsyncIterator[UpstreamResponse]:
        """One exchange: the response's head is in when this enters; leaving it
        returns the connection to the pool if the body was read whole, else closes it.
        ``handle`` lets another task close the connection meanwhile."""
        try:
            head = request_head(method, target, _framed(origin, headers, method, body))
        except ProtocolError as exc:
            raise UpstreamError(str(exc), unreached=True) from exc
        exchange = _Exchange(head + body, method == b"HEAD", deadlines, on_sent, handle)
        with trio.CancelScope(deadline=trio.current_time() + deadlines.connect_s) as scope:
            try:
                response = await self._exchange(origin, exchange, scope)
            except BaseException:
                exchange.handle.detach()  # every attach is undone: no action outlives its exchange
                raise
            try:
                yield response
            finally:
                exchange.handle.detach()
                await self._release(origin, response)
        if scope.cancelled_caught:
            if exchange.answered and not response.receiving:
                late = f"the client took no answer bytes for {deadlines.idle_s:g} s"
            else:
                late = exchange.late()
            raise UpstreamError(late, timed_out=True, unreached=not exchange.sent)

    async def _exchange(
        self, origin: Origin, exchange: "_Exchange", scope: trio.CancelScope
    ) -> UpstreamResponse:
        conn = self._take_idle(origin)
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._open(origin)
            try:
                return await exchange.run(conn, scope)
            except _Stale as exc:
                if exchange.handle.client_left:  # never sent again for a client that left
                    raise UpstreamError("the client left") from exc
                if not reused:
                    message = f"upstream closed the connection without answering: {exc}"
                    raise UpstreamError(message) from exc
                # closed by the upstream as it was reused: once more, on a new one
            finally:
                if not exchange.answered:
                    await conn.close()
            conn, reused = None, False

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.still_open():
                return conn
            conn.close_now()
        return None

    async def _open(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        try:
            stream: trio.abc.Stream = await _connect(host, port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc}", unreached=True) from exc
        if scheme == "https":
            context = self._ssl_contexts.get(origin, self._ssl_context)
            stream = trio.SSLStream(stream, context, server_hostname=host)
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError) as exc:
                await trio.aclose_forcefully(stream)
                cause = exc.__cause__ or exc
                raise UpstreamError(
                    f"TLS with {host}:{port} failed: {cause}", unreached=True
                ) from exc
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return _Connection(stream)

    async def _release(self, origin: Origin, response: UpstreamResponse) -> None:
        conn = response._conn
        if response.whole and response.keep_alive and not conn.closed:
            conn.idle_until = trio.current_time() + self._keepalive_expiry_s
            self._idle.setdefault(origin, []).append(conn)
        else:
            await conn.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                await conn.close()
        self._idle.clear()


class _Exchange:
    """One request's way through the upstream: what was sent, what came back."""

    __slots__ = ("answered", "deadlines", "handle", "head_request", "on_sent", "request", "sent")

    def __init__(
        self,
        request: bytes,
        head_request: bool,
        deadlines: Deadlines,
        on_sent: Callable[[], None] | None,
        handle: "UpstreamHandle | None",
    ) -> None:
        self.request = request
        """The request's bytes, head and body."""
        self.head_request = head_request
        self.deadlines = deadlines
        self.on_sent = on_sent
        self.sent = False
        self.answered = False
        self.handle = handle or UpstreamHandle()

    async def run(self, conn: _Connection, scope: trio.CancelScope) -> UpstreamResponse:
        self.handle.attach(conn)
        scope.deadline = trio.current_time() + self.deadlines.headers_s
        try:
            await conn.stream.send_all(self.request)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _Stale(str(exc)) from exc
        self.sent = True
        if self.on_sent is not None:
            self.on_sent()
        response = await _read_head(conn, scope, self.deadlines.idle_s, self.head_request)
        self.answered = True
        return response

    def late(self) -> str:
        if not self.sent:
            return f"connecting to the upstream took over {self.deadlines.connect_s:g} s"
        if not self.answered:
            return f"no response headers within {self.deadlines.headers_s:g} s"
        return f"upstream silent for {self.deadlines.idle_s:g} s mid-answer"


class UpstreamHandle:
    """The connection an exchange is using, for a task that must close it at once.

    A client's stop closes the upstream socket from the watcher's own step,
    before the relay task is even scheduled to unwind: in a storm of stops
    that saves a turn of the scheduler per stop, and the model server sees
    its client leave that much sooner. The relay, blocked on that socket,
    then wakes with an error and is cancelled at its next checkpoint.
    """

    __slots__ = ("conn", "hangup")

    def __init__(self, hangup: Hangup | None = None) -> None:
        self.conn: _Connection | None = None
        self.hangup = hangup
        """The client connection's hang-up (HTTP/1.1): it shuts the upstream
        socket down from its own thread, before the loop's turn comes."""

    @property
    def client_left(self) -> bool:
        """The client hung up while the exchange ran: what failed next is the stop's doing."""
        return self.hangup is not None and self.hangup.fired

    def attach(self, conn: _Connection) -> None:
        self.conn = conn
        if self.hangup is not None:
            conn.lock = self.hangup.lock
            self.hangup.arm(conn.shut_down)

    def detach(self) -> None:
        conn, self.conn = self.conn, None
        if self.hangup is not None:
            self.hangup.disarm()  # from here on, its action never runs
            if conn is not None:
                conn.lock = None
                if self.hangup.fired:
                    conn.close_now()  # shut down already: closed, never pooled

    def close_now(self) -> None:
        if self.conn is not None:
            self.conn.close_now()


class _Stale(Exception):
    """A reused connection failed before any byte of its response came."""


async def _read_head(
    conn: _Connection, scope: trio.CancelScope, idle_s: float, head_request: bool
) -> UpstreamResponse:
    reader = HeadReader(head_request)
    answered = False
    while True:
        try:
            read = await conn.stream.receive_some(_READ)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise (UpstreamError if answered else _Stale)(str(exc)) from exc
        if not read:
            if not answered:
                raise _Stale("closed before answering")
            raise UpstreamError("upstream closed the connection without answering")
        answered = True
        try:
            parsed = reader.feed(read)
        except ProtocolError as exc:
            raise UpstreamError(f"upstream answered something that is not HTTP: {exc}") from exc
        if parsed is not None:
            head, leftover = parsed
            return UpstreamResponse(conn, head, leftover, scope, idle_s)


async def _connect(host: str, port: int) -> trio.SocketStream:
    """A TCP connection; to an address (the common upstream on a private
    network) without ``open_tcp_stream``'s name lookup and its nursery of attempts."""
    family = _address_family(host)
    if family is None:
        return await trio.open_tcp_stream(host, port)
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


@functools.cache
def _address_family(host: str) -> int | None:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None


@functools.cache
def _host_header(origin: Origin) -> tuple[bytes, bytes]:
    scheme, host, port = origin
    default = 443 if scheme == "https" else 80
    if _address_family(host) == socket.AF_INET6:
        host = f"[{host}]"
    return (b"host", (host if port == default else f"{host}:{port}").encode("ascii"))


def _framed(
    origin: Origin, headers: list[tuple[bytes, bytes]], method: bytes, body: bytes
) -> list[tuple[bytes, bytes]]:
    framed = [_host_header(origin), *headers]
    if body or method in (b"POST", b"PUT", b"PATCH"):
        framed.append((b"content-length", b"%d" % len(body)))
    return framed
