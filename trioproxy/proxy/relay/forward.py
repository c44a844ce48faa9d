"""The relay's upstream half: send the request along an upstream's fallback chain,
then copy the answer to the client chunk by chunk.

It runs inside the request's race (:mod:`trioproxy.proxy.relay.race`): a cancel in any
phase leaves the upstream exchange unfinished, and the pool closes that
connection. Failures map to outcomes here: before the client has headers, a
502/504 JSON error (after trying the fallbacks, if nothing reached the
upstream or it answered 5xx); after them an SSE ``error`` event, never a fake
``[DONE]``.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from trioproxy.asgi import Send, send_json
from trioproxy.proxy.core.bounded import ERROR_MAX, kept
from trioproxy.proxy.core.lines import FIELDS
from trioproxy.proxy.core.record import Outcome, Phase, RequestRecord
from trioproxy.proxy.relay.answers import answer_failure, refused_after_early_headers
from trioproxy.proxy.relay.heartbeat import Heartbeat
from trioproxy.proxy.relay.models import (
    MAX_LIST_BYTES,
    OddModelList,
    listed_models,
    routable_list,
)
from trioproxy.proxy.relay.sse import EventCounter
from trioproxy.proxy.relay.streamed import streamed_for
from trioproxy.proxy.relay.usage import UsageTap
from trioproxy.proxy.upstream.balance import Balancer
from trioproxy.proxy.upstream.errors import ExchangeError, Unreachable, UpstreamError
from trioproxy.proxy.upstream.headers import Headers, request_headers, response_headers
from trioproxy.proxy.upstream.pool import Deadlines, UpstreamExchange, UpstreamPool
from trioproxy.proxy.upstream.routing import Router, Upstream

__all__ = ["Forwarder", "UpstreamRequest"]

log = logging.getLogger("trioproxy.upstream")
attempt_log = logging.getLogger("trioproxy.attempt")

_EVENT_STREAM = b"text/event-stream"
_NO_BUFFERING = (b"x-accel-buffering", b"no")


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What goes upstream: the client's request, with its path already checked."""

    method: bytes
    tail: bytes
    """The client's path after ``/v1``, checked by ``relay.paths.client_tail``."""
    query: bytes
    headers: Headers
    """As the client sent them; each upstream gets its own filtered copy."""
    body: bytes


