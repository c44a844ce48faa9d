"""The relay: one client request, one upstream request, and the race between them.

Each request lives in one nursery. The relay task reads the body, opens the
upstream and copies its answer; the watcher task blocks on ASGI ``receive()``
until ``http.disconnect``. Whichever ends first cancels the nursery's scope.
The upstream response is held in ``async with``, so a cancel in any phase
closes the upstream socket (the pool never reuses it). Nothing polls.

Upstream failures map to outcomes in two places: before response headers
the client gets a 502/504 JSON error (after trying the fallbacks, if any);
after them an event stream ends with an SSE ``error`` event, never a fake
``[DONE]``.
"""

import json
import ssl
import time
from typing import NamedTuple

import certifi
import httpx
import trio

from trioproxy.answers import (
    asks_for_stream,
    fail_before_headers,
    fail_early,
    fail_mid_stream,
    only_cancelled,
    refused_after_early_headers,
    start_event_stream,
)
from trioproxy.asgi import Receive, Scope, Send
from trioproxy.config import ProxyConfig
from trioproxy.errors import send_json, send_json_error
from trioproxy.headers import Headers, request_headers, response_headers
from trioproxy.heartbeat import Heartbeat
from trioproxy.inflight import Inflight
from trioproxy.metrics import Metrics
from trioproxy.paths import client_query_ok, client_tail
from trioproxy.record import Outcome, Phase, RequestRecord
from trioproxy.routing import Upstream
from trioproxy.sse import EventCounter
from trioproxy.upstream import UpstreamTransport
from trioproxy.usage import UsageTap

__all__ = ["Relay", "open_upstream_client"]


class _ClientGone(Exception):
    """The client disconnected while its request body was still arriving."""


class _BodyTooLarge(Exception):
    """The request body passed ``ProxyConfig.max_body_bytes``."""


def open_upstream_client(config: ProxyConfig) -> httpx.AsyncClient:
    """An httpx client fit for LLM traffic.

    httpx's defaults break it: a 5 s read timeout cuts a model still thinking,
    and a pool of 100 connections queues the 101st concurrent stream. Timeouts
    are set per request instead (see :meth:`Relay._timeouts`); the pool is
    trioproxy's own, uncapped and HTTP/1.1 only (see :mod:`trioproxy.upstream`).
    """
    ssl_context = ssl.create_default_context(cafile=config.upstream_ca or certifi.where())
    client = httpx.AsyncClient(
        transport=UpstreamTransport(ssl_context),
        timeout=None,
        follow_redirects=False,
        trust_env=False,
    )
    # httpx adds Accept-Encoding and User-Agent of its own; the upstream
    # must see the client's headers only, or it may compress for a client that
    # never asked for it.
    client.headers.clear()
    return client


