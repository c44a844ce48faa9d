"""What stands between a request and the relay: CORS, client keys and their limits.

Pure ASGI wrappers, so the relay stays a plain race. Keys are compared in
constant time, against every configured key (no early exit), and never logged.
"""

import hmac

import trio

from trioproxy.asgi import ASGIApp, Message, Receive, Scope, Send
from trioproxy.proxy.admin.metrics import Metrics
from trioproxy.proxy.core.bounded import (
    KEY_NAME_MAX,
    METHOD_MAX,
    PATH_MAX,
    RELAYED_METHODS,
    kept,
)
from trioproxy.proxy.core.errors import send_json_error
from trioproxy.proxy.core.record import access_log
from trioproxy.proxy.gateway.config import ClientKey
from trioproxy.proxy.gateway.keys import BUSY_S, KeyLimiter, Slot

__all__ = ["KEY_NAME", "SLOT", "bearer_ok", "with_cors", "with_keys"]

_RECHECK_S = 0.05
"""A key at its concurrency limit is checked once more this much later, before 429."""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _token(scope: Scope) -> bytes:
    given = _header(scope, b"authorization") or b""
    return given[7:] if given[:7].lower() == b"bearer " else _header(scope, b"x-api-key") or b""


def bearer_ok(scope: Scope, keys: frozenset[bytes]) -> bool:
    """``Authorization: Bearer KEY`` (or Anthropic's ``x-api-key: KEY``) holds one of ``keys``."""
    token = _token(scope)
    found = False
    for key in keys:
        found |= hmac.compare_digest(token, key)
    return found


def _matching(scope: Scope, keys: tuple[tuple[bytes, ClientKey], ...]) -> ClientKey | None:
    token = _token(scope)
    found = None
    for raw, key in keys:  # every key compared, in constant time: no early exit
        if hmac.compare_digest(token, raw):
            found = key
    return found


KEY_NAME = "trioproxy.client_key"
"""The scope entry naming the client's key (never the key itself)."""
SLOT = "trioproxy.slot"
"""The scope entry holding the request's :class:`Slot`, for the relay to free on a stop."""


def with_keys(
    app: ASGIApp, keys: tuple[ClientKey, ...], metrics: Metrics, run_dir: str | None = None
) -> ASGIApp:
    encoded = tuple((k.key.encode(), k) for k in keys)
    limiter = KeyLimiter(keys, run_dir)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        key = _matching(scope, encoded)
        if key is None:
            return await send_json_error(
                send, 401, "missing or wrong API key", "invalid_request_error", "invalid_api_key"
            )
        slot = limiter.acquire(key)
        if slot == BUSY_S:
            # The stop that frees the slot may be on its way in another worker,
            # which reads it a moment after this one read the new request.
            await trio.sleep(_RECHECK_S)
            slot = limiter.acquire(key)
        if not isinstance(slot, Slot):
            name = kept(key.name, KEY_NAME_MAX)
            access_log.info(
                "%s %s 429 outcome=limited key=%s",
                kept(scope["method"], METHOD_MAX),
                kept(scope["path"], PATH_MAX),
                name,
            )
            metrics.limited.labels(key.name).inc()
            return await send_json_error(
                send,
                429,
                f"too many requests with key {name!r}: retry after {slot:g} s",
                "rate_limit_error",
                "rate_limit_exceeded",
                retry_after_s=slot,
            )
        scope[KEY_NAME] = key.name
        scope[SLOT] = slot
        try:
            await app(scope, receive, send)
        finally:
            slot.release()

    return guarded


def with_cors(app: ASGIApp, origins: tuple[str, ...]) -> ASGIApp:
    """Answer preflights and mark answers for the configured browser origins.

    ``*`` answers ``*`` (never an echo of the caller's origin, and never with
    credentials); a list answers only the origins on it, each by name. The
    upstream's own ``Access-Control-*`` headers are dropped: the proxy's
    policy is the only one, and a browser given two refuses both.
    """
    listed = frozenset(o.encode() for o in origins if o != "*")
    methods = ", ".join(RELAYED_METHODS).encode()  # the relay answers any other 405
    anyone = "*" in origins

    async def cors(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        origin = _header(scope, b"origin")
        if origin is not None and origin in listed:
            marks = [(b"access-control-allow-origin", origin), (b"vary", b"origin")]
        elif origin is not None and anyone:
            marks = [(b"access-control-allow-origin", b"*")]
        else:
            marks = []
        requested = _header(scope, b"access-control-request-method")
        if marks and scope["method"] == "OPTIONS" and requested is not None:
            headers = _header(scope, b"access-control-request-headers") or b""
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *marks,
                        (b"access-control-allow-methods", methods),
                        (b"access-control-allow-headers", headers),
                        (b"access-control-max-age", b"600"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return None

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if not name.lower().startswith(b"access-control-")
                ]
                message["headers"] = [*own, *marks]
            await send(message)

        return await app(scope, receive, marked)

    return cors
