"""What the proxy answers itself: errors before and after the upstream's headers,
and the early event-stream head of ``early_headers`` mode.

Before headers a failure is a 502/504 with an OpenAI-style JSON body; after
them an event stream ends with an SSE ``error`` event, never a fake
``[DONE]``, and any other body is left unfinished so it cannot pass for whole.
"""

import json

import trio

from trioproxy.asgi import Send
from trioproxy.proxy.core.bounded import ERROR_MAX, cut, kept
from trioproxy.proxy.core.errors import send_json_error
from trioproxy.proxy.core.record import Outcome, Phase, RequestRecord
from trioproxy.proxy.relay.heartbeat import Heartbeat
from trioproxy.proxy.relay.sse import EventCounter, error_event
from trioproxy.proxy.upstream.pool import UpstreamError, UpstreamResponse

__all__ = [
    "asks_for_stream",
    "fail_before_headers",
    "fail_early",
    "fail_mid_stream",
    "only_cancelled",
    "refused_after_early_headers",
    "start_event_stream",
]


def asks_for_stream(body: bytes) -> bool:
    if b'"stream"' not in body:
        return False
    try:
        return json.loads(body).get("stream") is True
    except (ValueError, AttributeError, RecursionError):
        return False


async def start_event_stream(send: Send, rec: RequestRecord, beat: Heartbeat) -> None:
    """The opt-in early answer: 200 and an event stream at once, heartbeats until the
    upstream answers. The price: an upstream error can only arrive as an error event."""
    rec.status = 200
    rec.phase = Phase.WAITING_FIRST_BYTE
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ],
        }
    )
    beat.stream_started(EventCounter())


async def refused_after_early_headers(
    response: UpstreamResponse, send: Send, rec: RequestRecord
) -> None:
    # Read one byte past the bound, so a longer refusal is marked as cut.
    raw = await response.read(ERROR_MAX + 1)
    text = raw[:ERROR_MAX].decode(errors="replace")
    detail = kept(text, ERROR_MAX) if len(raw) <= ERROR_MAX else cut(text, ERROR_MAX)
    if not rec.end(Outcome.UPSTREAM_ERROR):
        return  # a stop decided first: nothing more goes to the client
    message = f"upstream answered {response.status}: {detail}"
    await send(
        {
            "type": "http.response.body",
            "body": error_event(message, "upstream_error"),
            "more_body": False,
        }
    )


async def fail_early(send: Send, rec: RequestRecord, exc: UpstreamError) -> None:
    await fail_mid_stream(send, rec, exc, event_stream=True)


def only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


def _upstream_outcome(exc: UpstreamError) -> Outcome:
    return Outcome.UPSTREAM_TIMEOUT if exc.timed_out else Outcome.UPSTREAM_ERROR


async def fail_before_headers(send: Send, rec: RequestRecord, exc: UpstreamError) -> None:
    outcome = _upstream_outcome(exc)
    timeout = outcome is Outcome.UPSTREAM_TIMEOUT
    status = 504 if timeout else 502
    if not rec.end(outcome, status):
        return  # a stop decided first: nothing more goes to the client
    what = "timed out" if timeout else "unreachable or failed"
    detail = kept(str(exc), ERROR_MAX) or type(exc).__name__  # may quote the upstream
    await send_json_error(send, status, f"upstream {what}: {detail}", outcome, outcome)


async def fail_mid_stream(
    send: Send, rec: RequestRecord, exc: UpstreamError, *, event_stream: bool
) -> None:
    outcome = _upstream_outcome(exc)
    if not rec.end(outcome):
        # A stop decided first (it closed the upstream socket under the
        # relay): the answer stays unfinished, as the stop left it.
        return
    if not event_stream:
        # A non-event-stream answer is left unfinished: hypercorn then closes
        # the connection, and the client sees a truncated body rather than a
        # complete-looking one.
        return
    what = "timed out" if outcome is Outcome.UPSTREAM_TIMEOUT else "failed"
    detail = kept(str(exc), ERROR_MAX) or type(exc).__name__  # may quote the upstream
    body = error_event(f"upstream {what} mid-stream: {detail}", outcome)
    await send({"type": "http.response.body", "body": body, "more_body": False})
