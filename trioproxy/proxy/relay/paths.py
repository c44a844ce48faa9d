"""Which client paths may reach an upstream, and how they are joined to its base.

The upstream's scheme, host and port come only from the configuration; the
client supplies the part of its path after ``/v1`` and the query, and those
are checked here, not concatenated into a URL string for a parser to read
(which once let ``/v1%2F@other-host/...`` choose the host).

A path is refused (400) when any of its percent-decodings, taken up to three
times over, holds a ``.`` or ``..`` segment (``/`` and ``\\`` both separate
segments), or a control byte; or when it holds a byte RFC 3986 does not allow
in a path. A ``%2F`` that is not part of a dot segment is kept as it came:
model names such as ``meta-llama%2FLlama-3`` need it, and it cannot climb
out of the base path without a dot segment, which is refused.
"""

import re
from urllib.parse import unquote_to_bytes

__all__ = ["AZURE_PREFIX", "azure_tail", "client_query_ok", "client_tail"]

PREFIX = b"/v1/"
AZURE_PREFIX = b"/openai/deployments/"
"""Where an Azure OpenAI client (``AzureOpenAI(azure_endpoint=...)``) sends its requests."""
_DEPLOYMENT = re.compile(rb"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
"""An Azure deployment's name: letters, digits, ``_``, ``-`` and ``.``, up to 64."""
_PATH = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_QUERY = re.compile(rb"[\x21-\x22\x24-\x7e]*")  # printable ASCII but "#"
_SEPARATOR = re.compile(rb"[/\\]")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_DECODINGS = 3


def _unsafe(path: bytes) -> bool:
    if _CONTROL.search(path):
        return True
    return any(segment in (b".", b"..") for segment in _SEPARATOR.split(path))


def client_tail(raw_path: bytes) -> bytes | None:
    """The part of a ``/v1/...`` path to append to an upstream's base, or None to refuse it."""
    if not raw_path.startswith(PREFIX):
        return None
    tail = raw_path[len(PREFIX) - 1 :]
    if not _PATH.fullmatch(tail):
        return None
    decoded = tail
    for _ in range(_DECODINGS):
        if _unsafe(decoded):
            return None
        if b"%" not in decoded:
            return tail
        decoded = unquote_to_bytes(decoded)
    return None  # still encoded after three decodings: no legitimate client does that


def client_query_ok(query: bytes) -> bool:
    return _QUERY.fullmatch(query) is not None


def azure_tail(raw_path: bytes) -> tuple[str, bytes] | None:
    """An Azure OpenAI client's ``/openai/deployments/NAME/...``: NAME, the model it
    routes by, and the rest as the tail a ``/v1/...`` path would give; None to refuse.

    The deployment an upstream serves is in its URL, as a ``/v1`` client needs it:
    so both kinds of client reach the same upstream, chosen by model.
    """
    if not raw_path.startswith(AZURE_PREFIX):
        return None
    name, slash, rest = raw_path[len(AZURE_PREFIX) :].partition(b"/")
    if not slash or not _DEPLOYMENT.fullmatch(name):
        return None
    tail = client_tail(PREFIX + rest)
    return (name.decode("ascii"), tail) if tail is not None else None
