"""HTTP/2 frame sequences (h2c with prior knowledge), valid or not.

Frames are built by hand (nine header bytes and a payload) so any type,
flag, stream id and length can be sent, the invalid ones included; header
blocks are HPACK from a request that is mostly well-formed. A step is one
frame or a flood: many frames of one kind, the shape of the floods that
stalled the proxy (PRIORITY over hundreds of streams never opened, a chain
of exclusive dependencies, WINDOW_UPDATE, SETTINGS, PING, empty DATA).
"""

import struct
from dataclasses import dataclass

import hpack
from hypothesis import strategies as st

from tests.fuzzing.requests import json_bodies
from tests.fuzzing.requests import mostly as _mostly

__all__ = ["PREFACE", "H2Case", "h2_cases"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
FLOOD_MAX = 2000
"""Frames in one flood of PRIORITY or RST_STREAM (28 KB: enough to stall a tree of
that many streams); 25 times that of the frames with no per-stream state."""


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


_streams = (
    st.sampled_from([1, 3, 5, 7, 9])
    | st.sampled_from([0, 2, 2**31 - 1])
    | st.integers(0, 2**32 - 1)
)
_flags = st.sampled_from([0, END_STREAM, END_HEADERS, END_STREAM | END_HEADERS]) | st.integers(
    0, 255
)
_u31 = st.integers(0, 2**31 - 1)
_H2_PATHS = [
    b"/health",
    b"/v1/models",
    b"/admin/requests",
    b"",
    b"*",
    b"/v1/x%0d%0a2099-01-01 00:00:00,000 INFO trioproxy.access: FORGED",
    b"/v1/\x1b[31m",
    b"/v1/chat/completions?x=\x7f",
]


@st.composite
def _header_block(draw: st.DrawFn) -> bytes:
    fields: list[tuple[bytes, bytes]] = [
        (b":method", draw(st.sampled_from([b"POST", b"GET", b"TRACE", b"CONNECT", b""]))),
        (b":scheme", draw(st.sampled_from([b"http", b"https", b"ftp"]))),
        (
            b":path",
            draw(
                st.sampled_from(
                    [
                        b"/v1/chat/completions",
                        b"/health",
                        b"/v1/models",
                        b"/admin/requests",
                        b"",
                        b"*",
                        b"/v1/x%0d%0aFORGED",
                        b"/v1/\x1b",
                    ]
                )
            ),
        ),
        (b":authority", b"h"),
        (b"content-type", b"application/json"),
    ]
    fields = draw(st.lists(st.sampled_from(fields), max_size=7)) if draw(st.booleans()) else fields
    fields += draw(
        st.lists(
            st.sampled_from(
                [
                    (b"connection", b"keep-alive"),
                    (b"te", b"trailers"),
                    (b"content-length", b"3"),
                    (b"Upper", b"x"),
                    (b"x-v", b"a\r\nb"),
                    (b":bogus", b"1"),
                    (b"x-big", b"v" * 5000),
                ]
            ),
            max_size=3,
        )
    )
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))  # not HPACK at all
    return bytes(hpack.Encoder().encode(fields, huffman=draw(st.booleans())))


def _padded(draw: st.DrawFn, flags: int, payload: bytes) -> bytes:
    if flags & PADDED:
        return bytes([draw(st.integers(0, 255))]) + payload + b"\0" * draw(st.integers(0, 8))
    return payload


@st.composite
def _one(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                "headers",
                "data",
                "priority",
                "rst",
                "settings",
                "ping",
                "goaway",
                "window",
                "continuation",
                "push",
                "unknown",
            ]
        )
    )
    stream, flags = draw(_streams), draw(_flags)
    if kind == "headers":
        block = draw(_header_block())
        if flags & PRIORITY_FLAG:
            block = (
                struct.pack(
                    ">IB", draw(_u31) | draw(st.sampled_from([0, 2**31])), draw(st.integers(0, 255))
                )
                + block
            )
        return frame(HEADERS, flags, stream, _padded(draw, flags, block))
    if kind == "data":
        return frame(DATA, flags, stream, _padded(draw, flags, draw(json_bodies() | st.just(b""))))
    if kind == "priority":
        dep = draw(_u31) | draw(st.sampled_from([0, 2**31]))
        return frame(
            PRIORITY,
            flags,
            stream,
            struct.pack(">IB", dep, draw(st.integers(0, 255)))[
                : draw(st.sampled_from([5, 5, 5, 4, 6]))
            ],
        )
    if kind == "rst":
        return frame(RST_STREAM, flags, stream, struct.pack(">I", draw(st.integers(0, 2**32 - 1))))
    if kind == "settings":
        pairs = draw(st.lists(st.tuples(st.integers(0, 10), st.integers(0, 2**32 - 1)), max_size=6))
        payload = b"".join(struct.pack(">HI", k, v) for k, v in pairs)
        return frame(
            SETTINGS, draw(st.sampled_from([0, ACK])), draw(st.sampled_from([0, 0, 1])), payload
        )
    if kind == "ping":
        return frame(
            PING,
            draw(st.sampled_from([0, ACK])),
            draw(st.sampled_from([0, 0, 1])),
            draw(st.binary(min_size=8, max_size=8) | st.binary(max_size=12)),
        )
    if kind == "goaway":
        return frame(
            GOAWAY,
            0,
            0,
            struct.pack(">II", draw(_u31), draw(st.integers(0, 15))) + draw(st.binary(max_size=16)),
        )
    if kind == "window":
        return frame(
            WINDOW_UPDATE,
            0,
            draw(st.sampled_from([0, 1, 3])),
            struct.pack(
                ">I", draw(st.sampled_from([0, 1, 2**31 - 1])) | draw(st.sampled_from([0, 2**31]))
            ),
        )
    if kind == "continuation":
        return frame(CONTINUATION, flags, stream, draw(_header_block()))
    if kind == "push":
        return frame(PUSH_PROMISE, flags, stream, struct.pack(">I", 2) + draw(_header_block()))
    return frame(draw(st.integers(10, 255)), flags, stream, draw(st.binary(max_size=32)))


