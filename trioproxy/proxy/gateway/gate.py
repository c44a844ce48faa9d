"""What stands between a request and the relay: CORS, client keys and their limits.

Pure ASGI wrappers, so the relay stays a plain race. Keys are compared in
constant time, against every configured key (no early exit), and never logged.
"""

import hmac

import trio

from trioproxy.asgi import ASGIApp, Message, Receive, Scope, Send
from trioproxy.proxy.core.bounded import KEY_NAME_MAX, RELAYED_ALLOW, kept
from trioproxy.proxy.core.errors import send_json_error
from trioproxy.proxy.core.outcome import Outcome
from trioproxy.proxy.core.requests import RECORD, record_of
from trioproxy.proxy.gateway.config import ClientKey
from trioproxy.proxy.gateway.keys import Busy, KeyLimiter, Slot

__all__ = ["bearer_ok", "with_cors", "with_keys"]

_RECHECK_S = 0.05
"""A key at its concurrency limit is checked once more this much later, before 429."""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _token(scope: Scope) -> bytes:
    given = _header(scope, b"authorization") or b""
    if given[:7].lower() == b"bearer ":
        return given[7:]
    # Where the Anthropic SDK and an Azure OpenAI client put the key they are given.
    return _header(scope, b"x-api-key") or _header(scope, b"api-key") or b""


def bearer_ok(scope: Scope, keys: frozenset[bytes]) -> bool:
    """``Authorization: Bearer KEY`` (or Anthropic's ``x-api-key: KEY``, or Azure's
    ``api-key: KEY``) holds one of ``keys``."""
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


def with_keys(app: ASGIApp, keys: tuple[ClientKey, ...], limiter: KeyLimiter) -> ASGIApp:
    """Only requests with a configured key reach ``app``, each under its key's limits
    (``limiter`` counts them): 401 without one, 429 over a limit, each its own
    outcome in the request's record."""
    encoded = tuple((k.key.encode(), k) for k in keys)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        rec = record_of(scope)
        key = _matching(scope, encoded)
        if key is None:
            rec.end(Outcome.REFUSED, 401)
            return await send_json_error(
                send, 401, "missing or wrong API key", "invalid_request_error", "invalid_api_key"
            )
        rec.key_name = name = kept(key.name, KEY_NAME_MAX)
        grant = limiter.acquire(key)
        if isinstance(grant, Busy):
            # The stop that frees the slot may be on its way in another worker,
            # which reads it a moment after this one read the new request.
            await trio.sleep(_RECHECK_S)
            grant = limiter.acquire(key)
        if not isinstance(grant, Slot):
            rec.end(Outcome.LIMITED, 429)
            wait_s = grant.retry_after_s
            return await send_json_error(
                send,
                429,
                f"too many requests with key {name!r}: retry after {wait_s:g} s",
                "rate_limit_error",
                "rate_limit_exceeded",
                retry_after_s=wait_s,
            )
        rec.stop.frees(grant.release)  # a stop frees it in its own step
        try:
            await app(scope, receive, send)
        finally:
            grant.release()

    return guarded


def with_cors(app: ASGIApp, origins: tuple[str, ...]) -> ASGIApp:
    """Answer preflights and mark answers for the configured browser origins.

    A preflight is answered here, whatever its origin: 204 for an allowed one,
    403 JSON for any other; none reaches an upstream.

    ``*`` answers ``*`` (never an echo of the caller's origin, and never with
    credentials); a list answers only the origins on it, each by name. The
    upstream's own ``Access-Control-*`` headers are dropped: the proxy's
    policy is the only one, and a browser given two refuses both.
    """
    listed = frozenset(o.encode() for o in origins if o != "*")
    methods = RELAYED_ALLOW  # the relay answers any other 405
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
        preflight = scope["method"] == "OPTIONS" and requested is not None and origin is not None
        if preflight and not marks:
            # Answered here, never relayed: an upstream once took one for a chat
            # completion, and billed it.
            if (rec := scope.get(RECORD)) is not None:
                rec.end(Outcome.REFUSED, 403)
            return await send_json_error(
                send, 403, "origin not allowed", "invalid_request_error", "origin_not_allowed"
            )
        if preflight:
            if (rec := scope.get(RECORD)) is not None:  # /health is never recorded
                rec.end(Outcome.COMPLETED, 204)
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
