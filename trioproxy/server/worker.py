"""The serve loop: hypercorn's trio worker, built from its parts.

hypercorn's ``worker_serve`` names its own ``TCPServer``, so this is its
loop with :class:`~trioproxy.server.tcp.GuardedTCPServer`: the lifespan,
the listeners from ``Config``, the shutdown trigger, the graceful timeout,
all hypercorn's. What it adds is owned by this loop and ends with it:

- the hang-up watcher's thread (:class:`~.guards.hangup.HangupWatcher`) and
  the 1 ms GIL switch interval it needs, given back after;
- a second trigger that ends the grace period at once (a second SIGTERM);
- an accept loop of its own, which logs running out of descriptors once in
  a while instead of a traceback every 0.1 s (``trio.serve_listeners`` did);
- hpack's and h2's loggers silenced (header values are logged at DEBUG);
- the end of the grace period told to the app (``grace_over``) before the
  server cancels what is left, :data:`LAST_WORDS_S` later, so a request cut
  there can still say why (a 503, an SSE ``error`` event) instead of a bare close.

HTTP/3 (QUIC) is not served: ``Config.quic_bind`` is refused.
"""

import errno
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from random import randint

import trio
from hypercorn.config import Config
from hypercorn.statsd import StatsdLogger
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr

from trioproxy.server.guards.connection import AcceptErrorFilter
from trioproxy.server.guards.hangup import HangupWatcher, fast_switching
from trioproxy.server.guards.http2 import quiet_header_loggers
from trioproxy.server.tcp import GuardedTCPServer

__all__ = ["LAST_WORDS_S", "serve_guarded"]

log = logging.getLogger("trioproxy.server")

# What accept() raises when the process or the system is out of something:
# wait and retry, as trio.serve_listeners does.
_CAPACITY = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_RETRY_S = 0.1

LAST_WORDS_S = 1.0
"""From the grace period's end (``grace_over`` called) to the server's cancel of
the connections still open: the time the stopped requests have to answer."""

type Listener = trio.SocketListener | trio.SSLListener[trio.SocketStream]


async def serve_guarded(
    app: AppWrapper,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    grace_over: Callable[[], object] | None = None,
    stop_now_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (wrapped as hypercorn wraps it) until the trigger or a cancel;
    ``grace_over`` is called when a shutdown's grace period ends with requests left,
    and ``stop_now_trigger`` ends the grace period at once."""
    if config.quic_bind:
        raise ValueError("HTTP/3 (quic_bind) is not served")
    config.set_statsd_logger_class(StatsdLogger)
    quiet_header_loggers()
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    max_requests = None
    if config.max_requests is not None:  # as hypercorn's: recycle after about this many
        max_requests = config.max_requests + randint(0, config.max_requests_jitter)
    context = WorkerContext(max_requests)
    with fast_switching():
        hangups = HangupWatcher()
        try:
            async with trio.open_nursery() as lifespan_nursery:
                await lifespan_nursery.start(lifespan.handle_lifespan)
                await lifespan.wait_for_startup()
                connection = partial(
                    GuardedTCPServer,
                    app,
                    config,
                    context,
                    ConnectionState(lifespan_state.copy()),
                    hangups=hangups,
                )
                await _serve_listeners(
                    config,
                    context,
                    connection,
                    shutdown_trigger,
                    _Grace(config.graceful_timeout, grace_over, stop_now_trigger),
                    task_status,
                )
                await lifespan.wait_for_shutdown()
                lifespan_nursery.cancel_scope.cancel()
        finally:
            hangups.close()


async def _serve_listeners(
    config: Config,
    context: WorkerContext,
    connection: Callable[[trio.SocketStream], GuardedTCPServer],
    shutdown_trigger: Callable[[], Awaitable[None]] | None,
    grace: "_Grace",
    task_status: trio.TaskStatus[list[str]],
) -> None:
    # The grace's own nursery: its clock must not keep the connections' open.
    async with trio.open_nursery() as grace_tasks:
        async with trio.open_nursery() as connections:
            listeners, binds = await _listeners(config)
            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    errors = AcceptErrorFilter()
                    for listener in listeners:
                        nursery.start_soon(_accept, listener, connection, connections, errors)
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from None
            finally:
                await context.terminated.set()
                grace.begin(connections.cancel_scope, grace_tasks)
        grace_tasks.cancel_scope.cancel()  # every connection ended before the grace did


class _Grace:
    """A shutdown's grace period: requests in flight may finish until it ends, by
    its clock or at once on ``stop_now``; then ``grace_over`` tells the app, and the
    connections left are cancelled :data:`LAST_WORDS_S` later (at once without it)."""

    def __init__(
        self,
        period_s: float,
        grace_over: Callable[[], object] | None,
        stop_now: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self._period_s = period_s
        self._grace_over = grace_over
        self._stop_now = stop_now
        self._last_words_s = LAST_WORDS_S if grace_over is not None else 0.0

    def begin(self, connections: trio.CancelScope, tasks: trio.Nursery) -> None:
        ends = trio.current_time() + self._period_s
        connections.deadline = ends + self._last_words_s
        tasks.start_soon(self._end, ends, connections)

    async def _end(self, ends: float, connections: trio.CancelScope) -> None:
        with trio.move_on_at(ends):
            if self._stop_now is None:
                await trio.sleep_forever()
            await self._stop_now()
        if self._grace_over is not None:
            self._grace_over()
        connections.deadline = min(connections.deadline, trio.current_time() + self._last_words_s)


async def _listeners(config: Config) -> tuple[list[Listener], list[str]]:
    sockets = config.create_sockets()
    ssl_context = config.create_ssl_context()
    listeners: list[Listener] = []
    binds: list[str] = []
    for sock, secure in [(s, True) for s in sockets.secure_sockets] + [
        (s, False) for s in sockets.insecure_sockets
    ]:
        sock.listen(config.backlog)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        if secure:
            assert ssl_context is not None  # hypercorn makes secure sockets only with one
            listeners.append(trio.SSLListener(listener, ssl_context, https_compatible=True))
        else:
            listeners.append(listener)
        scheme = "https" if secure else "http"
        bind = f"{scheme}://{repr_socket_addr(sock.family, sock.getsockname())}"
        binds.append(bind)
        await config.log.info(f"Running on {bind} (CTRL + C to quit)")
    return listeners, binds


async def _accept(
    listener: Listener,
    connection: Callable[[trio.SocketStream], GuardedTCPServer],
    connections: trio.Nursery,
    errors: AcceptErrorFilter,
) -> None:
    """trio.serve_listeners' loop for one listener, its capacity errors rate-limited."""
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _CAPACITY:
                    raise
                record = log.makeRecord(
                    log.name,
                    logging.ERROR,
                    __file__,
                    0,
                    "accept returned %s (%s); retrying in %s seconds",
                    (errno.errorcode.get(exc.errno or 0, "?"), exc.strerror, _ACCEPT_RETRY_S),
                    None,
                )
                if errors.filter(record):
                    log.handle(record)
                await trio.sleep(_ACCEPT_RETRY_S)
            else:
                connections.start_soon(connection(stream).run)  # type: ignore[arg-type]
