"""What happened to one request: its phase while it runs, its outcome once it ends.

Every request ends as exactly one :class:`Outcome` and writes one access-log
line at INFO. A client's stop is an outcome, not an error: status 499, no
traceback. What a record keeps of the client's values (method, path, model,
key name) is bounded and escaped as it enters (:mod:`trioproxy.proxy.core.bounded`).
"""

import enum
import itertools
import json
import logging
import os
import time
from typing import Any

import trio

from trioproxy.proxy.core.bounded import METHOD_MAX, PATH_MAX, USAGE_MAX, kept
from trioproxy.proxy.upstream.pool import UpstreamHandle

__all__ = ["Outcome", "Phase", "RequestRecord"]

access_log = logging.getLogger("trioproxy.access")


class Phase(enum.StrEnum):
    """Where a request is in its life; a stop can come in any of them."""

    UPLOAD = "upload"  # reading the client's request body
    CONNECT = "connect"  # opening the upstream connection, sending the request
    WAITING_HEADERS = "waiting_headers"  # request sent, upstream has not answered
    WAITING_FIRST_BYTE = "waiting_first_byte"  # headers relayed, no body byte yet
    STREAMING = "streaming"  # body bytes flowing


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    CLIENT_CLOSED = "client_closed"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    CANCELLED_BY_ADMIN = "cancelled_by_admin"
    SHUTDOWN = "shutdown"


# A per-process prefix keeps ids unique across worker processes and restarts.
_ids = (f"{os.getpid():x}-{n}" for n in itertools.count(1))


class RequestRecord:
    """Mutable facts about one request, written by the relay, read by the log."""

    __slots__ = (
        "bytes_relayed",
        "cancel_scope",
        "client",
        "client_closed_at",
        "event_stream",
        "events_relayed",
        "key_name",
        "method",
        "model",
        "outcome",
        "path",
        "phase",
        "request_id",
        "slot",
        "started_at",
        "status",
        "upstream",
        "upstream_closed_at",
        "upstream_handle",
        "upstream_headers_at",
        "usage",
    )

    def __init__(self, method: str, path: str) -> None:
        self.request_id = next(_ids)
        self.method = kept(method, METHOD_MAX)
        self.path = kept(path, PATH_MAX)
        self.phase = Phase.UPLOAD
        self.outcome: Outcome | None = None
        self.status = 0
        self.bytes_relayed = 0
        self.events_relayed = 0
        self.event_stream = False
        """The answer is an event stream: a failure after headers ends it with an SSE error."""
        self.started_at = time.monotonic()
        self.upstream_headers_at: float | None = None
        self.client_closed_at: float | None = None
        self.upstream_closed_at: float | None = None
        self.client = ""
        self.model = ""
        """Kept with ``bounded.kept(model, MODEL_MAX)`` by whoever sets it."""
        self.upstream = ""
        self.usage: dict[str, Any] | None = None
        """The upstream's own usage object, when it sent one: never an estimate."""
        self.key_name = ""
        """The client key's name, never the key."""
        self.slot: Any = None
        """The key's concurrency slot (``gateway.keys.Slot``), which a stop frees."""
        self.upstream_handle = UpstreamHandle()
        """The upstream connection in use, which a stop closes at once."""
        self.cancel_scope: trio.CancelScope | None = None
        """Cancels the request's nursery: both sides close (the admin's cancel)."""

    def stop(self, outcome: Outcome, status: int | None = None) -> None:
        """A stop (the client's, or the admin's): the outcome, unless one was set first;
        then the upstream socket closed and the key's slot freed from this very step,
        and the request's race cancelled."""
        if self.end(outcome, status):
            self.client_closed_at = time.monotonic()  # the stop, for the propagation metric
        self.upstream_handle.close_now()
        if self.slot is not None:
            self.slot.release()
        if self.cancel_scope is not None:
            self.cancel_scope.cancel()

    def client_gone(self) -> None:
        """The client left: a stop, unless the answer had already ended.

        hypercorn reports a disconnect after the relay's own end of the answer
        too, while the relay is still inside ``send()`` recycling the
        keep-alive connection: cancelling it there would leave the connection
        half-recycled. Only a leaving that decides the outcome stops.
        """
        if self.outcome is None:
            self.stop(Outcome.CLIENT_CLOSED)

    def end(self, outcome: Outcome, status: int | None = None) -> bool:
        """Set the outcome unless one was set first; True if this call set it."""
        if self.outcome is not None:
            return False
        self.outcome = outcome
        if status is not None:
            self.status = status
        return True

    def log(self) -> None:
        now = time.monotonic()
        ttfb = (
            "-"
            if self.upstream_headers_at is None
            else f"{(self.upstream_headers_at - self.started_at) * 1000:.1f}"
        )
        usage = "none" if self.usage is None else _usage_text(self.usage)
        access_log.info(
            "%s %s %s %d outcome=%s phase=%s bytes=%d events=%d ttfb_ms=%s duration_ms=%.1f"
            " model=%s upstream=%s key=%s usage=%s",
            self.request_id,
            self.method,
            self.path,
            self.status_logged,
            self.outcome,
            self.phase,
            self.bytes_relayed,
            self.events_relayed,
            ttfb,
            (now - self.started_at) * 1000,
            self.model or "-",
            self.upstream or "-",
            self.key_name or "-",
            usage,
        )

    @property
    def status_logged(self) -> int:
        return 499 if self.outcome is Outcome.CLIENT_CLOSED else self.status


def _usage_text(usage: dict[str, Any]) -> str:
    # The upstream's object: compact, and bounded like every value from outside.
    try:
        return kept(json.dumps(usage, separators=(",", ":")), USAGE_MAX)
    except (ValueError, TypeError, RecursionError):
        return "unreadable"
