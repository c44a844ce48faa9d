"""Containment at the connection: one connection's fault is that connection's end.

hypercorn runs each connection in a task of the server's own nursery, and an
exception that leaves it (a ``UnicodeDecodeError`` while decoding an HTTP/2
path was one) cancels the nursery and ends the whole server process. The
guard ends only that connection, with one log line naming the fault and
where it was raised; a traceback is kept for DEBUG.

Closing a connection is never cut short either: hypercorn closes it from
inside the application's last ``send()``, and an application that cancels
its own task right then (quart-trio does after every response) used to
interrupt the close, leaving a ``Connection: close`` socket open until the
client gave up. (Both are done by :class:`trioproxy.server.tcp.GuardedTCPServer`.)

At the fd limit the accept loop (:mod:`trioproxy.server.worker`) logs one
line per 10 s, through :class:`AcceptErrorFilter`, not a traceback every 0.1 s.
"""

import logging
import time
import traceback

__all__ = ["AcceptErrorFilter", "log_fault"]

log = logging.getLogger("trioproxy.server")


def log_fault(group: BaseExceptionGroup[Exception]) -> None:
    """One WARNING line per fault that ended a connection; the traceback at DEBUG."""
    for exc in group.exceptions:
        log.warning(
            "connection ended by a fault: %s: %s (at %s)", type(exc).__name__, exc, _where(exc)
        )
        log.debug("the fault's traceback", exc_info=exc)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 2)[-1]}:{last.lineno}"


class AcceptErrorFilter(logging.Filter):
    """At the fd limit trio's accept loop logs a traceback every 0.1 s until load
    leaves. Let one line through per ``every_s``, without the traceback, and
    say how many were held back."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self._every_s = every_s
        self._last = -float("inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last < self._every_s:
            self._held += 1
            return False
        self._last = now
        record.exc_info = None
        record.exc_text = None
        if self._held:
            record.msg = f"{record.msg} ({self._held} more like it held back)"
            self._held = 0
        return True
