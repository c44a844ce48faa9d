"""hypercorn's keep-alive idle timer, re-armed by moving one deadline.

hypercorn arms its idle timer when a connection goes idle and disarms it
when a request starts, by cancelling the timer's task and starting a new one
with ``nursery.start`` (``TrioSingleTask.restart``): twice per request, a
task spawned, scheduled and waited for. Profiled under wrk that was about a
tenth of the proxy's CPU. Here each connection has one timer task, started
with the connection's first request, waiting in one cancel scope whose
deadline moves: now plus ``keep_alive_timeout`` when idle, never when busy.

The connection's read loop (:class:`trioproxy.server.tcp.GuardedTCPServer`)
is hypercorn's, less the ``fail_after`` it opens around every read even when
there is no read timeout (there is none here: the body timeout is the relay's).

Semantics kept from hypercorn's ``TCPServer._idle_timeout``: an idle
connection closes once the keep-alive timeout passes, or at once when the
server is shutting down; a busy one is never closed by the timer, and closes
as soon as it goes idle if the server began shutting down meanwhile.
"""

import math
from collections.abc import Awaitable, Callable

import trio
from hypercorn.trio.task_group import TaskGroup
from hypercorn.typing import Event

__all__ = ["IdleTimer"]


class IdleTimer:
    """One connection's keep-alive timer: ``close`` runs once it is idle too long."""

    __slots__ = (
        "_close",
        "_deadline",
        "_ended",
        "_idle_again",
        "_scope",
        "_started",
        "_terminated",
        "_timeout_s",
    )

    def __init__(
        self, timeout_s: float, terminated: Event, close: Callable[[], Awaitable[None]]
    ) -> None:
        self._timeout_s = timeout_s
        self._terminated = terminated  # the server is shutting down
        self._close = close
        self._deadline = math.inf
        self._scope: trio.CancelScope | None = None
        self._idle_again: trio.Event | None = None
        self._started = False
        self._ended = False

    def idle(self, task_group: TaskGroup) -> None:
        """The connection went idle: close it ``timeout_s`` from now."""
        self._move(trio.current_time() + self._timeout_s)
        if self._idle_again is not None:
            self._idle_again.set()
        if not self._started:
            self._started = True
            task_group.spawn(self._run)

    def busy(self) -> None:
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
            await self._terminated.wait()
        self._scope = None
        while self._deadline == math.inf and not self._ended:  # shutdown mid-request
            self._idle_again = trio.Event()
            await self._idle_again.wait()  # close once idle
        if self._ended:
            return
        with trio.CancelScope(shield=True):
            await self._close()
