"""The relay: one client request, one upstream request, and the race between them.

Each request lives in one nursery. The relay task reads the body, opens the
upstream and copies its answer (:mod:`trioproxy.proxy.relay.forward`); the watcher task
blocks on ASGI ``receive()`` until ``http.disconnect``. Whichever ends first
cancels the nursery's scope. The upstream exchange is held in ``async with``,
so a cancel in any phase closes the upstream socket (the pool never reuses
it). Nothing polls.
"""

import json
import re
import ssl
import time

import certifi
import trio

from trioproxy.asgi import CLIENT_GONE, CLIENT_HANGUP, Receive, Scope, Send, disconnected
from trioproxy.proxy.admin.inflight import Inflight
from trioproxy.proxy.admin.metrics import Metrics
from trioproxy.proxy.core.bounded import (
    ADDRESS_MAX,
    KEY_NAME_MAX,
    METHOD_MAX,
    MODEL_MAX,
    RELAYED_METHODS,
    cut,
    kept,
)
from trioproxy.proxy.core.errors import error_body, send_json_error
from trioproxy.proxy.core.record import Outcome, RequestRecord
from trioproxy.proxy.gateway.balance import Balancer
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.gateway.gate import KEY_NAME, SLOT
from trioproxy.proxy.gateway.paths import client_query_ok, client_tail
from trioproxy.proxy.gateway.routing import Upstream
from trioproxy.proxy.relay.answers import asks_for_stream, only_cancelled, start_event_stream
from trioproxy.proxy.relay.forward import Exchange, Forwarder
from trioproxy.proxy.relay.heartbeat import Heartbeat
from trioproxy.proxy.upstream.pool import Deadlines, UpstreamPool

__all__ = ["Relay", "gone_already", "open_upstream_pool"]


# "model": "..." in a JSON body. A quote inside a JSON string is escaped, so
# '"model"' is never found inside a message's text. A name with no closing
# quote within MODEL_MAX bytes is longer: it is kept cut and marked.
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,%d}+)([^\\])' % MODEL_MAX)

_ALLOW = ", ".join(RELAYED_METHODS).encode()


class _ClientGone(Exception):
    """The client disconnected while its request body was still arriving."""


class _BodyTooLarge(Exception):
    """The request body passed ``ProxyConfig.max_body_bytes``."""


def open_upstream_pool(config: ProxyConfig) -> UpstreamPool:
    """The upstream connections, verified against the upstream's own ``ca``, else
    ``--upstream-ca``, else certifi's CAs."""
    own = {u.origin: _verifying(u.ca) for u in config.router().upstreams if u.ca}
    return UpstreamPool(_verifying(config.upstream_ca), ssl_contexts=own)


def _verifying(cafile: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile or certifi.where())


