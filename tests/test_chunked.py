"""The upstream's chunked bodies, decoded by trioproxy's own reader (``upstream.chunked``),
and the chunks hypercorn sends its clients without h11's ``send`` (``guards.http1``)."""

from typing import Any

import h11
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.asgi import Receive, Scope, Send
from trioproxy.conformance import RawClient, request_bytes
from trioproxy.proxy.upstream.chunked import ChunkedBody, ChunkError
from trioproxy.server import hypercorn_config, serve_app

_EXTENSIONS = st.sampled_from([b"", b";a=1", b"; name", b' ;x="y"'])
_TRAILERS = st.lists(st.sampled_from([b"x-usage: 1", b"etag: abc"]), max_size=2)


def encode(chunks: list[bytes], extensions: list[bytes], trailers: list[bytes]) -> bytes:
    """What an upstream may send: sizes in either case, extensions, a trailer section."""
    out = b"".join(
        b"%x%s\r\n%s\r\n" % (len(c), extensions[i % len(extensions)], c)
        for i, c in enumerate(chunks)
    )
    return out + b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"


def decode(body: ChunkedBody, wire: bytes, cuts: list[int]) -> bytes:
    out, at = [], 0
    for cut in [*sorted(cuts), len(wire)]:
        out.append(body.feed(wire[at:cut]))
        at = cut
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    extensions=st.lists(_EXTENSIONS, min_size=1, max_size=3),
    trailers=_TRAILERS,
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    extra=st.sampled_from([b"", b"H", b"HTTP/1.1 200 OK\r\n"]),
)
def test_any_framing_cut_anywhere_decodes_to_the_body(
    chunks: list[bytes],
    extensions: list[bytes],
    trailers: list[bytes],
    cuts: list[int],
    extra: bytes,
) -> None:
    wire = encode(chunks, extensions, trailers)
    body = ChunkedBody()
    got = decode(body, wire + extra, [c for c in cuts if c <= len(wire) + len(extra)])
    assert got == b"".join(chunks)
    assert body.done
    assert body.extra == bool(extra)


def test_the_same_bytes_h11_reads_are_read_alike() -> None:
    """A sample of framings h11 accepts (and upper-case sizes) decode alike here."""
    wire = b'A\r\n0123456789\r\n1;ext="q"\r\nx\r\n0\r\nfoo: bar\r\n\r\n'
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + wire)
    h11_body = b""
    while type(event := conn.next_event()) is not h11.EndOfMessage:
        if type(event) is h11.Data:
            h11_body += event.data
    body = ChunkedBody()
    assert body.feed(wire) == h11_body == b"0123456789x"
    assert body.done and not body.extra


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\nhello\r\n",  # not a hex size
        b"\r\nhello\r\n",  # no size at all
        b"5\r\nhelloXX0\r\n\r\n",  # data not followed by CRLF
        b"-5\r\nhello\r\n",
        b"12345678901234567\r\n",  # a size past 16 hex digits
        b"5 5\r\nhello\r\n",
        b"5\nhello\r\n",  # a bare LF ends no size line: the line runs on
    ],
)
def test_broken_framing_is_refused(wire: bytes) -> None:
    body = ChunkedBody()
    with pytest.raises(ChunkError):
        body.feed(wire)
        body.feed(b"\r\n" + b"0" * 70_000)  # lines are bounded: no endless wait


def test_a_size_line_or_trailer_that_never_ends_is_bounded() -> None:
    with pytest.raises(ChunkError, match="size line"):
        ChunkedBody().feed(b"5" + b" " * 70_000)
    body = ChunkedBody()
    body.feed(b"0\r\n")
    with pytest.raises(ChunkError, match="trailer"):
        body.feed(b"x-long: " + b"a" * 70_000)


async def test_body_chunks_reach_the_client_framed_and_empty_ones_are_skipped(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The framing hypercorn writes without h11's ``send`` is h11's framing:
    an empty body message must not read as the last chunk."""
    pieces = [b"data: 1\n\n", b"", b"x" * 300, b""]
    sent_through_h11: list[object] = []
    h11_send = h11.Connection.send

    def send(self: h11.Connection, event: Any) -> Any:
        sent_through_h11.append(type(event))
        return h11_send(self, event)

    monkeypatch.setattr(h11.Connection, "send", send)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    bound = str((await nursery.start(serve_app, app, hypercorn_config("127.0.0.1", 0)))[0])
    host, port = bound.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        client = await RawClient.connect(host, int(port))
        for _ in range(2):  # and the connection stays usable for the next request
            client.received = b""
            await client.send(request_bytes("GET", "/", b"", {}))
            await client.read_response()
            head, _, body = client.received.partition(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head.lower()
            assert body == b"9\r\ndata: 1\n\n\r\n12c\r\n" + b"x" * 300 + b"\r\n0\r\n\r\n"
        client.close()
    assert sent_through_h11 == [h11.Response, h11.EndOfMessage] * 2
