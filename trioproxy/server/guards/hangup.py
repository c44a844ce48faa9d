"""A client's hang-up acted on outside the event loop's turns.

Every other way a stop is seen runs inside trio's run loop, which polls for
I/O only between batches of task steps. Under load a batch holds the relay
work of every other stream and the set-up of every new request: in a storm
of a thousand stops the batches ran 20-150 ms, and a stop landing in one
waited for all of it.

Here one daemon thread per process blocks in its own epoll on the client
sockets of the requests that *armed* their hang-up (HTTP/1.1 only), for
``EPOLLRDHUP`` (a FIN) and ``EPOLLHUP``/``EPOLLERR`` (a reset). When one
fires, the thread runs the request's action at once, which needs the GIL
only between two bytecodes of the loop's thread (``sys.setswitchinterval``,
set to 1 ms by the server) and not the end of its batch. A collector pass
still holds the GIL for its whole length.

The action must be thread-safe and small: the proxy's shuts down the
upstream socket, which is all the model server needs to see; everything
else (the outcome, the 499 line, the cancel of the request's race) still
happens in the loop, when the read task sees the same hang-up.

Safety, since file descriptor numbers are reused:

- arming, disarming and firing hold one lock; an action never runs after
  its request disarmed;
- an event is acted on only if the descriptor reports the hang-up still
  (``poll`` at that moment). If the socket was closed and its number taken
  by another connection, that one is not hung up, and nothing happens;
  if it is, its own request would have been stopped anyway;
- a disarm removes the epoll entry only while the entry is its own.
"""

import contextlib
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any

from hypercorn.protocol.h11 import H11Protocol

from trioproxy.asgi import CLIENT_HANGUP

__all__ = ["Hangup", "install"]

_HUNG_UP = select.POLLRDHUP | select.POLLHUP | select.POLLERR
_EVENTS = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR | select.EPOLLONESHOT
SWITCH_INTERVAL_S = 0.001
"""How long the loop's thread may hold the GIL while the watcher waits for it."""


class _Watcher:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed: dict[int, Hangup] = {}
        self._epoll = select.epoll()
        self._thread: threading.Thread | None = None

    def arm(self, hangup: "Hangup") -> None:
        with self.lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="trioproxy-hangup", daemon=True
                )
                self._thread.start()
            fd = hangup.fd
            self.armed[fd] = hangup
            try:
                self._epoll.register(fd, _EVENTS)
            except FileExistsError:  # this socket's entry, left disarmed by its last event
                self._epoll.modify(fd, _EVENTS)
            except OSError:  # the socket is closed already: nothing to watch
                del self.armed[fd]

    def disarm(self, hangup: "Hangup") -> None:
        with self.lock:
            hangup.action = None
            if self.armed.get(hangup.fd) is hangup:
                del self.armed[hangup.fd]
                with contextlib.suppress(OSError):  # closed: the kernel dropped it
                    self._epoll.unregister(hangup.fd)

    def _run(self) -> None:
        while True:
            for fd, _ in self._epoll.poll():
                with self.lock:
                    hangup = self.armed.get(fd)
                    if hangup is None or hangup.action is None or not _hung_up(fd):
                        continue
                    action, hangup.action = hangup.action, None
                    hangup.fired = True
                    with contextlib.suppress(Exception):  # a fault here must not end the thread
                        action()


def _hung_up(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, _HUNG_UP)
    return any(events & _HUNG_UP for _, events in poller.poll(0))


_watcher = _Watcher()


def _after_fork() -> None:
    """A forked child has no watcher thread, and must not share the parent's epoll."""
    global _watcher
    _watcher = _Watcher()
    Hangup.lock = _watcher.lock


os.register_at_fork(after_in_child=_after_fork)


class Hangup:
    """One client connection's hang-up, as the application sees it in its scope."""

    __slots__ = ("action", "fd", "fired")

    lock = _watcher.lock
    """Held while an action runs: what the action touches, take it to change."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.action: Callable[[], None] | None = None
        self.fired = False
        """The action ran: the client hung up while it was armed."""

    def arm(self, action: Callable[[], None]) -> None:
        """Run ``action`` from the watcher thread if the client hangs up before :meth:`disarm`."""
        self.fired = False
        self.action = action
        _watcher.arm(self)

    def disarm(self) -> None:
        """After this returns, the action never runs."""
        if self.action is not None or _watcher.armed.get(self.fd) is self:
            _watcher.disarm(self)


def _client_fd(protocol: Any) -> int | None:
    server = getattr(protocol.send, "__self__", None)  # hypercorn's TCPServer
    stream = getattr(server, "stream", None)
    stream = getattr(stream, "transport_stream", stream)  # under TLS, the TCP stream
    sock = getattr(stream, "socket", None)
    return sock.fileno() if sock is not None else None


def install() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    create_stream = H11Protocol._create_stream

    async def _create_stream(self: Any, request: Any) -> None:
        await create_stream(self, request)
        scope = getattr(self.stream, "scope", None)
        if scope is None:
            return
        hangup = getattr(self, "_trioproxy_hangup", None)
        if hangup is None:  # one per connection, for each of its requests in turn
            fd = _client_fd(self)
            if fd is None:
                return
            hangup = Hangup(fd)
            self._trioproxy_hangup = hangup
        scope[CLIENT_HANGUP] = hangup

    setattr(H11Protocol, "_create_stream", _create_stream)  # noqa: B010 (mypy: method-assign)
