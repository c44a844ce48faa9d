"""hypercorn's keep-alive idle timer, re-armed by moving one deadline.

hypercorn arms its idle timer when a connection goes idle and disarms it
when a request starts, by cancelling the timer's task and starting a new one
with ``nursery.start`` (``TrioSingleTask.restart``): twice per request, a
task spawned, scheduled and waited for. Profiled under wrk that was about a
tenth of the proxy's CPU. Here each connection has one timer task, started
with the connection's first request, waiting in one cancel scope whose
deadline moves: now plus ``keep_alive_timeout`` when idle, never when busy.

The connection's read loop is hypercorn's, less the ``fail_after`` it opens
around every read even when there is no read timeout (there is none here:
the body timeout is the relay's).

Semantics kept from hypercorn's ``TCPServer._idle_timeout``: an idle
connection closes once the keep-alive timeout passes, or at once when the
server is shutting down; a busy one is never closed by the timer, and closes
as soon as it goes idle if the server began shutting down meanwhile.
"""

import math
from typing import Any

import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer

__all__ = ["IdleTimer", "install"]


class IdleTimer:
    """Stands in for hypercorn's ``TrioSingleTask`` as ``TCPServer.idle_task``."""

    __slots__ = ("_deadline", "_ended", "_idle_again", "_scope", "_server", "_started")

    def __init__(self, server: Any) -> None:
        self._server = server
        self._deadline = math.inf
        self._scope: trio.CancelScope | None = None
        self._idle_again: trio.Event | None = None
        self._started = False
        self._ended = False

    async def restart(self, task_group: Any, action: object) -> None:
        """The connection went idle: close it ``keep_alive_timeout`` from now."""
        self._move(trio.current_time() + self._server.config.keep_alive_timeout)
        if self._idle_again is not None:
            self._idle_again.set()
        if not self._started:
            self._started = True
            task_group._nursery.start_soon(self._run)

    async def stop(self) -> None:
        """A request started: the timer never fires while it runs."""
        self._move(math.inf)

    def end(self) -> None:
        """The connection's read loop is over: the timer has nothing left to close."""
        self._ended = True
        if self._scope is not None:
            self._scope.cancel()
        if self._idle_again is not None:
            self._idle_again.set()

    def _move(self, deadline: float) -> None:
        self._deadline = deadline
        if self._scope is not None:
            self._scope.deadline = deadline

    async def _run(self) -> None:
        with trio.CancelScope(deadline=self._deadline) as self._scope:
            await self._server.context.terminated.wait()
        self._scope = None
        while self._deadline == math.inf and not self._ended:  # shutdown mid-request
            self._idle_again = trio.Event()
            await self._idle_again.wait()  # close once idle
        if self._ended:
            return
        with trio.CancelScope(shield=True):
            await self._server._initiate_server_close()


async def _read_until_closed(server: Any) -> None:
    """hypercorn's read loop without its per-read ``fail_after(inf)`` when there is
    no read timeout: a cancel scope (and trio's generator context managers) per read."""
    stream, protocol = server.stream, server.protocol
    while True:
        try:
            data = await stream.receive_some(MAX_RECV)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            break
        await protocol.handle(RawData(bytes(data)))
        if not data:
            break
    await protocol.handle(Closed())


def install() -> None:
    init = TCPServer.__init__
    read_data = TCPServer._read_data

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.idle_task = IdleTimer(self)

    async def _read_data(self: Any) -> None:
        # The timer task lives in the connection's task group, which cannot
        # end before it does: end it with the read loop.
        try:
            if self.config.read_timeout is None:
                await _read_until_closed(self)
            else:
                await read_data(self)
        finally:
            self.idle_task.end()

    setattr(TCPServer, "__init__", __init__)  # noqa: B010 (mypy: method-assign)
    setattr(TCPServer, "_read_data", _read_data)  # noqa: B010