@st.composite
def _flood(draw: st.DrawFn) -> bytes:
    count = draw(st.sampled_from([FLOOD_MAX, FLOOD_MAX // 4]) | st.integers(10, FLOOD_MAX))
    cheap = count * draw(st.sampled_from([1, 25]))  # frames with no per-stream state
    kind = draw(
        st.sampled_from(
            [
                "priority-siblings",
                "priority-chain",
                "window",
                "settings",
                "ping",
                "empty-data",
                "rst-unopened",
            ]
        )
    )
    if kind == "priority-siblings":  # streams never opened, then re-weighted
        return b"".join(
            frame(PRIORITY, 0, 2 * (i % 999) + 1, struct.pack(">IB", 0, i % 256))
            for i in range(count)
        )
    if kind == "priority-chain":  # each exclusive on the one before
        return b"".join(
            frame(PRIORITY, 0, 2 * i + 3, struct.pack(">IB", 2**31 | (2 * i + 1), 15))
            for i in range(count)
        )
    if kind == "window":
        return frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * cheap
    if kind == "settings":
        return frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65535)) * cheap
    if kind == "ping":
        return frame(PING, 0, 0, b"\0" * 8) * cheap
    if kind == "empty-data":
        return frame(DATA, 0, 1, b"") * cheap
    return b"".join(frame(RST_STREAM, 0, 2 * i + 1, struct.pack(">I", 8)) for i in range(count))


@dataclass(frozen=True)
class H2Case:
    steps: list[bytes]
    """The connection's bytes, one write a step (preface and SETTINGS first)."""

    def __repr__(self) -> str:
        shown = [s if len(s) < 300 else s[:100] + b"...%d bytes" % len(s) for s in self.steps]
        return f"H2Case({shown!r})"


@st.composite
def _request(draw: st.DrawFn, stream: int) -> list[bytes]:
    """One request's frames, mostly valid: HEADERS (maybe CONTINUATION), DATA to END_STREAM."""
    path = _mostly(draw, b"/v1/chat/completions", st.sampled_from(_H2_PATHS), 3)
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path), (b":authority", b"h")]
    body = draw(json_bodies())
    fields += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    block = _mostly(draw, bytes(hpack.Encoder().encode(fields)), _header_block(), 5)
    split = _mostly(draw, len(block), st.integers(0, len(block)))
    flags = END_HEADERS if split == len(block) else 0
    frames = [frame(HEADERS, flags, stream, block[:split])]
    if split < len(block):
        frames.append(frame(CONTINUATION, END_HEADERS, stream, block[split:]))
    cut = _mostly(draw, len(body), st.integers(0, len(body)))
    frames += [frame(DATA, 0, stream, body[:cut]), frame(DATA, END_STREAM, stream, body[cut:])]
    return frames


@st.composite
def h2_cases(draw: st.DrawFn) -> H2Case:
    """One to three requests on streams 1, 3, 5; odd frames and now and then a flood among them."""
    opening = _mostly(
        draw,
        PREFACE + frame(SETTINGS, 0, 0, b""),
        st.sampled_from([PREFACE, PREFACE[:10], b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"]),
        10,
    )
    steps = [f for n in range(draw(st.integers(1, 3))) for f in draw(_request(2 * n + 1))]
    for odd in draw(st.lists(_one(), max_size=6)) + _mostly(
        draw, [], st.lists(_flood(), max_size=1)
    ):
        steps.insert(draw(st.integers(0, len(steps))), odd)
    return H2Case([opening, *steps])
