"""The request body's top-level ``model``, read without decoding the body.

``json.loads(body)["model"]`` decodes the whole body to a string and then
builds the model's string: a 16 MiB model held three copies of itself at
once (the body, its text, the name), some 50 MiB for one request. Routing
needs at most ``MODEL_MAX + 1`` characters of the name (a longer one routes
nowhere), so a large body is scanned instead: one regular expression steps
over strings and brackets, tracking only the depth, and the model's value is
decoded from a prefix. Small bodies go to ``json.loads``, which is faster for
them; both read the same name from a valid JSON object (a property test holds
them to it). A body that is not valid JSON elsewhere may still yield its
model here; the upstream answers such a body itself.
"""

import json
import re

from trioproxy.proxy.core.bounded import MODEL_MAX

__all__ = ["SCANNED_FROM", "top_level_model"]

SCANNED_FROM = 256 * 1024
"""Bodies at least this large are scanned; smaller ones are parsed whole."""

# A JSON string (the unrolled form: runs of plain bytes, then one escape), or a bracket.
_TOKEN = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[{}\[\]]', re.DOTALL)
_COLON = re.compile(rb"[ \t\r\n]*:[ \t\r\n]*")
_KEY = b'"model"'
_QUOTE, _OPEN = ord('"'), frozenset(b"{[")
# A character takes 1 to 12 bytes in a JSON string (UTF-8, a \uXXXX escape, or
# two for a surrogate pair): a value longer than this is longer than MODEL_MAX + 4
# characters, whatever it holds, and so is what its prefix decodes to, trimmed.
_PREFIX = 12 * (MODEL_MAX + 4)


def top_level_model(body: bytes) -> str | None:
    """``body``'s top-level ``"model"`` when it is a string (the last one, as
    ``json.loads`` keeps), at most ``MODEL_MAX + 1`` characters of it; else None."""
    if len(body) < SCANNED_FROM:
        try:
            model = json.loads(body).get("model")
        except (ValueError, AttributeError, RecursionError):
            return None
        return model[: MODEL_MAX + 1] if isinstance(model, str) else None
    if body.lstrip()[:1] != b"{":
        return None
    return _scanned(body)


def _scanned(body: bytes) -> str | None:
    depth, value_at, span = 0, -1, None
    for token in _TOKEN.finditer(body):
        start = token.start()
        if body[start] == _QUOTE:
            if depth != 1:
                continue
            if start == value_at:  # the value right after '"model":'
                span = token.span()
            elif token.end() - start == len(_KEY) and body.startswith(_KEY, start):
                colon = _COLON.match(body, token.end())
                if colon:  # a key, not a value that reads "model"
                    value_at, span = colon.end(), None  # a later "model" wins, whatever it holds
            continue
        if value_at >= 0 and start == value_at:
            span = None  # the model's value is an object or a list
        depth += 1 if body[start] in _OPEN else -1
        if depth == 0:
            break
    if span is None:
        return None
    inner_at, inner_end = span[0] + 1, span[1] - 1
    cut = inner_end - inner_at > _PREFIX
    return _decoded(body[inner_at : inner_at + _PREFIX if cut else inner_end], cut)


def _decoded(inner: bytes, cut: bool) -> str | None:
    """The JSON string body ``inner`` decoded; a prefix ``cut`` inside an escape
    or a UTF-8 sequence is trimmed back to a whole character first."""
    for trim in range(12 if cut else 1):
        try:
            text: str = json.loads(b'"' + inner[: len(inner) - trim] + b'"')
        except ValueError:
            continue
        if cut and "\ud800" <= text[-1:] <= "\udbff":
            text = text[:-1]  # half of a pair whose other half was cut off
        return text[: MODEL_MAX + 1]
    return None
