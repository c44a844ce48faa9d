"""The bound on every outside value the proxy keeps, and the escaping of every log line.

A client (or an upstream) controls the model name, the path, the method and
the texts of errors; the proxy keeps copies of them for its log line, the
admin's listing, the metrics' labels and the 404 that names a model. Each
copy is taken once, where the value enters (:func:`kept`): control
characters escaped, then cut to its cap and marked with :data:`CUT`. What
goes upstream is never changed here; only what the proxy keeps is.

Every line the proxy writes goes through :class:`OneLineFormatter`, installed
on the process's log handler (``trioproxy.cli``), so no logger, ours or a
library's, can write a raw control character or a second line: C0, DEL and
C1 become ``\\xHH`` (as nginx's ``escape=default``), and the line and
paragraph separators and lone surrogates ``\\uHHHH``. A traceback becomes one
line too, its line breaks escaped.
"""

import logging
import re

__all__ = [
    "ADDRESS_MAX",
    "CUT",
    "ERROR_MAX",
    "KEY_NAME_MAX",
    "MAX_COUNT",
    "METHOD_MAX",
    "MODEL_MAX",
    "PATH_MAX",
    "RELAYED_ALLOW",
    "RELAYED_METHODS",
    "REQUEST_ID_MAX",
    "UPSTREAM_NAME_MAX",
    "USAGE_MAX",
    "OneLineFormatter",
    "cut",
    "escape_controls",
    "is_count",
    "kept",
]

CUT = "...(cut)"
"""Ends every value that was cut: a kept value is never mistaken for the whole one."""

MODEL_MAX = 200
"""Characters of a model name kept; a longer one is no configured model, whatever the options."""
PATH_MAX = 512
"""Characters of a request path kept for the log, the listing and the metrics' route."""
METHOD_MAX = 32
ADDRESS_MAX = 64
"""The client's address and port as the listing shows it."""
KEY_NAME_MAX = 64
REQUEST_ID_MAX = 64  # an id the admin names in a cancel; real ones are some 12
UPSTREAM_NAME_MAX = 64
ERROR_MAX = 500
"""Characters of an error text (an upstream's, a library's) sent to a client or logged."""
USAGE_MAX = 1000
"""Characters of the upstream's usage object in the access line."""

MAX_COUNT = 2**53
"""The largest token count taken from an upstream's usage: past it a count is no
count (nor exact as a float)."""

RELAYED_METHODS = ("GET", "POST", "DELETE")
RELAYED_ALLOW = ", ".join(RELAYED_METHODS).encode()
"""The methods as an ``Allow`` (or ``Access-Control-Allow-Methods``) value."""
"""The only methods that reach an upstream: the ones the proxied APIs use. Any
other (TRACE, TRACK, CONNECT, PUT, ...) is answered 405 by the proxy itself."""

# C0, DEL, C1; the separators str.splitlines and some viewers break lines at;
# lone surrogates, which no UTF-8 log stream can encode.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(found: re.Match[str]) -> str:
    code = ord(found[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_count(value: object) -> bool:
    """A token count the proxy takes (the usage tap) and counts (the metrics)."""
    return type(value) is int and 0 <= value <= MAX_COUNT


def escape_controls(text: str) -> str:
    """``text`` with every control character written as ``\\xHH`` (``\\uHHHH`` past 0xff)."""
    return text if _CONTROL.search(text) is None else _CONTROL.sub(_escape, text)


def kept(value: str, cap: int) -> str:
    """The copy of an outside value the proxy keeps: escaped, at most ``cap`` characters.

    The work is bounded by ``cap``, not by the value: only its head is looked at.
    """
    head = escape_controls(value[: cap + 1])
    return head if len(head) <= cap and len(value) <= cap else cut(head, cap)


def cut(value: str, cap: int) -> str:
    """The head of a value known to be longer than it shows, marked: ``cap`` characters."""
    return escape_controls(value[:cap])[: cap - len(CUT)] + CUT


class OneLineFormatter(logging.Formatter):
    """Every record, its traceback included, as one line with no control character."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))
