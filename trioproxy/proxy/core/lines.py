"""How every log line is written: text (the default), or one JSON object a line.

One handler writes every logger's records, ours and the libraries' (set up by
``trioproxy.cli``), so whichever format is chosen holds for every line: the
access lines, start-up, warnings, a library's complaint. Both carry the
worker's pid, which tells the workers of ``--workers`` apart.

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``pid`` and
``message`` (the text line's message), then the record's own fields (the
access line's: method, path, status, outcome, phase, ...; see
:data:`FIELDS`), and ``exception`` for a traceback. Every string in it is
escaped as a text line is (:func:`~.bounded.escape_controls`: ``\\x1b``, not
a raw ESC), so a value reads the same in both formats and a line is one line
of valid UTF-8; the values themselves were cut to their caps where they
entered (:mod:`.bounded`).
"""

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from trioproxy.proxy.core.bounded import OneLineFormatter, escape_controls

__all__ = ["FIELDS", "FORMATS", "TEXT", "JsonLineFormatter", "formatter", "use"]

FORMATS = ("text", "json")
TEXT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
"""A text line: the pid in brackets after the time, as syslog writes it after the name."""

FIELDS = "fields"
"""The attribute of a log record (its ``extra``) holding its fields for a JSON line:
a dict, or a callable that makes one (called only when a JSON line is written)."""

_BASE = ("time", "level", "logger", "pid", "message")
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


class JsonLineFormatter(logging.Formatter):
    """Every record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "time": at.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if callable(fields):
            fields = fields()
        if isinstance(fields, Mapping):
            line.update((k, v) for k, v in fields.items() if k not in _BASE)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _ENCODE(_escaped(line))


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, Mapping):
        return {escape_controls(str(k)): _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return escape_controls(str(value))


def formatter(name: str) -> logging.Formatter:
    """The formatter of a format in :data:`FORMATS`."""
    made: dict[str, Callable[[], logging.Formatter]] = {
        "text": lambda: OneLineFormatter(TEXT),
        "json": JsonLineFormatter,
    }
    return made[name]()


def use(name: str) -> None:
    """Write every line in the format ``name`` from now on (every handler of the root)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(name))
