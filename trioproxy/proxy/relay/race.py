"""The relay: one client request, one upstream request, and the race between them.

Each request lives in one nursery. The relay task reads the body, opens the
upstream and copies its answer (:mod:`trioproxy.proxy.relay.forward`); the watcher task
blocks on ASGI ``receive()`` until ``http.disconnect``, then fires the request's
stop (:mod:`trioproxy.proxy.core.stop`), as the server's hook and hang-up
thread may have done first: the stop aborts the upstream exchange and cancels
the relay (from the body's first byte on). The relay ends the nursery itself
when the answer is over. Nothing polls. A stop of the proxy's own (the
admin's cancel, a shutdown's end) is answered once the relay has unwound
(:func:`trioproxy.proxy.relay.answers.answer_stop`).
"""

import re
import time
from typing import Protocol

import trio

from trioproxy.asgi import (
    Receive,
    Scope,
    Send,
    disconnected,
    give_client_gone,
    gone_already,
    hangup_of,
)
from trioproxy.proxy.core.bounded import (
    METHOD_MAX,
    MODEL_MAX,
    RELAYED_ALLOW,
    RELAYED_METHODS,
    cut,
    kept,
)
from trioproxy.proxy.core.errors import send_json_error
from trioproxy.proxy.core.record import Outcome, RequestRecord
from trioproxy.proxy.core.request_id import with_request_id
from trioproxy.proxy.core.requests import record_of
from trioproxy.proxy.relay.answers import answer_stop, asks_for_stream, start_event_stream
from trioproxy.proxy.relay.forward import Forwarder, UpstreamRequest
from trioproxy.proxy.relay.heartbeat import Heartbeat
from trioproxy.proxy.relay.model_field import top_level_model
from trioproxy.proxy.relay.paths import AZURE_PREFIX, azure_tail, client_query_ok, client_tail
from trioproxy.proxy.upstream.balance import Balancer
from trioproxy.proxy.upstream.pool import Deadlines, UpstreamPool
from trioproxy.proxy.upstream.routing import Router, Upstream

__all__ = ["Relay", "RelaySettings"]


# "model": "..." in a JSON body. A quote inside a JSON string is escaped, so
# '"model"' is never found inside a message's text. A name with no closing
# quote within MODEL_MAX bytes is longer: it is kept cut and marked.
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,%d}+)([^\\])' % MODEL_MAX)


class _ClientGone(Exception):
    """The client disconnected while its request body was still arriving."""


class _BodyTooLarge(Exception):
    """The request body passed ``ProxyConfig.max_body_bytes``."""


class RelaySettings(Protocol):
    """What the relay reads of the proxy's settings (``gateway.config.ProxyConfig``)."""

    @property
    def body_timeout_s(self) -> float: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def connect_timeout_s(self) -> float: ...
    @property
    def headers_timeout_s(self) -> float: ...
    @property
    def idle_timeout_s(self) -> float: ...
    @property
    def heartbeat_s(self) -> float: ...
    @property
    def early_headers(self) -> bool: ...
    @property
    def admin_key(self) -> str | None: ...
    def router(self) -> Router: ...
    def keys(self) -> tuple[object, ...]: ...