class Forwarder:
    def __init__(
        self,
        pool: UpstreamPool,
        router: Router,
        deadlines: Deadlines,
        strip_credentials: bool,
        balancer: Balancer,
    ) -> None:
        self._pool = pool
        self._balancer = balancer
        self._router = router
        self._deadlines = deadlines
        self._strip_credentials = strip_credentials
        self._unlisted: set[str] = set()
        """Wildcard upstreams left out of the last model list, each logged once."""

    async def forward(
        self,
        request: UpstreamRequest,
        send: Send,
        rec: RequestRecord,
        first: Upstream,
        beat: Heartbeat,
        early: bool,
    ) -> None:
        # Its replicas, best first, then the first one's configured fallbacks.
        replicas = self._balancer.order(self._router.replicas(first))
        fallbacks = self._router.chain(replicas[0])[1:]
        chain = [*replicas, *(u for u in fallbacks if u not in replicas)]
        for n, upstream in enumerate(chain):
            last = upstream is chain[-1]
            rec.upstream = upstream.name
            rec.phase = Phase.CONNECT
            self._balancer.started(upstream)
            try:
                # A non-streaming completion may go upstream as a stream (relay.streamed).
                streamed = streamed_for(upstream.stream_upstream, request)
                sent = request if streamed is None else streamed.request
                upstream_exchange = self._exchange(upstream, sent, rec)
                rec.stop.link(upstream_exchange)  # a stop aborts it from here on
                try:
                    async with upstream_exchange.open() as response:
                        self._balancer.reached(upstream)
                        if response.status >= 500 and not last:
                            # nothing reached the client yet: try the next one
                            _attempt_failed(rec, response.status, "server_error", chain[n + 1])
                            continue
                        if streamed is None or not await streamed.answer(response, send, rec):
                            await self._relay_answer(response, send, rec, beat, early)
                        return
                finally:
                    rec.stop.unlink()
            except ExchangeError as exc:
                if isinstance(exc, Unreachable):
                    self._balancer.unreachable(upstream, str(exc))
                    if not last:  # not reached, nothing sent: try the next one
                        _attempt_failed(rec, None, kept(str(exc), ERROR_MAX), chain[n + 1])
                        continue
                # Before the client has headers, or after: mid-answer errors
                # raised by the relay's loop end up here too.
                await answer_failure(send, rec, exc, early)
                return
            finally:  # a stop frees its upstream at once: the counts stay true
                self._balancer.finished(upstream)

    def _exchange(
        self, upstream: Upstream, request: UpstreamRequest, rec: RequestRecord
    ) -> UpstreamExchange:
        def sent() -> None:
            rec.phase = Phase.WAITING_HEADERS

        # With keys of its own the proxy never forwards the client's
        # credentials: they are the proxy's keys, not the upstream's.
        conventions = upstream.conventions
        drop = conventions.drop_credentials if self._strip_credentials else conventions.drop
        headers = request_headers(request.headers, drop, conventions.added)
        return self._pool.exchange(
            upstream.origin,
            request.method,
            upstream.target_for(request.tail, request.query),
            headers,
            request.body,
            self._deadlines,
            sent,
        )

    async def _relay_answer(
        self,
        response: UpstreamExchange,
        send: Send,
        rec: RequestRecord,
        beat: Heartbeat,
        early: bool,
    ) -> None:
        rec.upstream_headers_at = time.monotonic()
        counter = None
        if (response.header(b"content-type") or b"").startswith(_EVENT_STREAM):
            counter = EventCounter()
            rec.event_stream = True
        # An event stream is framed anew: the proxy may add heartbeats and an
        # error event, which the upstream's length would not count.
        length = None if counter is not None else response.declared
        headers = response_headers(response.headers, length)
        if counter is not None:
            headers.append(_NO_BUFFERING)
        usage = UsageTap(event_stream=counter is not None)
        # A JSON answer's bytes are no stream: its phase says so in the log and the metrics.
        flowing = Phase.STREAMING if counter is not None else Phase.BODY
        if early:
            if counter is None or response.status != 200:
                return await refused_after_early_headers(response, send, rec)
        else:
            rec.phase = Phase.WAITING_FIRST_BYTE
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            rec.status = response.status  # once sent: a stop before this answers 503 itself
            beat.stream_started(counter)
        send_chunk = beat.send_chunk if beat.enabled else _plain(send)
        try:
            while (chunk := await response.next_chunk()) is not None:
                rec.phase = flowing
                rec.bytes_relayed += len(chunk)
                usage.feed(chunk)
                if counter is not None:
                    counter.feed(chunk)
                    rec.events_relayed = counter.events
                await send_chunk(chunk)
                if rec.bytes_relayed == length:
                    # The last byte went out: whatever the client does now
                    # (read to the length and close, as curl does), the answer is whole.
                    rec.end(Outcome.COMPLETED)
        finally:  # a stop, a timeout or an error: what usage came is still the record's
            usage.close()
            rec.usage = usage.usage
        # The answer is whole once the upstream finished: a disconnect seen
        # while the last bytes go out no longer changes the outcome.
        rec.end(Outcome.COMPLETED)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def merged_models(self, request: UpstreamRequest, send: Send, rec: RequestRecord) -> None:
        """``GET /v1/models`` routed by model: the models a request could be routed to."""
        lists: dict[str, dict[str, bytes]] = {}
        rec.phase = Phase.CONNECT

        async def fetch(upstream: Upstream) -> None:
            try:
                async with self._exchange(upstream, request, rec).open() as response:
                    body = await response.read(MAX_LIST_BYTES + 1)
                lists[upstream.name] = listed_models(response.status, body)
            except (UpstreamError, OddModelList) as exc:
                # Once while it stays out: a model picker may ask every few seconds.
                if upstream.name not in self._unlisted:
                    self._unlisted.add(upstream.name)
                    log.warning(
                        "upstream %s left out of the model list (its exact names stay): %s",
                        upstream.name,
                        exc,
                    )
                return
            if upstream.name in self._unlisted:
                self._unlisted.discard(upstream.name)
                log.info("upstream %s is in the model list again", upstream.name)

        async with trio.open_nursery() as nursery:
            for upstream in self._router.wildcards():
                nursery.start_soon(fetch, upstream)
        body = routable_list(self._router, lists)
        rec.phase = Phase.BODY
        rec.end(Outcome.COMPLETED, 200)
        rec.bytes_relayed = len(body)
        await send_json(send, 200, body)


def _attempt_failed(rec: RequestRecord, status: int | None, reason: str, then: Upstream) -> None:
    """One line for an upstream that failed before the client had a byte, and which one
    is tried next; the access line names the upstream that answered."""
    fields = {
        "id": rec.request_id,
        "request_id": rec.x_request_id,
        "upstream": rec.upstream,
        "status": status,
        "reason": reason,
        "then": then.name,
    }
    attempt_log.info(
        "%s attempt upstream=%s status=%s reason=%s then=%s request_id=%s",
        rec.request_id,
        rec.upstream,
        "-" if status is None else status,
        reason,
        then.name,
        rec.x_request_id,
        extra={FIELDS: fields},
    )


def _plain(send: Send) -> Callable[[bytes], Awaitable[None]]:
    async def send_chunk(chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    return send_chunk
