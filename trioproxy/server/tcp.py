"""One client connection: hypercorn's ``TCPServer`` with the connection guards as its methods.

- containment (:mod:`.guards.connection`): a fault that leaves the
  connection's task ends that connection, with one log line, never the
  server's nursery; its close is shielded from the cancel of the request
  that asked for it;
- writes (:mod:`.guards.fastwrite`): straight to the socket when it has
  room, unshielded and bounded by ``send_stall_s`` when not;
- the keep-alive timer (:mod:`.guards.idle`): one task per connection, one
  moving deadline; the read loop has no per-read ``fail_after``;
- the protocols (:mod:`.protocols`): the guarded HTTP/1.1 and HTTP/2 ones,
  and for HTTP/1.1 the connection's hang-up (:mod:`.guards.hangup`).
"""

import contextlib
from math import inf

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import parse_socket_addr

from trioproxy.server.guards.connection import log_fault
from trioproxy.server.guards.fastwrite import send_bounded, write_now
from trioproxy.server.guards.hangup import Hangup, HangupWatcher
from trioproxy.server.guards.idle import IdleTimer
from trioproxy.server.guards.limits import limits_of
from trioproxy.server.protocols import Protocols

__all__ = ["GuardedTCPServer"]


class GuardedTCPServer(TCPServer):
    """Serves one accepted stream; ``await`` it (as hypercorn's) or call :meth:`run`."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream],
        *,
        hangups: HangupWatcher | None = None,
    ) -> None:
        super().__init__(app, config, context, state, stream)  # type: ignore[arg-type]
        self.protocol: Protocols  # type: ignore[assignment]
        self._hangups = hangups
        self._stall_s = limits_of(config).send_stall_s
        self._timer = IdleTimer(config.keep_alive_timeout, context.terminated, self.close_idle)
        self._tasks: TaskGroup | None = None
        self._hangup: Hangup | None = None

    async def run(self) -> None:
        try:
            await self._serve()
        except* Exception as group:  # Cancelled (shutdown) is no Exception: it passes on
            log_fault(group)
        finally:
            # Closed whichever way it ended, a failed TLS handshake included
            # (trio.serve_listeners, which hypercorn used, did this too).
            await trio.aclose_forcefully(self.stream)

    async def _serve(self) -> None:
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                return  # the handshake failed
            alpn = stream.selected_alpn_protocol()
            sock = stream.transport_stream.socket
            ssl = True
        else:
            alpn, sock, ssl = "http/1.1", stream.socket, False
        hangup = None if self._hangups is None else Hangup(sock.fileno(), self._hangups)
        self._hangup = hangup
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            async with TaskGroup() as tasks:
                self._tasks = tasks
                self.protocol = Protocols(
                    self.app,
                    self.config,
                    self.context,
                    tasks,
                    ConnectionState(self.state),
                    ssl,
                    client,
                    server,
                    self.protocol_send,
                    alpn,
                    hangup,
                    self.send_bytes,
                )
                await self.protocol.initiate()
                self._timer.idle(tasks)
                await self._read_until_closed()
        except OSError:
            pass
        finally:
            await self.close()

    async def send_bytes(self, data: bytes) -> None:
        """What ``protocol_send`` does with ``RawData``, without the event: the
        HTTP/1.1 protocol writes each relayed chunk through it."""
        if not data:  # h11's end of a body with a length: no bytes, so no system call
            return
        if not self.send_lock.locked():
            data = write_now(self.stream, data)
            if not data:
                return
        async with self.send_lock:
            try:
                await send_bounded(self.stream, data, self._stall_s)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self.protocol.handle(Closed())

    async def protocol_send(self, event: Event) -> None:
        if type(event) is RawData:
            await self.send_bytes(event.data)
        elif isinstance(event, Closed):
            await self.close()
            await self.protocol.handle(Closed())
        elif isinstance(event, Updated):
            if not event.idle:
                self._timer.busy()
            elif self._tasks is not None:
                self._timer.idle(self._tasks)

    async def _read_until_closed(self) -> None:
        # The timer task lives in the connection's task group, which cannot
        # end before it does: end it with the read loop.
        try:
            timeout_s = self.config.read_timeout or inf
            while True:
                try:
                    if timeout_s == inf:  # no scope per read (the body timeout is the relay's)
                        data = await self.stream.receive_some(MAX_RECV)
                    else:
                        with trio.fail_after(timeout_s):
                            data = await self.stream.receive_some(MAX_RECV)
                except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                    break
                await self.protocol.handle(RawData(bytes(data)))
                if not data:
                    break
            await self.protocol.handle(Closed())
        finally:
            self._timer.end()

    async def close(self) -> None:
        """hypercorn's close (EOF, then close), shielded: hypercorn closes from inside
        the app's last ``send()``, and an app may cancel itself right then."""
        self._forget_hangup()
        with trio.CancelScope(shield=True):
            with contextlib.suppress(
                trio.BrokenResourceError,
                AttributeError,  # TLS has no EOF
                trio.BusyResourceError,
                trio.ClosedResourceError,  # gone already
            ):
                await self.stream.send_eof()
            await self.stream.aclose()

    async def close_idle(self) -> None:
        """The keep-alive timer ran out, or the server stops: the idle connection ends."""
        await self.protocol.handle(Closed())
        self._forget_hangup()
        await self.stream.aclose()

    def _forget_hangup(self) -> None:
        # Before the socket closes: its descriptor's number may be reused at once.
        if self._hangup is not None:
            self._hangup.forget()
