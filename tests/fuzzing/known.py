"""The shapes issue 18 found, as explicit examples: every run tries them first.

Generation may or may not come near a given shape in a fixed number of
examples; these make sure the issue's probes, reduced to one case each, are
part of every CI run whatever the draw.
"""

import json
import struct

import hpack

from tests.fuzzing.answers import UpstreamCase, request
from tests.fuzzing.frames import (
    DATA,
    END_HEADERS,
    END_STREAM,
    PING,
    PREFACE,
    PRIORITY,
    SETTINGS,
    WINDOW_UPDATE,
    H2Case,
    frame,
)
from tests.fuzzing.requests import H1Case

__all__ = ["H1_KNOWN", "H2_KNOWN", "UPSTREAM_KNOWN"]

_FORGED = b"2099-01-01 00:00:00,000 INFO trioproxy.access: FORGED"


def _post(model: str, path: bytes = b"/v1/chat/completions", method: bytes = b"POST") -> H1Case:
    body = json.dumps({"model": model, "stream": True, "messages": []}).encode()
    head = b"%s %s HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\n" % (method, path)
    return H1Case([head + b"content-length: %d\r\n\r\n%s" % (len(body), body)])


H1_KNOWN = [
    H1Case([b"GET /v1/x%0d%0a" + _FORGED.replace(b" ", b"%20") + b" HTTP/1.1\r\nhost: h\r\n\r\n"]),
    _post("m\r\n" + _FORGED.decode()),  # finding 4: the model's CR LF in the access line
    _post("\x1b[2Jm"),
    _post("m" * (64 * 1024)),  # finding 3: kept and logged whole
    _post("m", method=b"TRACE"),  # finding 9
    _post("m", method=b"TRACK"),
    _post("m", method=b"CONNECT"),
]


def _block(method: bytes, path: bytes) -> bytes:
    fields = [(b":method", method), (b":scheme", b"http"), (b":path", path), (b":authority", b"h")]
    return bytes(hpack.Encoder().encode(fields))


_CHAT = json.dumps({"model": "m", "messages": [], "stream": False}).encode()
_CLOSED_WINDOW = PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0))  # INITIAL_WINDOW_SIZE
_OPEN_1 = frame(
    1,  # HEADERS, no END_STREAM: stream 1 stays open for DATA
    END_HEADERS,
    1,
    bytes(
        hpack.Encoder().encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/v1/chat/completions"),
                (":authority", "h"),
                ("content-type", "application/json"),
            ]
        )
    ),
)
_START = PREFACE + frame(SETTINGS, 0, 0, b"")

H2_KNOWN = [
    H2Case(  # finding 1: 999 streams never opened, then re-weighted
        [
            _START,
            b"".join(
                frame(PRIORITY, 0, 2 * (i % 999) + 1, struct.pack(">IB", 0, i % 256))
                for i in range(3000)
            ),
        ]
    ),
    H2Case(  # finding 1: a chain of exclusive priorities
        [
            _START,
            b"".join(
                frame(PRIORITY, 0, 2 * i + 3, struct.pack(">IB", 2**31 | (2 * i + 1), 15))
                for i in range(3000)
            ),
        ]
    ),
    H2Case([_START, frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * 100_000]),  # finding 2
    H2Case([_START, frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65535)) * 50_000]),
    H2Case([_START, frame(PING, 0, 0, b"\0" * 8) * 50_000]),
    H2Case([_START, _OPEN_1, frame(DATA, 0, 1, b"") * 100_000]),
    # Found by this fuzzer: a client that opens no window for a whole JSON answer
    # and then leaves; the request must still end (and write its access line).
    H2Case([_CLOSED_WINDOW, _OPEN_1, frame(DATA, END_STREAM, 1, _CHAT)]),
    H2Case([_CLOSED_WINDOW, frame(1, END_HEADERS | END_STREAM, 1, _block(b"GET", b"/v1/models"))]),
]

_STREAM = request(
    b"/v1/chat/completions",
    json.dumps({"model": "m", "stream": True, "messages": []}).encode(),
)
_JSON = request(
    b"/v1/chat/completions",
    json.dumps({"model": "m", "stream": False, "messages": []}).encode(),
)
_SSE = b"data: {}\n\ndata: [DONE]\n\n"


def _answer(head: bytes, body: bytes = b"") -> list[bytes]:
    return [b"HTTP/1.1 " + head + b"\r\n\r\n" + body]


def _json(body: bytes) -> bytes:
    return b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def _usage(usage: str) -> bytes:
    return _json(b'{"choices": [], "usage": %s}' % usage.encode())


UPSTREAM_KNOWN = [
    UpstreamCase(  # finding 5: an endless run of 1xx heads, one write each
        _STREAM,
        [b"HTTP/1.1 100 Continue\r\n\r\n" * 20] * 4000  # 2 MiB, 500 bytes a write
        + _answer(b"200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 0"),
        hold=False,
        pace_s=0.0002,
        idle_s=5.0,
    ),
    UpstreamCase(  # finding 6: both framings
        _STREAM,
        _answer(
            b"200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            b"content-length: 5",
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(_SSE), _SSE),
        ),
        hold=False,
    ),
    UpstreamCase(  # finding 6: an event stream cut short of its length
        _STREAM,
        _answer(b"200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 500", _SSE),
        hold=False,
    ),
    UpstreamCase(_JSON, _answer(b"999 Odd\r\ncontent-length: 2", b"{}"), hold=False),
    UpstreamCase(_JSON, _answer(b"204 No Content\r\ncontent-length: 0"), hold=False),
    UpstreamCase(_JSON, [b"HTTP/1.1 200 OK\r\n" + _usage('{"prompt_tokens": -1}')], hold=False),
    UpstreamCase(_JSON, [b"HTTP/1.1 200 OK\r\n" + _usage('{"total_tokens": 1e999}')], hold=False),
    UpstreamCase(
        _JSON, [b"HTTP/1.1 200 OK\r\n" + _usage('{"total_tokens": 1%s}' % ("0" * 400))], hold=False
    ),
    UpstreamCase(
        request(b"/v1/models", None),  # finding 8
        [b"HTTP/1.1 200 OK\r\n" + _json(b'{"object": "list", "data": null}')],
        hold=False,
    ),
]
