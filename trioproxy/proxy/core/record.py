"""What happened to one request: its phase while it runs, its outcome once it ends.

Every request ends as exactly one :class:`Outcome` and writes one access-log
line at INFO. A client's stop is an outcome, not an error: status 499, no
traceback. What a record keeps of the client's values (method, path, model,
key name) is bounded and escaped as it enters (:mod:`trioproxy.proxy.core.bounded`).
"""

import itertools
import json
import logging
import os
import time
from functools import partial
from typing import Any

from trioproxy.proxy.core.bounded import METHOD_MAX, PATH_MAX, USAGE_MAX, kept
from trioproxy.proxy.core.lines import FIELDS
from trioproxy.proxy.core.outcome import Outcome, Phase
from trioproxy.proxy.core.stop import Stop

__all__ = ["Outcome", "Phase", "RequestRecord", "access_log"]

access_log = logging.getLogger("trioproxy.access")


# A per-process prefix keeps ids unique across worker processes and restarts.
_ids = (f"{os.getpid():x}-{n}" for n in itertools.count(1))


class RequestRecord:
    """Mutable facts about one request: written by the layer that has them, read by
    the access line, the metrics and the admin's listing (observers of its start
    and end, :mod:`.requests`)."""

    __slots__ = (
        "bytes_relayed",
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
        "started_at",
        "status",
        "stop",
        "upstream",
        "upstream_closed_at",
        "upstream_headers_at",
        "usage",
        "x_request_id",
    )

    # Invariant: ``outcome`` is set once, by ``end``, and never changes after.
    # Invariant: one record per request, opened and closed by core.requests
    # (which writes its one access line); nothing else logs a request.

    def __init__(self, method: str, path: str) -> None:
        self.request_id = next(_ids)
        """The proxy's own id, unique in the server: the admin cancels by it."""
        self.x_request_id = ""
        """The id the client and the upstream see (:mod:`.request_id`), set as it starts."""
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
        self.stop = Stop(self)
        """The one owner of "this request is over" (:mod:`.stop`)."""

    def end(self, outcome: Outcome, status: int | None = None) -> bool:
        """Set the outcome unless one was set first; True if this call set it.

        The one place an outcome is decided: the relay calls it for what it
        answered, a stop (``self.stop.fire``) for what stopped the request."""
        if self.outcome is not None:
            return False
        self.outcome = outcome
        if status is not None:
            self.status = status
        return True

    def log(self) -> None:
        """The request's one access line (INFO)."""
        now = time.monotonic()
        ttfb = (
            "-"
            if self.upstream_headers_at is None
            else f"{(self.upstream_headers_at - self.started_at) * 1000:.1f}"
        )
        usage = "none" if self.usage is None else _usage_text(self.usage)
        access_log.info(
            "%s %s %s %d outcome=%s phase=%s bytes=%d events=%d ttfb_ms=%s duration_ms=%.1f"
            " model=%s upstream=%s key=%s request_id=%s usage=%s",
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
            self.x_request_id or "-",
            usage,
            extra={FIELDS: partial(self.fields, now)},
        )

    def fields(self, now: float) -> dict[str, Any]:
        """The access line's values as typed fields (a JSON line's), at ``now``."""
        ttfb = self.upstream_headers_at
        return {
            "id": self.request_id,
            "request_id": self.x_request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status_logged,
            "outcome": str(self.outcome),
            "phase": str(self.phase),
            "bytes": self.bytes_relayed,
            "events": self.events_relayed,
            "ttfb_ms": None if ttfb is None else round((ttfb - self.started_at) * 1000, 1),
            "duration_ms": round((now - self.started_at) * 1000, 1),
            "model": self.model or None,
            "upstream": self.upstream or None,
            "key": self.key_name or None,
            "client": self.client or None,
            "usage": _usage_field(self.usage),
        }

    @property
    def status_logged(self) -> int:
        return 499 if self.outcome is Outcome.CLIENT_CLOSED else self.status


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""``json.dumps`` with these separators, without building an encoder for each line."""


def _usage_field(usage: dict[str, Any] | None) -> dict[str, Any] | str | None:
    # The object itself when its text is whole, else the text as a text line has it (cut).
    if usage is None:
        return None
    text = _usage_text(usage)
    return usage if text.endswith("}") else text


def _usage_text(usage: dict[str, Any]) -> str:
    # The upstream's object: compact, and bounded like every value from outside.
    try:
        return kept(_COMPACT.encode(usage), USAGE_MAX)
    except (ValueError, TypeError, RecursionError):
        return "unreadable"
