"""Upstream answers a broken or hostile upstream writes, and the requests that draw them.

An answer is a run of ``1xx`` heads (sometimes thousands), a final head with
an odd status and framing that may lie (both framings, a wrong length, a
length on 204/304, none at all), and a body: JSON with odd ``usage`` numbers,
an event stream with odd lines, or a model list of odd shape. The answer is
written in cut pieces and may stop short or never end.
"""

import json
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.fuzzing.requests import mostly as _mostly

__all__ = ["UpstreamCase", "request", "upstream_cases"]

_NUMBERS: st.SearchStrategy[object] = st.sampled_from(
    [0, 7, -1, -(2**63), 2**64, 10**400, 1.5, "12", None, True, [], {}]
)
_FLOATS = st.sampled_from(["1e300", "-0.0", "1e999", "NaN", "Infinity", "-1e-7"])


@st.composite
def _usage(draw: st.DrawFn) -> str:
    """A usage object's JSON; odd numbers are written as literals json.dumps would refuse."""
    names = ["prompt_tokens", "completion_tokens", "total_tokens"]
    picked = draw(st.lists(st.sampled_from(names), unique=True))
    parts = []
    for name in picked:
        value = draw(_FLOATS) if draw(st.booleans()) else json.dumps(draw(_NUMBERS))
        parts.append(f'"{name}": {value}')
    return (
        "{" + ", ".join(parts) + "}"
        if draw(st.integers(0, 5))
        else draw(st.sampled_from(['"x"', "[]", "null", "7"]))
    )


@st.composite
def _json_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["chat", "models", "garbage"]))
    if kind == "chat":
        return f'{{"id": "c", "choices": [], "usage": {draw(_usage())}}}'.encode()
    if kind == "models":
        data = draw(
            st.sampled_from(
                [
                    "null",
                    '"x"',
                    "[]",
                    '[{"id": 5}]',
                    '[{"id": null}]',
                    '[{"id": "m"}, 7]',
                    '[{"id": "m", "object": "model"}]',
                    '{"id": "m"}',
                ]
            )
        )
        return f'{{"object": "list", "data": {data}}}'.encode()
    return draw(st.sampled_from([b"", b"{", b"null", b"\xff\xfe", b"<html>", b'{"usage": ' * 500]))


