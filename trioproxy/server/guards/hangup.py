"""A client's hang-up acted on outside the event loop's turns.

Every other way a stop is seen runs inside trio's run loop, which polls for
I/O only between batches of task steps. Under load a batch holds the relay
work of every other stream and the set-up of every new request: in a storm
of a thousand stops the batches ran 20-150 ms, and a stop landing in one
waited for all of it.

Here one daemon thread per serving server (:class:`HangupWatcher`, opened
by the serve loop for its lifetime) blocks in its own epoll on the client
sockets of the requests that *armed* their hang-up (HTTP/1.1 only), for
``EPOLLRDHUP`` (a FIN) and ``EPOLLHUP``/``EPOLLERR`` (a reset). When one
fires, the thread runs the request's action at once, which needs the GIL
only between two bytecodes of the loop's thread (the switch interval is
1 ms while a watcher is open, see :func:`fast_switching`) and not the end of
its batch. A collector pass still holds the GIL for its whole length.

The action must be thread-safe and small: the proxy's shuts down the
upstream socket, which is all the model server needs to see; everything
else (the outcome, the 499 line, the cancel of the request's race) still
happens in the loop, when the read task sees the same hang-up.

A connection's socket is registered once, at its first request's arm, and
unregistered when the connection ends (:meth:`Hangup.forget`): a keep-alive
connection's later requests arm and disarm with no system call, by setting
and clearing the action under the watcher's lock. Safety, since file
descriptor numbers are reused:

- arming, disarming and firing hold one lock; an action never runs after
  its request disarmed;
- an event is acted on only if the descriptor reports the hang-up still
  (``poll`` at that moment). If the socket was closed and its number taken
  by another connection, that one is not hung up, and nothing happens;
  if it is, its own request would have been stopped anyway;
- the entry is one-shot: an event that found no action (the client left
  between two requests) leaves it disabled, and the next arm enables it
  again, so a hang-up already there is reported at once;
- a forget removes the epoll entry only while the entry is its own, and
  runs before the connection's socket is closed.
"""

import contextlib
import os
import select
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = ["SWITCH_INTERVAL_S", "Hangup", "HangupWatcher", "fast_switching"]

_HUNG_UP = select.POLLRDHUP | select.POLLHUP | select.POLLERR
_EVENTS = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR | select.EPOLLONESHOT
SWITCH_INTERVAL_S = 0.001
"""How long the loop's thread may hold the GIL while the watcher waits for it."""


class HangupWatcher:
    """The epoll and the thread that act on armed hang-ups, for one server's lifetime.

    Created before the server accepts and closed after its last connection:
    nothing of it is left in the process, and a forked child never shares it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed: dict[int, Hangup] = {}
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()  # readable: the thread must end
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, hangup: "Hangup", action: Callable[[], None]) -> None:
        with self.lock:
            hangup.fired = False
            hangup.action = action
            if self._closed or (hangup.registered and not hangup.spent):
                return  # armed already since this connection's first request
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="trioproxy-hangup", daemon=True
                )
                self._thread.start()
            fd = hangup.fd
            try:
                if hangup.registered:
                    self._epoll.modify(fd, _EVENTS)  # re-enabled after an event it did not act on
                else:
                    try:
                        self._epoll.register(fd, _EVENTS)
                    except FileExistsError:  # an entry left for this socket: take it over
                        self._epoll.modify(fd, _EVENTS)
            except OSError:  # the socket is closed already: nothing to watch
                hangup.action = None
                return
            self.armed[fd] = hangup
            hangup.registered, hangup.spent = True, False

    def disarm(self, hangup: "Hangup") -> None:
        with self.lock:
            hangup.action = None

    def forget(self, hangup: "Hangup") -> None:
        with self.lock:
            hangup.action = None
            if self.armed.get(hangup.fd) is hangup:  # registered, and still its own entry
                del self.armed[hangup.fd]
                with contextlib.suppress(OSError):  # closed: the kernel dropped it
                    self._epoll.unregister(hangup.fd)
            hangup.registered = False

    def close(self) -> None:
        """End the thread; every hang-up still armed is disarmed."""
        with self.lock:
            self._closed = True
            for hangup in self.armed.values():
                hangup.action = None
                hangup.registered = False
            self.armed.clear()
            thread = self._thread
        os.write(self._wake_w, b"x")
        if thread is not None:
            thread.join()
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        while True:
            for fd, _ in self._epoll.poll():
                if fd == self._wake_r:
                    return
                with self.lock:
                    hangup = self.armed.get(fd)
                    if hangup is None:
                        continue
                    hangup.spent = True  # one-shot: disabled until the next arm
                    if hangup.action is None or not _hung_up(fd):
                        continue
                    action, hangup.action = hangup.action, None
                    hangup.fired = True
                    with contextlib.suppress(Exception):  # a fault here must not end the thread
                        action()


def _hung_up(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, _HUNG_UP)
    return any(events & _HUNG_UP for _, events in poller.poll(0))


class Hangup:
    """One client connection's hang-up, as the application sees it in its scope."""

    __slots__ = ("_watcher", "action", "fd", "fired", "registered", "spent")

    # Invariant: registered means the watcher's epoll holds this socket's
    # entry and ``armed[fd] is self``; spent means that one-shot entry
    # reported an event since it was last enabled. Both change only under
    # the watcher's lock.

    def __init__(self, fd: int, watcher: HangupWatcher) -> None:
        self.fd = fd
        self._watcher = watcher
        self.action: Callable[[], None] | None = None
        self.fired = False
        """The action ran: the client hung up while it was armed."""
        self.registered = False
        self.spent = False

    @property
    def lock(self) -> threading.Lock:
        """Held while an action runs: what the action touches, take it to change."""
        return self._watcher.lock

    def arm(self, action: Callable[[], None]) -> None:
        """Run ``action`` from the watcher thread if the client hangs up before :meth:`disarm`."""
        self._watcher.arm(self, action)

    def disarm(self) -> None:
        """After this returns, the action never runs, and one already running has
        ended (it runs under the lock, which the disarm takes)."""
        self._watcher.disarm(self)

    def forget(self) -> None:
        """The connection is ending: its socket leaves the watcher (before it is closed)."""
        if self.registered:
            self._watcher.forget(self)


class _SwitchInterval:
    """The process's GIL switch interval, lowered while any watcher is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0  # watchers open in this process
        self._before = 0.0  # the interval when the first opened

    def enter(self) -> None:
        with self._lock:
            if self._open == 0:
                self._before = sys.getswitchinterval()
                sys.setswitchinterval(SWITCH_INTERVAL_S)
            self._open += 1

    def leave(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open == 0:
                sys.setswitchinterval(self._before)


_switch_interval = _SwitchInterval()


@contextlib.contextmanager
def fast_switching() -> Iterator[None]:
    """The GIL switch interval at :data:`SWITCH_INTERVAL_S` while a watcher is open.

    The interval belongs to the process, so it is set by the first server to
    open a watcher and given back as it was when the last one closes.
    """
    _switch_interval.enter()
    try:
        yield
    finally:
        _switch_interval.leave()
