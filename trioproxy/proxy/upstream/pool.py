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

An exchange's life is one state machine (:mod:`.state`); its failures are
the types of :mod:`.errors`, mapped from the wire's at one boundary. The
client knows nothing of the caller's client: whoever must stop an exchange
(the request core's stop) holds it and calls :meth:`UpstreamExchange.abort`,
from any thread.
"""

import contextlib
import functools
import ipaddress
import select
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import trio

from trioproxy.proxy.upstream.chunked import ChunkedBody, ChunkError
from trioproxy.proxy.upstream.errors import (
    WIRE_ERRORS,
    Aborted,
    ConnectTimeout,
    HeadersTimeout,
    IdleTimeout,
    Unreachable,
    Unsendable,
    UpstreamBroken,
    UpstreamError,
    wire_error,
)
from trioproxy.proxy.upstream.http11 import Framing, Head, HeadReader, ProtocolError, request_head
from trioproxy.proxy.upstream.state import ExchangeState, State

__all__ = ["Deadlines", "Origin", "UpstreamExchange", "UpstreamPool"]

type Origin = tuple[str, str, int]
"""Scheme, host, port: from the configuration only."""

_READ = 65536
_SENT, _BODY, _READ_ALL, _WHOLE = State.SENT, State.BODY, State.READ, State.WHOLE


@dataclass(frozen=True, slots=True)
class Deadlines:
    connect_s: float
    headers_s: float
    """From the request sent to the response's headers: the model's queue and prompt."""
    idle_s: float
    """Longest silence before a body chunk."""


class _Connection:
    __slots__ = ("idle_until", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.idle_until = 0.0

    @property
    def _socket(self) -> trio.socket.SocketType:
        stream = self.stream
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        assert isinstance(stream, trio.SocketStream)
        return stream.socket

    def still_open(self) -> bool:
        """Not expired, and nothing to read: a readable idle socket is one the upstream closed."""
        if trio.current_time() > self.idle_until:
            return False
        poller = select.poll()  # select() cannot take a descriptor past 1023
        poller.register(self._socket.fileno(), select.POLLIN)
        return not poller.poll(0)

    def close(self) -> None:
        """At once, with no TLS close_notify to wait on; a task blocked on it wakes.
        A second close costs nothing."""
        self._socket.close()

    def shut_down(self) -> None:
        """From any thread: the upstream sees its client go at once (a FIN), and the
        loop's task blocked on the socket wakes; the loop closes it later."""
        sock = self._socket
        if sock.fileno() >= 0:
            # Not connected yet, or reset already: nothing left to tell.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class UpstreamExchange(ExchangeState):
    """One request to an upstream and its response: status, headers and a body read
    chunk by chunk within the exchange's moving deadline.

    Made by :meth:`UpstreamPool.exchange` before any I/O, so whoever must stop it
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
        "_request",
        "_scope",
        "_slack_s",
        "declared",
        "framing",
        "headers",
        "status",
    )

    def __init__(
        self,
        pool: "UpstreamPool",
        origin: Origin,
        request: bytes,
        head_request: bool,
        deadlines: Deadlines,
        on_sent: Callable[[], None] | None,
    ) -> None:
        super().__init__()
        self._pool = pool
        self._origin = origin
        self._request = request
        """The request's bytes, head and body."""
        self._head_request = head_request
        self._deadlines = deadlines
        self._on_sent = on_sent
        self._conn: _Connection | None = None
        """The connection in use; set and cleared under the state's lock."""
        self._scope = trio.CancelScope()
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
        assert self._conn is not None
        try:
            data = await self._conn.stream.receive_some(_READ)
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
        conn = pool._take_idle(self._origin)
        reused = conn is not None
        while True:
            if conn is None:
                conn = await pool._open(self._origin)
            if not self.attach(functools.partial(setattr, self, "_conn", conn), conn.close):
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

    async def _send_and_read_head(self, conn: _Connection) -> None:
        self._scope.deadline = trio.current_time() + self._deadlines.headers_s
        try:
            await conn.stream.send_all(self._request)
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
            try:
                read = await conn.stream.receive_some(_READ)
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

    def _close(self) -> None:
        """Under the state's lock: the connection closed and let go."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _release(self) -> None:
        conn = self._conn
        if self.end(self._close):
            assert conn is not None
            self._pool._pool(self._origin, conn)
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

    def exchange(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        deadlines: Deadlines,
        on_sent: Callable[[], None] | None = None,
    ) -> UpstreamExchange:
        """One exchange, not begun: :meth:`UpstreamExchange.abort` works from now on.

        Raises :class:`~.errors.Unsendable` if the request cannot be written."""
        try:
            head = request_head(method, target, _framed(origin, headers, method, body))
        except ProtocolError as exc:
            raise wire_error(exc, "", Unsendable, False) from exc
        return UpstreamExchange(self, origin, head + body, method == b"HEAD", deadlines, on_sent)

    def request(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        deadlines: Deadlines,
        on_sent: Callable[[], None] | None = None,
    ) -> AbstractAsyncContextManager[UpstreamExchange]:
        """An exchange nobody else stops: ``exchange(...).open()``."""
        return self.exchange(origin, method, target, headers, body, deadlines, on_sent).open()

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.still_open():
                return conn
            conn.close()
        return None

    def _pool(self, origin: Origin, conn: _Connection) -> None:
        conn.idle_until = trio.current_time() + self._keepalive_expiry_s
        self._idle.setdefault(origin, []).append(conn)

    async def _open(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        try:
            stream: trio.abc.Stream = await _connect(host, port)
        except OSError as exc:
            raise wire_error(exc, f"cannot connect to {host}:{port}", Unreachable, False) from exc
        if scheme == "https":
            context = self._ssl_contexts.get(origin, self._ssl_context)
            stream = trio.SSLStream(stream, context, server_hostname=host)
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError) as exc:
                await trio.aclose_forcefully(stream)
                raise wire_error(exc, f"TLS with {host}:{port} failed", Unreachable, False) from exc
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return _Connection(stream)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await trio.lowlevel.checkpoint()


class _Stale(Exception):
    """A reused connection failed before any byte of its response came."""


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
