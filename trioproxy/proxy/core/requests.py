"""Where a request's record begins and ends: one record, one outcome, one access
line and one count for every request that reaches the proxy, refused or relayed.

:class:`Requests` opens the record when the request arrives (before any
check: a 401 or a 429 is a request too), puts it in the scope
(:func:`record_of`), and closes it when the app returns: an outcome is
decided if none was, the observers are told, and the one access line is
written. Every answer it gives carries the request's ``x-request-id``
(:mod:`.request_id`). The observers (the metrics, the admin's list of requests in flight)
subscribe to a record's start and end; the layers that serve the request
never call them.
"""

from collections.abc import Callable

from trioproxy.asgi import ASGIApp, Message, Receive, Scope, Send
from trioproxy.proxy.core.bounded import ADDRESS_MAX, kept
from trioproxy.proxy.core.outcome import Outcome, only_cancelled
from trioproxy.proxy.core.record import RequestRecord
from trioproxy.proxy.core.request_id import answer_headers, request_id_of

__all__ = ["RECORD", "Observer", "Requests", "record_of"]

RECORD = "trioproxy.record"
"""The scope entry holding the request's :class:`RequestRecord`."""

type Observer = Callable[[RequestRecord], None]


def record_of(scope: Scope) -> RequestRecord:
    """The request's record, which :meth:`Requests.recorded` put in its scope."""
    rec: RequestRecord = scope[RECORD]
    return rec


class Requests:
    """The records' one beginning and one end, and who watches them."""

    def __init__(self) -> None:
        self._started: list[Observer] = []
        self._ended: list[Observer] = []

    def subscribe(self, started: Observer | None = None, ended: Observer | None = None) -> None:
        """Called with each record as its request starts, and as it ends (once each)."""
        if started is not None:
            self._started.append(started)
        if ended is not None:
            self._ended.append(ended)

    def recorded(self, app: ASGIApp, *, own_answers: bool = False) -> ASGIApp:
        """``app`` with a record for each HTTP request. ``own_answers``: the app
        (Quart's) sets no outcome of its own; the status it answers decides it.
        ``send`` is wrapped to mark the answer's head with the request id: one
        test of the message's type per message (some 0.1 us)."""

        async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
            rec = self._start(scope)
            try:
                await app(scope, receive, _marked(send, rec, own_answers))
            except BaseException as exc:
                # hypercorn never cancels a request; only the server stopping does
                # (after its grace period). The cancel may come grouped by a nursery.
                if only_cancelled(exc):  # a head already sent keeps its status: the client's
                    rec.end(Outcome.SHUTDOWN, None if rec.status else 503)
                else:  # a fault of the proxy's own: hypercorn answers 500, and it is logged so
                    rec.end(Outcome.UPSTREAM_ERROR, 500)
                raise
            finally:
                self._end(rec)

        return recorded

    def _start(self, scope: Scope) -> RequestRecord:
        rec = RequestRecord(scope["method"], scope["path"])
        rec.x_request_id = request_id_of(scope["headers"])
        client = scope.get("client")
        rec.client = kept(f"{client[0]}:{client[1]}", ADDRESS_MAX) if client else ""
        scope[RECORD] = rec
        for started in self._started:
            started(rec)
        return rec

    def _end(self, rec: RequestRecord) -> None:
        if rec.outcome is None:  # an answer of the proxy's own that named no outcome
            rec.end(Outcome.of_refusal(rec.status))
        for ended in self._ended:
            ended(rec)
        rec.log()


def _marked(send: Send, rec: RequestRecord, own_answers: bool) -> Send:
    """``send``, with the request id on the answer's head (and its status kept, for
    an app that names no outcome)."""

    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = answer_headers(list(message.get("headers", ())), rec.x_request_id)
            if own_answers:
                rec.status = message["status"]
        await send(message)

    return marked
