"""How one upstream wants to be called: the header its key goes in, the headers
and the query parameters added to every request.

Providers differ only in these (OpenAI: ``Authorization: Bearer``; Anthropic:
``x-api-key`` and ``anthropic-version``; Azure: ``api-key`` and an
``api-version`` query). They are checked once, at start, and kept as the bytes
each request adds, so the relay only joins them. Pure: no I/O.

A value may be a key: no message here quotes one, and :class:`Conventions`
shows only header names.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from trioproxy.proxy.upstream.headers import CREDENTIALS, DROP_UP

__all__ = ["HEADERS_MAX", "QUERY_MAX", "Conventions", "check_name"]

HEADERS_MAX = 32
"""Headers an upstream may add; past it start-up stops (a list that long is a mistake)."""
QUERY_MAX = 16
"""Query parameters an upstream may add."""
_VALUE_MAX = 4096
_ADDED_MAX = 16 * 1024
"""Bytes of all added headers together: well inside an upstream's head limit (8 KiB+ each)."""
_NAME_MAX = 100

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2
_VISIBLE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
"""Visible ASCII, spaces inside: no CR, LF, NUL or other control byte, nothing to trim."""
_RESERVED = DROP_UP | {b"expect"}
"""Names that describe the connection or the body's framing: the proxy's to set."""


def check_name(name: str, what: str) -> bytes:
    """``name`` as a header name the proxy may set, lower case; ValueError says why not."""
    shown = name[:_NAME_MAX]
    if len(name) > _NAME_MAX or not _TOKEN.fullmatch(name):
        raise ValueError(
            f"{what} {shown!r} is not a header name (letters, digits, !#$%&'*+-.^_`|~)"
        )
    lowered = name.lower().encode("ascii")
    if lowered in _RESERVED:
        raise ValueError(f"{what} {name!r} is a hop-by-hop or framing header, the proxy's to set")
    return lowered


def _check_value(value: str, where: str) -> bytes:
    if len(value) > _VALUE_MAX:
        raise ValueError(f"{where}: value over {_VALUE_MAX} characters")
    if not _VISIBLE.fullmatch(value):  # never quoted: it may be a key
        raise ValueError(
            f"{where}: value empty, or not visible ASCII (a control character, CR, LF, NUL, "
            "a non-ASCII character, or a space at either end)"
        )
    return value.encode("ascii")


def _query_part(text: str, where: str) -> bytes:
    if not text or len(text) > _VALUE_MAX or not text.isprintable():
        raise ValueError(f"{where}: empty, over {_VALUE_MAX} characters, or not printable")
    return quote(text, safe="-._~").encode("ascii")


def _query_name(raw: bytes) -> bytes:
    """A query parameter's name as a server reads it: decoded, in lower case (some
    servers, ASP.NET's among them, read names without case)."""
    return unquote_to_bytes(raw.replace(b"+", b" ")).lower()


@dataclass(frozen=True, slots=True, repr=False)
class Conventions:
    added: tuple[tuple[bytes, bytes], ...] = ()
    """Sent with every request, after the client's headers: the key's header, then the extras."""
    drop: frozenset[bytes] = DROP_UP
    """Client headers not forwarded: hop-by-hop, recomputed, every name the proxy adds,
    and every credential header when the proxy holds the key."""
    drop_credentials: frozenset[bytes] = DROP_UP | CREDENTIALS
    """``drop`` when the proxy checks client keys: the client's credentials are the proxy's."""
    query: bytes = b""
    """Added to every request's query, encoded; the client's parameters of these names go."""
    query_names: frozenset[bytes] = frozenset()

    @classmethod
    def of(
        cls,
        key: str | None = None,
        key_header: str = "authorization",
        headers: Sequence[tuple[str, str]] = (),
        query: Sequence[tuple[str, str]] = (),
    ) -> "Conventions":
        """Checked conventions; ValueError names the header or parameter, never a value."""
        key_name = check_name(key_header, "key_header")
        added: list[tuple[bytes, bytes]] = []
        if key is not None:
            raw = _check_value(key, "the upstream key")
            added.append((key_name, b"Bearer " + raw if key_name == b"authorization" else raw))
        if len(headers) > HEADERS_MAX:
            raise ValueError(f"more than {HEADERS_MAX} headers")
        for name, value in headers:
            lowered = check_name(name, "header")
            if lowered in CREDENTIALS or lowered == key_name:
                raise ValueError(
                    f"header {name!r} carries a key: give the key (api_key_env, --upstream-key) "
                    "and its header (key_header, --upstream-key-header)"
                )
            if any(lowered == seen for seen, _ in added):
                raise ValueError(f"header {name!r} is given twice")
            added.append((lowered, _check_value(value, f"header {name!r}")))
        if sum(len(n) + len(v) + 4 for n, v in added) > _ADDED_MAX:
            raise ValueError(f"the added headers are over {_ADDED_MAX} bytes together")
        if len(query) > QUERY_MAX:
            raise ValueError(f"more than {QUERY_MAX} query parameters")
        parts = [
            _query_part(n, f"query parameter {n[:_NAME_MAX]!r}")
            + b"="
            + _query_part(v, f"query parameter {n[:_NAME_MAX]!r}")
            for n, v in query
        ]
        names = frozenset(_query_name(p.partition(b"=")[0]) for p in parts)
        if len(names) != len(parts):
            raise ValueError("a query parameter is given twice")
        replaced = frozenset(n for n, _ in added)
        held = CREDENTIALS if key is not None else frozenset()
        return cls(
            added=tuple(added),
            drop=DROP_UP | replaced | held,
            drop_credentials=DROP_UP | replaced | CREDENTIALS,
            query=b"&".join(parts),
            query_names=names,
        )

    def merged_query(self, client: bytes) -> bytes:
        """The client's query with this upstream's parameters: the upstream's value wins,
        and the client's parameter of that name is left out (a server given both would
        read either, and the operator answers for what the upstream accepts)."""
        if not self.query:
            return client
        kept = [p for p in client.split(b"&") if p and _query_name(p.partition(b"=")[0])
                not in self.query_names]  # fmt: skip
        return b"&".join([self.query, *kept])

    def __repr__(self) -> str:  # names only: a value may be a key
        names = ", ".join(n.decode() for n, _ in self.added)
        return f"Conventions(headers=[{names}], query={len(self.query_names)} parameters)"