@st.composite
def _event_stream(draw: st.DrawFn) -> bytes:
    end = draw(st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r", b"\n"]))
    lines = draw(
        st.lists(
            st.sampled_from(
                [
                    b'data: {"choices": [{"delta": {"content": "x"}}]}',
                    b"data: [DONE]",
                    b": comment",
                    b"event: error",
                    b"id: \x00",
                    b"retry: -5",
                    b"data:",
                    b"data: \x1b[2J\x07",
                    b"no colon",
                    b"data: {",
                ]
            )
            | _usage().map(lambda u: b'data: {"choices": [], "usage": ' + u.encode() + b"}")
            | st.integers(1, 64).map(lambda k: b"data: " + b"x" * (1024 * k)),
            max_size=8,
        )
    )
    return end.join(lines) + (end if draw(st.booleans()) else b"")


@dataclass(frozen=True)
class UpstreamCase:
    request: bytes
    """What the client sends the proxy (HTTP/1.1, ``connection: close``)."""
    answer: list[bytes]
    """What the upstream writes, piece by piece."""
    hold: bool
    """The upstream keeps the connection open after its answer."""
    pace_s: float = 0.0
    """A pause after each piece (a trickle of 1xx heads: finding 5 of issue 18)."""
    idle_s: float = 0.3
    """How long the client waits for a byte before it leaves (longer for a trickle)."""

    def __repr__(self) -> str:
        whole = b"".join(self.answer)
        shown = (
            whole
            if len(whole) < 600
            else whole[:300] + b"...(%d bytes)..." % len(whole) + whole[-200:]
        )
        request = self.request[:120]
        return (
            f"UpstreamCase({request=!r}, answer={shown!r}, {len(self.answer)} pieces, {self.hold=})"
        )


def request(path: bytes, body: bytes | None) -> bytes:
    if body is None:
        return b"GET %s HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n" % path
    return (
        b"POST %s HTTP/1.1\r\nhost: h\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (path, len(body), body)
    )


_REQUESTS = st.sampled_from(
    [
        request(
            b"/v1/chat/completions",
            json.dumps({"model": "m", "stream": True, "messages": []}).encode(),
        ),
        request(
            b"/v1/chat/completions",
            json.dumps({"model": "m", "stream": False, "messages": []}).encode(),
        ),
        request(
            b"/v1/chat/completions",
            json.dumps({"model": "fuzz-b-1", "stream": True, "messages": []}).encode(),
        ),
        request(b"/v1/completions", json.dumps({"model": "m", "prompt": "p"}).encode()),
        request(b"/v1/models", None),
        request(b"/v1/models/m", None),
    ]
)


@st.composite
def upstream_cases(draw: st.DrawFn) -> UpstreamCase:
    # Mostly none or a few; now and then a trickle of 2 MiB (issue 18 saw 6 MiB).
    informational = _mostly(draw, 0, st.integers(1, 3), 4)
    if draw(st.integers(1, 25)) == 1:  # each costs seconds while the proxy has no budget
        informational = draw(st.sampled_from([80_000]) | st.integers(50, 80_000))
    interim = draw(
        st.sampled_from(
            [
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
                b"HTTP/1.1 199 Odd\r\nx: y\r\n\r\n",
            ]
        )
    )
    odd_status = st.sampled_from([201, 204, 304, 400, 404, 429, 500, 503, 999, 600, 99, 0, 101])
    status = _mostly(draw, 200, odd_status | st.integers(0, 1000), 3)
    stream = draw(st.booleans())
    body = draw(_event_stream()) if stream else draw(_json_body())
    kind = b"text/event-stream" if stream else b"application/json"
    headers = [
        b"content-type: "
        + draw(st.sampled_from([kind, kind, b"text/plain", b"text/event-stream; charset=\x01"]))
    ]
    odd_framing = st.sampled_from(["both", "short", "long", "none", "double", "odd"])
    framing = _mostly(draw, draw(st.sampled_from(["length", "chunked"])), odd_framing, 2)
    if framing in ("chunked", "both"):
        headers.append(b"transfer-encoding: chunked")
        wire = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    else:
        wire = body
    if framing == "length":
        headers.append(b"content-length: %d" % len(body))
    elif framing == "both":  # a length that may or may not be the dechunked body's
        headers.append(b"content-length: %d" % draw(st.sampled_from([len(body), 5])))
    elif framing == "short":  # the connection ends before the length is reached
        headers.append(b"content-length: %d" % (len(body) + draw(st.integers(1, 100))))
    elif framing == "long":
        headers.append(b"content-length: %d" % max(0, len(body) - draw(st.integers(1, 10))))
    elif framing == "double":
        headers += [b"content-length: %d" % len(body), b"content-length: %d" % (len(body) + 1)]
    elif framing == "odd":
        headers.append(
            draw(
                st.sampled_from(
                    [
                        b"content-length: -5",
                        b"content-length: 1e3",
                        b"transfer-encoding: gzip",
                        b"transfer-encoding: chunked, chunked",
                    ]
                )
            )
        )
    headers += draw(
        st.lists(
            st.sampled_from(
                [
                    b"x-odd: \x01",
                    b"connection: keep-alive",
                    b"set-cookie: a=b",
                    b"x-long: " + b"v" * 8000,
                    b"server: up",
                ]
            ),
            max_size=3,
        )
    )
    head = (
        b"HTTP/1.1 %03d %s\r\n" % (status, draw(st.sampled_from([b"OK", b"", b"R\x01"])))
        + b"\r\n".join(headers)
        + b"\r\n\r\n"
    )
    whole = interim * informational + head + wire
    cuts = sorted(draw(st.lists(st.integers(0, len(whole)), max_size=4)))
    if informational > 50:  # a few 1xx heads a write: each read of the proxy's sees a little
        pieces = [interim * 20] * (informational // 20) + [head + wire]
    else:
        pieces = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True) if b > a]
    if draw(st.integers(0, 7)) == 0:
        pieces = pieces[: draw(st.integers(0, len(pieces)))]  # the upstream stops short
    trickle = {"pace_s": 0.0002, "idle_s": 5.0} if informational > 50 else {}
    return UpstreamCase(draw(_REQUESTS), pieces, draw(st.integers(0, 5)) == 0, **trickle)
