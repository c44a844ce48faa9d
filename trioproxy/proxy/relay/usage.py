"""The upstream's own ``usage`` object, picked out of an answer as it is relayed.

Only chunks that mention ``"usage"`` are looked at, so the common chunk costs
one substring search. OpenAI sends usage in the last chunk (with
``stream_options.include_usage``) or in the JSON answer; Anthropic splits it
between ``message_start`` and ``message_delta``: the objects are merged.
"""

import json
from typing import Any

__all__ = ["UsageTap"]

_MAX_PENDING = 64 * 1024


class UsageTap:
    __slots__ = ("_pending", "_whole", "usage")

    def __init__(self, event_stream: bool) -> None:
        self.usage: dict[str, Any] | None = None
        self._pending = b""
        self._whole = not event_stream  # a JSON answer is parsed whole at the end

    def feed(self, chunk: bytes) -> None:
        if self._whole:
            if len(self._pending) < _MAX_PENDING:
                self._pending += chunk
            return
        if not self._pending and b'"usage"' not in chunk:
            return
        data = self._pending + chunk
        *events, rest = data.split(b"\n\n")
        for event in events:
            if b'"usage"' in event:
                for line in event.split(b"\n"):
                    if line.startswith(b"data:"):
                        self._take(line[5:])
        self._pending = rest if b'"usage"' in rest and len(rest) < _MAX_PENDING else b""

    def close(self) -> None:
        if self._whole and b'"usage"' in self._pending:
            self._take(self._pending)

    def _take(self, raw: bytes) -> None:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            return
        if not isinstance(obj, dict):
            return
        message = obj.get("message")
        usage = obj.get("usage") or (message.get("usage") if isinstance(message, dict) else None)
        if isinstance(usage, dict):
            self.usage = (self.usage or {}) | usage
