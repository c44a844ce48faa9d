"""The life of one upstream exchange, as one state machine.

Everything that moves an exchange from one state to the next lives here, as
h11's ``_state.py`` keeps its table: the pool (:mod:`.pool`) does the I/O and
calls these transitions; it keeps no flag of its own about where an exchange is.

::

    CONNECTING ──► SENT ──► BODY ──► READ ──► WHOLE ──► DONE (its connection pooled)
        ▲            │        │        │        │
        └── retry ───┘        │        │        │
                              ▼        ▼        ▼
      any state before DONE ──► CLOSED (ended any other way: the connection closed)
      any state before DONE ──► SHUT_DOWN (abort(): a stop, from any thread)

``SENT`` goes back to ``CONNECTING`` only when a reused connection failed
before any byte of its response came: the request goes once more, on a new
connection. A head with no body goes from ``SENT`` to ``READ`` at once.

No I/O here: the action an abort runs (the socket's shut-down) and the one an
ending runs (its close) are given by the pool, and run under the exchange's lock.
"""

import enum
import threading
from collections.abc import Callable

__all__ = ["ExchangeState", "State"]


class State(enum.Enum):
    CONNECTING = "connecting"
    """No response byte yet on this connection, the request perhaps not all written
    (the connect deadline); nothing reached the upstream for sure."""
    SENT = "sent"
    """The request is written; the response head is not whole (the headers deadline)."""
    BODY = "body"
    """The head is in; body bytes are still to come off the wire (the idle deadline)."""
    READ = "read"
    """The body's last byte came off the wire; some may wait to be handed out."""
    WHOLE = "whole"
    """The body was handed out to its end."""
    DONE = "done"
    """Over: whole, and its connection went back to the pool for another exchange."""
    CLOSED = "closed"
    """Over any other way (an error, a timeout, a body left unread, no keep-alive):
    its connection closed."""
    SHUT_DOWN = "shut_down"
    """Aborted (a stop, perhaps from another thread): its socket shut down at once,
    closed when the exchange ends, never pooled."""


_NEXT: dict[State, frozenset[State]] = {
    State.CONNECTING: frozenset({State.SENT, State.CLOSED}),
    State.SENT: frozenset({State.BODY, State.READ, State.CONNECTING, State.CLOSED}),
    State.BODY: frozenset({State.READ, State.CLOSED}),
    State.READ: frozenset({State.WHOLE, State.CLOSED}),
    State.WHOLE: frozenset({State.DONE, State.CLOSED}),
    State.DONE: frozenset(),
    State.CLOSED: frozenset(),
    State.SHUT_DOWN: frozenset(),
}
_OVER = frozenset({State.DONE, State.CLOSED, State.SHUT_DOWN})


class ExchangeState:
    """Where one exchange is, and whether its connection may carry another."""

    __slots__ = ("_lock", "keep_alive", "state")

    # Invariant: ``state`` moves only along ``_NEXT``, or to SHUT_DOWN from any
    # state not over; every move is made under ``_lock``.
    # Invariant: once SHUT_DOWN, nothing moves it: a transition of the loop's
    # that comes after an abort of another thread's loses, and says so.
    # Invariant: DONE only with ``keep_alive``: a connection is pooled only
    # when its answer was handed out whole and nothing came after it.
    # Invariant: once over (DONE, CLOSED, SHUT_DOWN), an abort does nothing:
    # a pooled connection is never touched by the stop of a request that used it.

    def __init__(self) -> None:
        self.state = State.CONNECTING
        self.keep_alive = True
        """The upstream keeps the connection (HTTP/1.1, no ``Connection: close``)
        and sent nothing past the body's end. Only ever goes from True to False."""
        self._lock = threading.Lock()
        """Taken by every transition, the abort and the socket's close: another
        thread's abort never shuts down a descriptor the loop closed meanwhile."""

    @property
    def aborted(self) -> bool:
        return self.state is State.SHUT_DOWN

    def to(self, new: State) -> bool:
        """Move to ``new``; False (and no move) if an abort came first."""
        with self._lock:
            if self.state is State.SHUT_DOWN:
                return False
            assert new in _NEXT[self.state], f"{self.state} -> {new}"
            self.state = new
            return True

    def abort_with(self, shut_down: Callable[[], None]) -> None:
        """SHUT_DOWN, and ``shut_down`` run under the lock, unless the exchange is over.
        Safe from any thread."""
        with self._lock:
            if self.state in _OVER:
                return
            self.state = State.SHUT_DOWN
            shut_down()

    def attach(self, bind: Callable[[], None], close: Callable[[], None]) -> bool:
        """A connection is taken for the exchange: ``bind`` it under the lock (an abort
        from now on shuts it down); False, with ``close`` run instead, if an abort
        came first: nothing is sent for a request that was stopped."""
        with self._lock:
            if self.state is State.SHUT_DOWN:
                close()
                return False
            bind()
            return True

    def retry(self, close: Callable[[], None]) -> bool:
        """The connection failed before its answer's first byte: closed, and the
        exchange back to CONNECTING for a new one; False if an abort came first."""
        with self._lock:
            close()
            if self.state is State.SHUT_DOWN:
                return False
            assert self.state in (State.CONNECTING, State.SENT), self.state
            self.state = State.CONNECTING
            return True

    def end(self, close: Callable[[], None]) -> bool:
        """The exchange is over: DONE if its connection may carry another (True: pool
        it), else CLOSED (or left SHUT_DOWN), with ``close`` run under the lock."""
        with self._lock:
            if self.state is State.WHOLE and self.keep_alive:
                self.state = State.DONE
                return True
            if self.state is not State.SHUT_DOWN:
                self.state = State.CLOSED
            close()
            return False
