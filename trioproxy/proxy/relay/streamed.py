"""``stream_upstream``: a non-streaming completion asked of the upstream as a stream.

Some engines (llama.cpp's server, llama-cpp-python's) notice a client that
left only while they write to it: a non-streaming request runs to its end for
nobody. With ``stream_upstream`` on an upstream, a client's non-streaming
``POST`` to ``/v1/chat/completions`` or ``/v1/completions`` goes upstream with
``"stream": true`` and ``"stream_options": {"include_usage": true}``, every
other field as the client sent it, and the proxy answers the one JSON answer
:mod:`.assemble` puts together from the events. A client that leaves closes
that stream as it closes any (the request's stop aborts the exchange), and the
engine's streaming abort stops the work.

Until the answer is whole the client has no header, so any failure meanwhile
(a cut, the idle timeout, a bad or an ``error`` event) is a 502 or 504 JSON
error (``answers.answer_failure``). An upstream that answers something other
than a 200 event stream (a 400 for a bad field, JSON all the same) is relayed
as it came. Every other request, and a request that asks for a stream itself,
is relayed as without the setting.
"""

import json
import time
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

from trioproxy.asgi import Send
from trioproxy.proxy.core.record import Outcome, Phase, RequestRecord
from trioproxy.proxy.relay.assemble import MAX_BYTES, Assembler, AssemblyError, Kind
from trioproxy.proxy.relay.usage import UsageTap
from trioproxy.proxy.upstream.headers import Headers, response_headers
from trioproxy.proxy.upstream.pool import UpstreamExchange

__all__ = ["Streamed", "streamed_body", "streamed_for"]

_KINDS: dict[bytes, Kind] = {b"/chat/completions": "chat", b"/completions": "completion"}
_ASKED = b'"stream":true,"stream_options":{"include_usage":true}'
_STREAM_ONLY = frozenset({b"content-type", b"cache-control", b"x-accel-buffering"})
"""The event stream's own headers: not the JSON answer's."""
_ASKED_HEADERS = ((b"accept", b"text/event-stream"), (b"accept-encoding", b"identity"))
"""A stream uncompressed: the proxy reads it, the client never sees it."""


class _RequestLike(Protocol):
    """What of ``forward.UpstreamRequest`` is read here (named so, not imported:
    forward imports this module). A dataclass: :func:`streamed_for` replaces fields."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def method(self) -> bytes: ...
    @property
    def tail(self) -> bytes: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Streamed[R: _RequestLike]:
    """A request going upstream as a stream, and the answer's kind."""

    request: R
    kind: Kind

    async def answer(self, response: UpstreamExchange, send: Send, rec: RequestRecord) -> bool:
        """Assemble and send the answer; False, having read nothing, when the upstream
        answered something other than a 200 event stream (then relay it as it came)."""
        kind = response.header(b"content-type") or b""
        if response.status != 200 or not kind.startswith(b"text/event-stream"):
            return False
        rec.upstream_headers_at = time.monotonic()
        encoding = response.header(b"content-encoding")
        if encoding not in (None, b"identity"):
            raise AssemblyError("the upstream compressed its event stream")
        assembler = Assembler(self.kind, MAX_BYTES)
        usage = UsageTap(event_stream=True)
        try:
            while (chunk := await response.next_chunk()) is not None:
                usage.feed(chunk)
                assembler.feed(chunk)
            body = assembler.answer()
        finally:  # a stop, a timeout or an error: what usage came is still the record's
            usage.close()
            rec.usage = usage.usage
        if not rec.end(Outcome.COMPLETED, 200):
            return True  # a stop decided first: nothing goes to the client
        rec.phase = Phase.STREAMING
        rec.bytes_relayed = len(body)
        headers = [(n, v) for n, v in response_headers(response.headers) if n not in _STREAM_ONLY]
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return True


def streamed_for[R: _RequestLike](stream_upstream: bool, request: R) -> Streamed[R] | None:
    """``request`` as it goes upstream as a stream, or None: relayed as it came (the
    setting off, another path or method, a request for a stream, a body that is not
    a JSON object)."""
    if not stream_upstream:
        return None
    kind = _KINDS.get(request.tail)
    if kind is None or request.method != b"POST":
        return None
    body = streamed_body(request.body)
    if body is None:
        return None
    names = {name for name, _ in _ASKED_HEADERS}
    headers = [(n, v) for n, v in request.headers if n not in names]
    headers += _ASKED_HEADERS
    return Streamed(replace(request, body=body, headers=headers), kind)


def streamed_body(body: bytes) -> bytes | None:
    """``body`` asking for a stream with usage, or None when it is no JSON object, asks
    for a stream itself (or says ``stream`` oddly: the upstream's to refuse), or
    asks for ``best_of`` (which no stream can give)."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(request, dict):
        return None
    stream, options = request.get("stream"), request.get("stream_options")
    if not (stream is None or stream is False) or request.get("best_of") not in (None, 1):
        return None
    if not isinstance(options, dict | None):
        return None
    if "stream" in request or "stream_options" in request:
        request["stream"] = True
        request["stream_options"] = (options or {}) | {"include_usage": True}
        return json.dumps(request).encode()
    # Neither is there: the two go in before the closing brace, the client's bytes
    # otherwise as they came (a body in UTF-16 is written anew instead).
    inner = body.rstrip()
    if not (inner.endswith(b"}") and body.lstrip().startswith(b"{")):
        return json.dumps(
            request | {"stream": True, "stream_options": {"include_usage": True}}
        ).encode()
    inner = inner[:-1].rstrip()
    return inner + (b"" if inner.endswith(b"{") else b",") + _ASKED + b"}"