class Relay:
    """The raw ASGI handler for every route under ``/v1/``."""

    def __init__(self, config: RelaySettings, pool: UpstreamPool, balancer: Balancer) -> None:
        self._config = config
        self._body_timeout_s = config.body_timeout_s
        self._router = config.router()
        deadlines = Deadlines(
            config.connect_timeout_s, config.headers_timeout_s, config.idle_timeout_s
        )
        strip = bool(config.keys())
        self._forwarder = Forwarder(pool, self._router, deadlines, strip, balancer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handle(scope, receive, send, record_of(scope))

    async def _handle(self, scope: Scope, receive: Receive, send: Send, rec: RequestRecord) -> None:
        if scope["method"] not in RELAYED_METHODS:
            rec.end(Outcome.BAD_REQUEST, 405)
            return await _send_method_not_allowed(send, scope["method"])
        raw_path, deployment = scope["raw_path"], None
        if raw_path.startswith(AZURE_PREFIX):
            deployment, tail = azure_tail(raw_path) or (None, None)
        else:
            tail = client_tail(raw_path)
        if tail is None or not client_query_ok(scope["query_string"]):
            rec.end(Outcome.BAD_REQUEST, 400)
            await send_json_error(
                send,
                400,
                "invalid path: dot segments, control bytes and bytes outside RFC 3986 are refused",
                "invalid_request_error",
                "invalid_path",
            )
            return
        with trio.CancelScope() as stopped:
            # From the body's first byte on, a stop of the proxy's own (the admin's
            # cancel, a shutdown's end) reaches the relay, and is answered after it.
            rec.stop.guard(stopped)
            await self._relay(scope, receive, send, rec, tail, deployment)
        await answer_stop(send, rec)

    async def _relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rec: RequestRecord,
        tail: bytes,
        deployment: str | None,
    ) -> None:
        try:
            # A bare scope: trio.fail_after is a generator-based context manager.
            with trio.CancelScope(deadline=trio.current_time() + self._body_timeout_s) as late:
                body = await self._read_body(scope, receive)
            if late.cancelled_caught:
                raise trio.TooSlowError
        except _ClientGone:
            rec.stop.fire(Outcome.CLIENT_CLOSED)
            return
        except _BodyTooLarge:
            rec.end(Outcome.BAD_REQUEST, 413)
            limit = self._config.max_body_bytes
            await send_json_error(
                send,
                413,
                f"request body over {limit} bytes",
                "invalid_request_error",
                "request_too_large",
            )
            return
        except trio.TooSlowError:
            rec.end(Outcome.BAD_REQUEST, 408)
            await send_json_error(
                send,
                408,
                f"request body not received within {self._config.body_timeout_s:g} s",
                "invalid_request_error",
                "request_timeout",
                close=True,
            )
            return
        if gone_already(receive, scope):  # a stop that came with the body: open nothing upstream
            rec.stop.fire(Outcome.CLIENT_CLOSED)
            return
        listing = scope["raw_path"] == b"/v1/models" and self._router.needs_model
        upstream = self._router.default if listing else self._route(body, rec, deployment)
        if upstream is None:
            return await _refuse_model(send, rec)
        try:
            async with trio.open_nursery() as nursery:
                # The server's read task calls the stop first, or its hang-up thread.
                give_client_gone(scope, rec.stop.client_gone)
                rec.stop.watched_by(hangup_of(scope))  # the thread, through hang_up
                nursery.start_soon(_watch_client, receive, rec)
                method = scope["method"].encode("ascii")
                headers = with_request_id(scope["headers"], rec.x_request_id)  # the upstream's too
                request = UpstreamRequest(method, tail, scope["query_string"], headers, body)
                if listing:  # in the same race: a stop ends the upstreams' model lookups too
                    await self._forwarder.merged_models(request, send, rec)
                    nursery.cancel_scope.cancel()
                    return
                beat = Heartbeat(send, self._config.heartbeat_s)
                if beat.enabled:
                    nursery.start_soon(beat.run)
                early = self._config.early_headers and asks_for_stream(body)
                if early:
                    await start_event_stream(send, rec, beat)
                await self._forwarder.forward(request, send, rec, upstream, beat, early)
                nursery.cancel_scope.cancel()
        finally:  # the race is over, however it ended: the upstream exchange is closed
            rec.upstream_closed_at = time.monotonic()

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self._config.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _route(self, body: bytes, rec: RequestRecord, deployment: str | None) -> Upstream | None:
        """The upstream for the request; None when none serves its model (or, routed by
        model, when it names none and no upstream takes every name)."""
        # The body is parsed only when its model decides where it goes, or
        # when the admin's listing will show it; else a cheap look serves the
        # log and the metrics. An Azure client's path names its model, as Azure reads it.
        if deployment is None and not self._router.needs_model and self._config.admin_key is None:
            rec.model = _glimpsed_model(body)
            return self._router.default
        model = deployment or (top_level_model(body) if body else None)
        if model is None:
            return self._router.for_no_model  # GET /v1/files, ...: the catch-all's, if any
        rec.model = kept(model, MODEL_MAX)  # the whole name stays in the body only
        if not self._router.needs_model:
            return self._router.default
        return self._router.route(model) if model else self._router.for_no_model


def _glimpsed_model(body: bytes) -> str:
    """The model, without parsing the body: the kept copy, or "" if not plainly there."""
    at = body.find(b'"model"')  # bytes.find is fast; a regex scan of a long prompt is not
    found = _MODEL.match(body, at) if at >= 0 else None
    if found is None:
        return ""
    name = found[1].decode("utf-8", "replace")
    return kept(name, MODEL_MAX) if found[2] == b'"' else cut(name, MODEL_MAX)


async def _refuse_model(send: Send, rec: RequestRecord) -> None:
    """No upstream for the request: 404 for a model not served, 400 for no model at all."""
    if rec.model:
        rec.end(Outcome.NOT_FOUND, 404)
        message = f"model {rec.model!r} is not served here"
        return await send_json_error(send, 404, message, "invalid_request_error", "model_not_found")
    rec.end(Outcome.BAD_REQUEST, 400)
    await send_json_error(
        send,
        400,
        'requests here are routed by model: give a JSON "model" (GET /v1/models lists them)',
        "invalid_request_error",
        "model_required",
    )


async def _send_method_not_allowed(send: Send, method: str) -> None:
    """405, never forwarded: TRACE would echo the upstream key back, CONNECT would tunnel."""
    await send_json_error(
        send,
        405,
        f"method {kept(method, METHOD_MAX)} is not allowed; allowed: {RELAYED_ALLOW.decode()}",
        "invalid_request_error",
        "method_not_allowed",
        headers=((b"allow", RELAYED_ALLOW),),
    )


async def _watch_client(receive: Receive, rec: RequestRecord) -> None:
    """Wait for the client to leave, then fire the stop (the server's hook may have first)."""
    await disconnected(receive)
    rec.stop.fire(Outcome.CLIENT_CLOSED)
