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

import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

import trio

from trioproxy.proxy.upstream.connection import Connection, Origin, connect, framed
from trioproxy.proxy.upstream.errors import Unreachable, Unsendable, wire_error
from trioproxy.proxy.upstream.exchange import Deadlines, UpstreamExchange
from trioproxy.proxy.upstream.http11 import ProtocolError, request_head

__all__ = ["Deadlines", "Origin", "UpstreamExchange", "UpstreamPool"]


_SENT_APART = 64 * 1024
"""A body this large is sent after its head, not copied behind it."""


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
        self._idle: dict[Origin, list[Connection]] = {}
        self._serving: frozenset[Origin] | None = None
        """After a reload, the origins still configured; None: any."""

    def reconfigure(
        self, serving: frozenset[Origin], ssl_contexts: Mapping[Origin, ssl.SSLContext]
    ) -> None:
        """A reload's upstreams: connections to an origin no longer served close as
        they come back idle, those idle now at once. So do those to an origin with a
        CA of its own, before or now: its file may hold other CAs since."""
        own = set(self._ssl_contexts) | set(ssl_contexts)
        for context in ssl_contexts.values():
            context.set_alpn_protocols(["http/1.1"])
        self._ssl_contexts = dict(ssl_contexts)
        self._serving = serving
        for origin in [o for o in self._idle if o not in serving or o in own]:
            for conn in self._idle.pop(origin):
                conn.close()

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
            head = request_head(method, target, framed(origin, headers, method, body))
        except ProtocolError as exc:
            raise wire_error(exc, "", Unsendable, False) from exc
        request = (head + body,) if len(body) < _SENT_APART else (head, body)
        return UpstreamExchange(self, origin, request, method == b"HEAD", deadlines, on_sent)

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

    def take_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.still_open():
                return conn
            conn.close()
        return None

    def put_idle(self, origin: Origin, conn: Connection) -> None:
        if self._serving is not None and origin not in self._serving:
            conn.close()  # its upstream went with a reload
            return
        conn.idle_until = trio.current_time() + self._keepalive_expiry_s
        self._idle.setdefault(origin, []).append(conn)

    async def open_connection(self, origin: Origin) -> Connection:
        scheme, host, port = origin
        try:
            stream: trio.abc.Stream = await connect(host, port)
        except OSError as exc:
            what = f"cannot connect to {host}:{port}"
            raise wire_error(exc, what, Unreachable, False, "cannot connect") from exc
        if scheme == "https":
            context = self._ssl_contexts.get(origin, self._ssl_context)
            stream = trio.SSLStream(stream, context, server_hostname=host)
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError) as exc:
                await trio.aclose_forcefully(stream)
                what = f"TLS with {host}:{port} failed"
                raise wire_error(exc, what, Unreachable, False, _tls_public(exc)) from exc
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return Connection(stream)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await trio.lowlevel.checkpoint()


def _tls_public(exc: BaseException) -> str:
    """What a client is told of a failed handshake: whether the certificate failed,
    not the verifier's words, which may name the host."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return "TLS failed: certificate verify failed"
    return "TLS failed"