class Relay:
    """The raw ASGI handler for every route under ``/v1/``."""

    def __init__(
        self,
        config: ProxyConfig,
        client: httpx.AsyncClient,
        inflight: Inflight | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._router = config.router()
        self._metrics = metrics or Metrics()
        self._inflight = inflight or Inflight(self._metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = RequestRecord(scope["method"], scope["path"])
        client = scope.get("client")
        record.client = f"{client[0]}:{client[1]}" if client else ""
        self._inflight.add(record)
        try:
            await self._handle(scope, receive, send, record)
        except BaseException as exc:
            # hypercorn never cancels a request; only the server stopping does
            # (after its grace period). The cancel may come grouped by a nursery.
            if only_cancelled(exc):
                record.end(Outcome.SHUTDOWN, 503)
            raise
        finally:
            self._inflight.remove(record)
            self._metrics.finished(record)
            record.log()

    async def _handle(self, scope: Scope, receive: Receive, send: Send, rec: RequestRecord) -> None:
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
            with trio.fail_after(self._config.body_timeout_s):
                body = await self._read_body(scope, receive)
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
            nursery.start_soon(_watch_client, receive, nursery.cancel_scope, rec)
            if merged:  # in the same race: a stop ends the upstreams' model lookups too
                await self._merged_models(scope, send, rec)
                nursery.cancel_scope.cancel()
                return
            beat = Heartbeat(send, self._config.heartbeat_s)
            if beat.enabled:
                nursery.start_soon(beat.run)
            early = self._config.early_headers and asks_for_stream(body)
            if early:
                await start_event_stream(send, rec, beat)
            target = _Target(tail, scope["query_string"])
            await self._forward(scope, send, body, rec, upstream, target, beat, early)
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

    async def _merged_models(self, scope: Scope, send: Send, rec: RequestRecord) -> None:
        """``GET /v1/models`` with several upstreams: their lists, merged."""
        models: dict[str, object] = {}

        async def fetch(upstream: Upstream) -> None:
            headers = self._upstream_headers(scope, upstream)
            with trio.move_on_after(self._config.connect_timeout_s):
                try:
                    answer = await self._client.get(
                        upstream.url_for(b"/models", b""), headers=headers
                    )
                    for model in answer.json().get("data", []):
                        models.setdefault(model.get("id"), model)
                except (httpx.HTTPError, ValueError, AttributeError):
                    pass  # an upstream that cannot list its models lists none

        async with trio.open_nursery() as nursery:
            for upstream in self._router.upstreams:
                nursery.start_soon(fetch, upstream)
        body = json.dumps({"object": "list", "data": list(models.values())}).encode()
        rec.end(Outcome.COMPLETED, 200)
        rec.bytes_relayed = len(body)
        await send_json(send, 200, body)

    def _route(self, body: bytes, rec: RequestRecord) -> Upstream | None:
        # The body is parsed only when its model decides where it goes, or
        # when the admin's listing will show it.
        if not self._router.needs_model and self._config.admin_key is None:
            return self._router.default
        try:
            model = json.loads(body).get("model") if body else None
        except (ValueError, AttributeError, RecursionError):
            model = None
        if not isinstance(model, str):
            return self._router.default  # no model (GET /v1/files, ...): the first upstream
        rec.model = model
        return self._router.route(model) if self._router.needs_model else self._router.default

    def _upstream_headers(self, scope: Scope, upstream: Upstream) -> Headers:
        # With keys of its own the proxy never forwards the client's
        # credentials: they are the proxy's keys, not the upstream's.
        strip = upstream.key is not None or bool(self._config.api_keys)
        return request_headers(scope["headers"], upstream.key, strip_credentials=strip)

    def _timeouts(self) -> dict[str, float | None]:
        # "read" covers the wait for headers here; _relay_answer lowers it to
        # the idle timeout once headers are in. httpcore reads it lazily from
        # this same dict when the body iteration starts.
        return {
            "connect": self._config.connect_timeout_s,
            "read": self._config.headers_timeout_s,
            "write": None,
            "pool": None,
        }

    async def _forward(
        self,
        scope: Scope,
        send: Send,
        body: bytes,
        rec: RequestRecord,
        first: Upstream,
        target: "_Target",
        beat: Heartbeat,
        early: bool,
    ) -> None:
        fail = fail_early if early else fail_before_headers
        chain = self._router.chain(first)
        for upstream in chain:
            last = upstream is chain[-1]
            rec.upstream = upstream.name
            rec.phase = Phase.CONNECT
            try:
                async with self._client.stream(
                    scope["method"],
                    upstream.url_for(target.tail, target.query),
                    headers=self._upstream_headers(scope, upstream),
                    content=body,
                    extensions={"trace": rec.trace, "timeout": self._timeouts()},
                ) as response:
                    if response.status_code >= 500 and not last:
                        continue  # nothing reached the client yet: try the next one
                    await self._relay_answer(response, send, rec, beat, early)
                    return
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:  # else: not reached, nothing sent: try the next one
                    await fail(send, rec, exc)
                    return
            except httpx.HTTPError as exc:
                await fail(send, rec, exc)
                return

    async def _relay_answer(
        self,
        response: httpx.Response,
        send: Send,
        rec: RequestRecord,
        beat: Heartbeat,
        early: bool,
    ) -> None:
        rec.upstream_headers_at = time.monotonic()
        response.request.extensions["timeout"]["read"] = self._config.idle_timeout_s
        headers = response_headers(response.headers.raw)
        counter = None
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            counter = EventCounter()
            headers.append((b"x-accel-buffering", b"no"))
        usage = UsageTap(event_stream=counter is not None)
        length = _declared_length(response)
        if early:
            if counter is None or response.status_code != 200:
                return await refused_after_early_headers(response, send, rec)
        else:
            rec.status = response.status_code
            rec.phase = Phase.WAITING_FIRST_BYTE
            await send({"type": "http.response.start", "status": rec.status, "headers": headers})
            beat.stream_started(counter)
        try:
            async for chunk in response.aiter_raw():
                rec.phase = Phase.STREAMING
                rec.bytes_relayed += len(chunk)
                usage.feed(chunk)
                if counter is not None:
                    counter.feed(chunk)
                    rec.events_relayed = counter.events
                await beat.send_chunk(chunk)
                if rec.bytes_relayed == length:
                    # The last byte went out: whatever the client does now
                    # (read to the length and close, as curl does), the answer is whole.
                    rec.end(Outcome.COMPLETED)
        except httpx.HTTPError as exc:
            rec.usage = usage.usage
            return await fail_mid_stream(send, rec, exc, event_stream=counter is not None)
        finally:
            usage.close()
            rec.usage = usage.usage
        # The answer is whole once the upstream finished: a disconnect seen
        # while the last bytes go out no longer changes the outcome.
        rec.end(Outcome.COMPLETED)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Target(NamedTuple):
    tail: bytes
    """The client's path after ``/v1``, checked by :func:`client_tail`."""
    query: bytes


def _declared_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


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


async def _watch_client(
    receive: Receive, relay_scope: trio.CancelScope, rec: RequestRecord
) -> None:
    """Wait for the client to leave, then stop the relay (and with it the upstream)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    # After the relay's own end of the answer hypercorn reports a disconnect
    # too, while the relay is still inside send() running hypercorn's
    # keep-alive recycling: cancelling it there would leave the connection
    # half-recycled. Only a stop that decides the outcome cancels.
    if rec.end(Outcome.CLIENT_CLOSED):
        rec.client_closed_at = time.monotonic()
        relay_scope.cancel()
