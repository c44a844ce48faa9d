"""The upstream's own ``usage`` object, picked out of an answer as it is relayed.

Only chunks that mention ``"usage"`` are looked at, so the common chunk (whole
events) costs one substring search; a chunk that ends inside an event is
kept until the event's end, where its usage may be. OpenAI sends usage in the last chunk (with
``stream_options.include_usage``) or in the JSON answer; Anthropic splits it
between ``message_start`` and ``message_delta``: the objects are merged.
Events end in a blank line, with lines ended by LF or CRLF.

What is kept is bounded and can be counted: token counts that are integers
from 0 to ``MAX_COUNT`` (never a bool or a float), objects of such counts
one level down (``prompt_tokens_details``), and short strings
(``service_tier``), at most ``_MAX_FIELDS`` of them, names up to 64
characters. A count that is anything else (negative, ``1e300``, ``"12"``)
is dropped and named in one WARNING for the request; other odd values are
dropped silently, since nothing counts them.
"""

import json
import logging
from typing import Any

from trioproxy.proxy.core.bounded import MAX_COUNT, is_count

__all__ = ["UsageTap"]

log = logging.getLogger("trioproxy.upstream")

_MAX_PENDING = 64 * 1024
_EVENT_ENDS = (b"\n\n", b"\n\r\n")
_MAX_FIELDS = 24
_MAX_DETAILS = 8
"""Fields in an object of counts one level down."""
_MAX_TEXT = 64
_MAX_NAMED = 4
"""Odd counts named in the WARNING; the rest are only counted."""


class UsageTap:
    __slots__ = ("_odd", "_odd_count", "_pending", "_whole", "usage")

    def __init__(self, event_stream: bool) -> None:
        self.usage: dict[str, Any] | None = None
        self._pending = b""
        self._whole = not event_stream  # a JSON answer is parsed whole at the end
        self._odd: list[str] = []
        """The first counts dropped, shown bounded."""
        self._odd_count = 0

    def feed(self, chunk: bytes) -> None:
        if self._whole:
            if len(self._pending) < _MAX_PENDING:
                self._pending += chunk
            return
        if not self._pending and b'"usage"' not in chunk:
            if not chunk.endswith(_EVENT_ENDS):  # the event goes on: its usage may be to come
                self._pending = chunk if len(chunk) < _MAX_PENDING else b""
            return
        data = self._pending + chunk
        if b"\r" in data:  # a CR left at the end pairs with the next chunk's LF
            data = data.replace(b"\r\n", b"\n")
        if b'"usage"' not in data:  # only the open event is kept
            at = data.rfind(b"\n\n")
            rest = data if at < 0 else data[at + 2 :]
        else:
            *events, rest = data.split(b"\n\n")
            for event in events:
                if b'"usage"' in event:
                    for line in event.split(b"\n"):
                        if line.startswith(b"data:"):
                            self._take(line[5:])
        self._pending = rest if len(rest) < _MAX_PENDING else b""

    def close(self) -> None:
        if self._whole and b'"usage"' in self._pending:
            self._take(self._pending)
        if self._odd_count:
            shown = ", ".join(self._odd)
            more = self._odd_count - len(self._odd)
            log.warning(
                "upstream usage counts ignored (not integers from 0 to 2**53): %s%s",
                shown,
                f" and {more} more" if more > 0 else "",
            )

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
            merged = (self.usage or {}) | self._kept(usage, nested=True)
            self.usage = dict(list(merged.items())[:_MAX_FIELDS])

    def _kept(self, usage: dict[str, Any], nested: bool) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for name, value in list(usage.items())[: _MAX_FIELDS if nested else _MAX_DETAILS]:
            if len(name) > _MAX_TEXT:
                continue
            if is_count(value):
                kept[name] = value
            elif nested and isinstance(value, dict):
                kept[name] = self._kept(value, nested=False)
            elif name.endswith("_tokens") and value is not None:
                self._odd_count += 1
                if len(self._odd) < _MAX_NAMED:
                    self._odd.append(f"{ascii(name)[1:-1]}={_shown(value)}")
            elif nested and isinstance(value, str) and len(value) <= _MAX_TEXT:
                kept[name] = value
        return kept


def _shown(value: object) -> str:
    """A bounded, escaped view of an upstream's value, for a log line."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_COUNT:
        return f"{'-' if value < 0 else ''}<an integer over 2**53>"
    if isinstance(value, str):
        return ascii(value[:_MAX_TEXT])
    if isinstance(value, int | float):  # bool too
        return repr(value)
    return f"<a JSON {type(value).__name__}>"  # a list or an object: never shown whole
