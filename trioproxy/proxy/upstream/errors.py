"""What can go wrong with an upstream exchange, as types.

Every wire error (trio's, the socket's, TLS's, the HTTP reader's) is turned
into one of these at one boundary, :func:`wire_error`, the way httpcore's
``map_exceptions`` does; nothing above the upstream client sees a trio or an
``OSError`` exception from the upstream's side::

    ExchangeError                 an exchange ended without its answer
    ├── Aborted                   a stop aborted it: the client's doing, not the upstream's
    └── UpstreamError             the upstream's fault, not the client's
        ├── Unreachable           nothing reached the upstream: a fallback may be tried
        │   ├── Unsendable        the request's head cannot be written (CR, LF or NUL in it)
        │   └── ConnectTimeout    (also an UpstreamTimeout) no connection within connect_s
        ├── UpstreamTimeout       the upstream was too slow
        │   ├── HeadersTimeout    the request went out, no response head within headers_s
        │   └── IdleTimeout       silence mid-answer for idle_s (or the client took nothing)
        └── UpstreamBroken        it answered something that is not HTTP, or closed mid-answer
"""

import trio

__all__ = [
    "WIRE_ERRORS",
    "Aborted",
    "ConnectTimeout",
    "ExchangeError",
    "HeadersTimeout",
    "IdleTimeout",
    "Unreachable",
    "Unsendable",
    "UpstreamBroken",
    "UpstreamError",
    "UpstreamTimeout",
    "wire_error",
]


class ExchangeError(Exception):
    """An upstream exchange ended without its whole answer."""

    public: str | None = None
    """What the client is told in place of the message when the message names the
    upstream's address (which only the log may show); None: the message itself."""


class Aborted(ExchangeError):
    """The exchange was aborted (:meth:`~.pool.UpstreamExchange.abort`): a stop's doing.

    Whatever failed after the abort is reported as this, never as the upstream's error.
    """


class UpstreamError(ExchangeError):
    """The upstream failed, was unreachable, or too slow: the upstream's fault, not the client's."""


class Unreachable(UpstreamError):
    """Nothing reached the upstream (refused, unresolved, TLS failed): a fallback may be tried."""


class Unsendable(Unreachable):
    """The request cannot be written as HTTP/1.1 (a header holds CR, LF or NUL)."""


class UpstreamTimeout(UpstreamError):
    """The upstream took longer than its deadline (504, or an ``upstream_timeout`` event)."""


class ConnectTimeout(Unreachable, UpstreamTimeout):
    """No connection, or the request not written, within ``connect_s``: nothing was sent."""


class HeadersTimeout(UpstreamTimeout):
    """The request was sent; no response head came within ``headers_s``."""


class IdleTimeout(UpstreamTimeout):
    """Mid-answer, nothing moved for ``idle_s``: a silent upstream, or a client that took
    no byte (the message says which)."""


class UpstreamBroken(UpstreamError):
    """The upstream answered something that is not HTTP/1.1, or closed the connection
    before the answer's end."""


WIRE_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
"""What the wire raises: a closed or reset socket, and TLS (``ssl.SSLError`` is an
``OSError``; trio wraps it in ``BrokenResourceError``)."""


def wire_error(
    exc: BaseException,
    what: str,
    error: type[UpstreamError],
    aborted: bool,
    public: str | None = None,
) -> ExchangeError:
    """The one mapping from a wire error (or a reader's ``ValueError``) to the tree:
    :class:`Aborted` when a stop aborted the exchange first, else ``error``, saying
    ``what`` failed and the wire's own words (``public`` in its place for the client,
    when those name an address). Raised ``from exc`` by the caller.

    A function, not a context manager: it sits on the path of every body read,
    where a ``try`` costs nothing and a ``with`` would cost a call.
    """
    if aborted:
        return Aborted("the exchange was aborted by a stop")
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
    failure = error(f"{what}: {cause}" if what else str(cause))
    failure.public = public
    return failure
