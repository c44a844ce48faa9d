"""The id an operator searches a request by: its ``x-request-id``.

A client's own is kept when it is well formed (1 to :data:`REQUEST_ID_MAX`
visible characters of an HTTP token, or ``:/=@`` of the ids in common use);
else the proxy makes one (128 random bits in hex: unique across workers,
restarts and hosts). The id is returned on every answer of the API, sent
upstream in place of whatever the client sent, written in the access line
and shown in the admin's listing. A malformed one (too long, a space, a
control byte, a second value) is replaced, never echoed: it would be a
header and a log field the client chose.

The admin still names a request by the proxy's own id (``RequestRecord.request_id``):
a client's id need not be unique, and the workers route a cancel by it.
"""

import re
import secrets

from trioproxy.proxy.core.bounded import REQUEST_ID_MAX

__all__ = ["HEADER", "UPSTREAMS_OWN", "answer_headers", "request_id_of", "with_request_id"]

HEADER = b"x-request-id"
UPSTREAMS_OWN = b"x-upstream-request-id"
"""The name an upstream's own ``x-request-id`` reaches the client under (OpenAI's
``req_...``, which its support asks for): the client's ``x-request-id`` is the proxy's."""

_WELL_FORMED = re.compile(rb"[!#$%%&'*+\-.^_`|~0-9A-Za-z:/=@]{1,%d}" % REQUEST_ID_MAX)

type _Headers = list[tuple[bytes, bytes]]


def request_id_of(headers: _Headers) -> str:
    """The client's ``x-request-id`` if it sent exactly one, well formed; else a new one."""
    given = [value for name, value in headers if name == HEADER]
    if len(given) == 1 and _WELL_FORMED.fullmatch(given[0]):
        return given[0].decode("ascii")
    return secrets.token_hex(16)


def with_request_id(headers: _Headers, request_id: str) -> _Headers:
    """``headers`` with ``request_id`` as their one ``x-request-id``."""
    return [*(h for h in headers if h[0] != HEADER), (HEADER, request_id.encode("ascii"))]


def answer_headers(headers: _Headers, request_id: str) -> _Headers:
    """An answer's ``headers`` with ``request_id`` as its ``x-request-id``; an
    upstream's own goes on as ``x-upstream-request-id``."""
    renamed = [(UPSTREAMS_OWN if name == HEADER else name, value) for name, value in headers]
    return [*renamed, (HEADER, request_id.encode("ascii"))]
