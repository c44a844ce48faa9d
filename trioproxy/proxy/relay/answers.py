"""What the proxy answers itself: the answer to a failed exchange, and the early
event-stream head of ``early_headers`` mode.

:func:`answer_failure` is the one place the client's answer is chosen from
the failure and the phase:

==========================  ==============================  ==========================
failure                     before the client has headers   after them
==========================  ==============================  ==========================
``Aborted`` (a stop)        nothing: the stop's outcome     nothing
``UpstreamTimeout``         504 JSON, ``upstream_timeout``  an SSE ``error`` event
other ``UpstreamError``     502 JSON, ``upstream_error``    an SSE ``error`` event
==========================  ==============================  ==========================

After headers, a body that is no event stream is left unfinished instead:
never a fake ``[DONE]``, nothing that can pass for whole.

:func:`answer_stop` answers a stop of the proxy's own, the admin's cancel or
the end of a shutdown's grace period, by the same rule: before the client has
headers, 503 JSON (code ``cancelled`` or ``shutting_down``); after them, on
an event stream, an SSE ``error`` event with that code, then the end; any
other body already begun, just the close. A client's own stop gets nothing:
nobody is left to read it. The status logged is the one the client got (a
stream cut after its 200 logs 200, with the stop's outcome).
"""

import json

import trio

from trioproxy.asgi import Send
from trioproxy.proxy.core.bounded import ERROR_MAX, cut, kept
from trioproxy.proxy.core.errors import send_json_error
from trioproxy.proxy.core.record import Outcome, Phase, RequestRecord
from trioproxy.proxy.relay.heartbeat import Heartbeat
from trioproxy.proxy.relay.sse import EventCounter, error_event
from trioproxy.proxy.upstream.errors import Aborted, ExchangeError, UpstreamTimeout
from trioproxy.proxy.upstream.pool import UpstreamExchange

__all__ = [
    "ANSWER_STOP_S",
    "answer_failure",
    "answer_stop",
    "asks_for_stream",
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
    rec.phase = Phase.WAITING_FIRST_BYTE
    rec.event_stream = True
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
    rec.status = 200  # once sent: a stop before this still answers with a status of its own
    beat.stream_started(EventCounter())


async def refused_after_early_headers(
    response: UpstreamExchange, send: Send, rec: RequestRecord
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


_AFTER_HEADERS = frozenset({Phase.WAITING_FIRST_BYTE, Phase.STREAMING, Phase.BODY})
"""The phases in which the client has its headers already."""


async def answer_failure(
    send: Send, rec: RequestRecord, failure: ExchangeError, early: bool
) -> None:
    """The client's answer to an exchange that failed, from the failure and the phase."""
    if isinstance(failure, Aborted):
        # Only a stop aborts: the hang-up thread's left the outcome to the loop.
        rec.stop.fire(Outcome.CLIENT_CLOSED)
        return
    timeout = isinstance(failure, UpstreamTimeout)
    outcome = Outcome.UPSTREAM_TIMEOUT if timeout else Outcome.UPSTREAM_ERROR
    # The upstream by its configured name: its address is the log's (the balancer's
    # warning), never the client's. The detail may quote the upstream's own words.
    detail = kept(failure.public or str(failure), ERROR_MAX) or type(failure).__name__
    named = f'upstream "{rec.upstream}"' if rec.upstream else "upstream"
    if early or rec.phase in _AFTER_HEADERS:
        if not rec.end(outcome):
            return  # a stop decided first: the answer stays as the stop left it
        if early or rec.event_stream:
            what = "timed out" if timeout else "failed"
            body = error_event(f"{named} {what} mid-stream: {detail}", outcome)
            await send({"type": "http.response.body", "body": body, "more_body": False})
        # Any other body is left unfinished: hypercorn then closes the connection,
        # and the client sees a truncated body rather than a complete-looking one.
        return
    status = 504 if timeout else 502
    if not rec.end(outcome, status):
        return  # a stop decided first: nothing more goes to the client
    what = "timed out" if timeout else "unreachable or failed"
    await send_json_error(send, status, f"{named} {what}: {detail}", outcome, outcome)


ANSWER_STOP_S = 1.0
"""How long the answer to a stop of the proxy's own may take to go out."""

_STOPS = {
    Outcome.CANCELLED_BY_ADMIN: ("cancelled", "the request was cancelled by the proxy's admin"),
    Outcome.SHUTDOWN: ("shutting_down", "the proxy is shutting down: try again"),
}
"""The proxy's own stops: the code and message each is answered with."""


async def answer_stop(send: Send, rec: RequestRecord) -> None:
    """After the request's race: the client's answer to a stop of the proxy's own, if one
    ended it. ``rec.status`` is set once a head went out, so it says which answer is left."""
    said = _STOPS.get(rec.outcome) if rec.outcome is not None else None
    if said is None:
        return
    code, message = said
    # Bounded: a client that reads nothing must not hold a request that is over
    # (a cut write resets its connection, as the server's send does).
    with trio.move_on_after(ANSWER_STOP_S):
        if not rec.status:
            rec.status = 503
            await send_json_error(send, 503, message, "server_error", code)
        elif rec.event_stream:
            body = error_event(message, "server_error", code)
            await send({"type": "http.response.body", "body": body, "more_body": False})
        # Else a body under way that is no event stream: left unfinished, the connection closes.