class Relay:
    """The raw ASGI handler for every route under ``/v1/``."""

    def __init__(
        self,
        config: ProxyConfig,
        pool: UpstreamPool,
        inflight: Inflight | None = None,
        metrics: Metrics | None = None,
        run_dir: str | None = None,
    ) -> None:
        self._config = config
        self._body_timeout_s = config.body_timeout_s
        self._router = config.router()
        deadlines = Deadlines(
            config.connect_timeout_s, config.headers_timeout_s, config.idle_timeout_s
        )
        strip = bool(config.keys())
        self._metrics = metrics or Metrics()
        gauge = self._metrics.upstream_inflight
        balancer = Balancer(config.cooldown_s, gauge, self._router.upstreams, run_dir)
        self._forwarder = Forwarder(pool, self._router, deadlines, strip, balancer)
        self._inflight = inflight or Inflight(self._metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = RequestRecord(scope["method"], scope["path"])
        client = scope.get("client")
        record.client = kept(f"{client[0]}:{client[1]}", ADDRESS_MAX) if client else ""
        record.key_name = kept(scope.get(KEY_NAME, ""), KEY_NAME_MAX)
        record.slot = scope.get(SLOT)
        self._inflight.add(record)
        try:
            await self._handle(scope, receive, send, record)
        except BaseException as exc:
            # hypercorn never cancels a request; only the server stopping does
            # (after its grace period). The cancel may come grouped by a nursery.
            if only_cancelled(exc):
                record.end(Outcome.SHUTDOWN, 503)
            else:  # a fault of the proxy's own: hypercorn answers 500, and it is logged so
                record.end(Outcome.UPSTREAM_ERROR, 500)
            raise
        finally:
            self._inflight.remove(record)
            self._metrics.finished(record)
            record.log()

    async def _handle(self, scope: Scope, receive: Receive, send: Send, rec: RequestRecord) -> None:
        if scope["method"] not in RELAYED_METHODS:
            rec.end(Outcome.COMPLETED, 405)
            return await _send_method_not_allowed(send, scope["method"])
        tail = client_tail(scope["raw_path"])
        if tail is None or not client_query_ok(scope["query_string"]):
            rec.end(Outcome.COMPLETED, 400)
            await send_json_error(
                send,
                400,
                "invalid path: dot segments, control bytes and bytes outside RFC 3986 are refused",
                "invalid_request_error",
                "invalid_path",
            )
            return
        try:
            # A bare scope: trio.fail_after is a generator-based context manager.
            with trio.CancelScope(deadline=trio.current_time() + self._body_timeout_s) as late:
                body = await self._read_body(scope, receive)
            if late.cancelled_caught:
                raise trio.TooSlowError
        except _ClientGone:
            rec.client_closed_at = time.monotonic()
            rec.end(Outcome.CLIENT_CLOSED)
            return
        except _BodyTooLarge:
            rec.end(Outcome.COMPLETED, 413)
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
            rec.end(Outcome.COMPLETED, 408)
            await send_json_error(
                send,
                408,
                f"request body not received within {self._config.body_timeout_s:g} s",
                "invalid_request_error",
                "request_timeout",
                close=True,
            )
            return
        if gone_already(receive):  # a stop that came with the body: open nothing upstream
            rec.client_closed_at = time.monotonic()
            rec.end(Outcome.CLIENT_CLOSED)
            return
        merged = scope["raw_path"] == b"/v1/models" and len(self._router.upstreams) > 1
        upstream = self._router.default if merged else self._route(body, rec)
        if upstream is None:
            rec.end(Outcome.COMPLETED, 404)
            await send_json_error(
                send,
                404,
                f"model {rec.model!r} is not served here",
                "invalid_request_error",
                "model_not_found",
            )
            return
        async with trio.open_nursery() as nursery:
            rec.cancel_scope = nursery.cancel_scope
            scope[CLIENT_GONE] = rec.client_gone  # hypercorn's read task calls it first
            rec.upstream_handle.hangup = scope.get(CLIENT_HANGUP)  # or its watcher thread
            nursery.start_soon(_watch_client, receive, rec)
            method = scope["method"].encode("ascii")
            exchange = Exchange(method, tail, scope["query_string"], scope["headers"], body)
            if merged:  # in the same race: a stop ends the upstreams' model lookups too
                await self._forwarder.merged_models(exchange, send, rec)
                nursery.cancel_scope.cancel()
                return
            beat = Heartbeat(send, self._config.heartbeat_s)
            if beat.enabled:
                nursery.start_soon(beat.run)
            early = self._config.early_headers and asks_for_stream(body)
            if early:
                await start_event_stream(send, rec, beat)
            await self._forwarder.forward(exchange, send, rec, upstream, beat, early)
            nursery.cancel_scope.cancel()
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

    def _route(self, body: bytes, rec: RequestRecord) -> Upstream | None:
        # The body is parsed only when its model decides where it goes, or
        # when the admin's listing will show it; else a cheap look serves the
        # log and the metrics.
        if not self._router.needs_model and self._config.admin_key is None:
            rec.model = _glimpsed_model(body)
            return self._router.default
        try:
            model = json.loads(body).get("model") if body else None
        except (ValueError, AttributeError, RecursionError):
            model = None
        if not isinstance(model, str):
            return self._router.default  # no model (GET /v1/files, ...): the first upstream
        rec.model = kept(model, MODEL_MAX)  # the whole name stays in the body only
        return self._router.route(model) if self._router.needs_model else self._router.default


def _glimpsed_model(body: bytes) -> str:
    """The model, without parsing the body: the kept copy, or "" if not plainly there."""
    at = body.find(b'"model"')  # bytes.find is fast; a regex scan of a long prompt is not
    found = _MODEL.match(body, at) if at >= 0 else None
    if found is None:
        return ""
    name = found[1].decode("utf-8", "replace")
    return kept(name, MODEL_MAX) if found[2] == b'"' else cut(name, MODEL_MAX)


async def _send_method_not_allowed(send: Send, method: str) -> None:
    """405, never forwarded: TRACE would echo the upstream key back, CONNECT would tunnel."""
    body = error_body(
        f"method {kept(method, METHOD_MAX)} is not allowed; allowed: {_ALLOW.decode()}",
        "invalid_request_error",
        "method_not_allowed",
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"allow", _ALLOW),
    ]
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def gone_already(receive: Receive) -> bool:
    """Whether the client's disconnect is already waiting in hypercorn's queue.

    A stream reset (or a FIN) that arrived while the body was read sits there
    unseen until someone calls ``receive()``; the relay must not open an
    upstream connection for it. hypercorn's ``receive`` is a trio memory
    channel's: taking a message without blocking is safe there (unlike a
    ``receive()`` under a zero timeout, which can lose it). Once the body is
    whole, the only message left to come is the disconnect.
    """
    channel = getattr(receive, "__self__", None)
    if not isinstance(channel, trio.MemoryReceiveChannel):
        return False
    try:
        message = channel.receive_nowait()
    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
        return False
    return bool(message["type"] == "http.disconnect")


async def _watch_client(receive: Receive, rec: RequestRecord) -> None:
    """Wait for the client to leave, then stop the relay (and with it the upstream)."""
    await disconnected(receive)
    rec.client_gone()  # a no-op if hypercorn's read task called it already
