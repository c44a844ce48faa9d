"""The one owner of "this request is over": :class:`Stop`, and its one :meth:`~Stop.fire`.

Every way a request can be stopped calls it: the race's watcher (the
``http.disconnect`` it waits for), the server's hook in the step that read the
client's leaving, a disconnect already queued with the body, the admin's
cancel, the end of a shutdown's grace period. The server's hang-up thread
calls :meth:`~Stop.hang_up`, the part of a fire that is safe outside the
loop. A fire acts in one place, in one order:

    fire(reason)
      ├─ the outcome decided, unless one was first (RequestRecord.end)
      ├─ the upstream exchange aborted: its socket shut down at once
      ├─ the key's slot freed
      └─ the request's race cancelled: the relay unwinds, the exchange closes

The stop holds the link to the upstream: the upstream client knows nothing
of the client, and offers ``abort()``; the relay links the exchange whose
answer the client gets, and unlinks it when that exchange is over.
"""

import time
from collections.abc import Callable
from typing import Protocol

import trio

from trioproxy.asgi import Hangup
from trioproxy.proxy.core.outcome import Outcome

__all__ = ["Abortable", "Stop"]


class _Record(Protocol):
    """What a stop decides on: the request's record (:mod:`.record`)."""

    client_closed_at: float | None

    def end(self, outcome: Outcome, status: int | None = None) -> bool: ...


class Abortable(Protocol):
    """What a stop holds of the upstream: an exchange it can abort, from any thread."""

    def abort(self) -> None: ...


_ACTS_ONCE_DECIDED = frozenset({Outcome.CANCELLED_BY_ADMIN})
"""Reasons that act even when the outcome was decided first. The admin's cancel
does: such a request may be stuck sending its last bytes. (A shutdown stops only
undecided requests; the server's own cancel ends the rest.) A client's leaving
does not: hypercorn reports one after the relay's own end of the answer too,
while the relay is inside ``send()`` recycling the keep-alive connection, and
cancelling it there would leave the connection half-recycled."""


class Stop:
    """One request's stop: what a fire acts on, and the one place it acts."""

    __slots__ = ("_hangup", "_link", "_record", "_release", "_scope")

    # Invariant: at most one exchange is linked, the one whose answer the
    # client gets; linked, the client's hang-up is armed with hang_up, and it
    # is disarmed before the link goes (so no thread aborts an exchange after
    # its request let it go).
    # Invariant: every action of a fire is idempotent (abort, release, cancel):
    # a second fire, from another path, changes nothing the first did.
    # Invariant: the outcome is decided only by RequestRecord.end: a fire
    # sets it only if nothing set it first.

    def __init__(self, record: _Record) -> None:
        self._record = record
        self._link: Abortable | None = None
        self._hangup: Hangup | None = None
        self._release: Callable[[], None] | None = None
        self._scope: trio.CancelScope | None = None

    def fire(self, reason: Outcome) -> None:
        """Stop the request for ``reason``: a client's stop, the admin's cancel, or the end
        of a shutdown's grace period. No status is set here: a client's stop logs 499,
        and the proxy's own are answered after the race (``relay.answers.answer_stop``),
        which sets the status the client gets."""
        rec = self._record
        if rec.end(reason):
            rec.client_closed_at = time.monotonic()  # the stop, for the propagation metric
        elif reason not in _ACTS_ONCE_DECIDED:
            return
        if self._link is not None:
            self._link.abort()
        if self._release is not None:
            self._release()
        if self._scope is not None:
            self._scope.cancel()

    def client_gone(self) -> None:
        """``fire(CLIENT_CLOSED)``: the hook the server calls the moment the client leaves."""
        self.fire(Outcome.CLIENT_CLOSED)

    def hang_up(self) -> None:
        """The part of ``fire(CLIENT_CLOSED)`` safe in the server's hang-up thread: the
        linked exchange aborted. The rest follows in the loop, when the relay finds
        its exchange aborted or the server's read task sees the same hang-up."""
        link = self._link
        if link is not None:
            link.abort()

    @property
    def can_cancel(self) -> bool:
        """The relay has begun (from reading the body on): a fire now reaches it."""
        return self._scope is not None

    def guard(self, scope: trio.CancelScope) -> None:
        """The relay's scope, body read and race: a fire cancels it."""
        self._scope = scope

    def frees(self, release: Callable[[], None]) -> None:
        """The key's slot, freed by a fire in its own step (and by its holder at the end)."""
        self._release = release

    def watched_by(self, hangup: Hangup | None) -> None:
        """The server's hang-up watch for this request's client, if it has one."""
        self._hangup = hangup

    def link(self, exchange: Abortable) -> None:
        """The exchange whose answer the client gets: a fire aborts it."""
        self._link = exchange
        if self._hangup is not None:
            self._hangup.arm(self.hang_up)

    def unlink(self) -> None:
        if self._hangup is not None:
            self._hangup.disarm()  # from here on, hang_up never runs
        self._link = None
