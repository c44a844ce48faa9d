"""Where a request is (its :class:`Phase`) and how it ended (its :class:`Outcome`).

Exactly one outcome per request, decided once (``RequestRecord.end``): the
relay's own for an answer it relayed or refused, a stop's for a request the
client or the admin stopped.
"""

import enum

import trio

__all__ = ["Outcome", "Phase", "only_cancelled"]


class Phase(enum.StrEnum):
    """Where a request is in its life; a stop can come in any of them."""

    UPLOAD = "upload"  # reading the client's request body
    CONNECT = "connect"  # opening the upstream connection, sending the request
    WAITING_HEADERS = "waiting_headers"  # request sent, upstream has not answered
    WAITING_FIRST_BYTE = "waiting_first_byte"  # headers relayed, no body byte yet
    STREAMING = "streaming"  # an event stream's bytes flowing
    BODY = "body"  # the bytes of an answer that is no event stream (a JSON answer, a list)


class Outcome(enum.StrEnum):
    """How a request ended; docs/architecture.md has the table of what each logs."""

    COMPLETED = "completed"  # the upstream's answer relayed whole (or the proxy's own 2xx)
    CLIENT_CLOSED = "client_closed"  # the client left first: 499
    UPSTREAM_ERROR = "upstream_error"  # 502 (500 for a fault of the proxy's own)
    UPSTREAM_TIMEOUT = "upstream_timeout"  # 504
    CANCELLED_BY_ADMIN = "cancelled_by_admin"  # 503
    SHUTDOWN = "shutdown"  # 503: the server stopped after its grace period
    REFUSED = "refused"  # 401: no key, or a wrong one
    LIMITED = "limited"  # 429: the key's concurrency or rate limit
    BAD_REQUEST = "bad_request"  # 400, 405, 408, 413: the request itself
    NOT_FOUND = "not_found"  # 404: a model not served here, or a path outside the API

    @classmethod
    def of_refusal(cls, status: int) -> "Outcome":
        """The outcome of an answer the proxy gave itself, by its status."""
        if status < 400:
            return cls.COMPLETED
        return _REFUSALS.get(status, cls.BAD_REQUEST if status < 500 else cls.UPSTREAM_ERROR)


_REFUSALS = {
    401: Outcome.REFUSED,
    403: Outcome.REFUSED,
    404: Outcome.NOT_FOUND,
    429: Outcome.LIMITED,
}


def only_cancelled(exc: BaseException) -> bool:
    """The exception is trio's cancel alone (perhaps grouped by a nursery)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)
