"""HTTP/1.1 on the wire without h11: the upstream's response heads and framing
(``upstream.http11``), its chunked bodies (``upstream.chunked``), and the
chunks the server sends its clients without h11 (``guards.http1``)."""

from typing import Any

import h11
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.asgi import Receive, Scope, Send
from trioproxy.conformance import RawClient, request_bytes
from trioproxy.proxy.upstream import http11
from trioproxy.proxy.upstream.chunked import ChunkedBody, ChunkError
from trioproxy.proxy.upstream.http11 import (
    MAX_HEAD,
    MAX_HEADS,
    Framing,
    HeadReader,
    ProtocolError,
    parse_head,
    request_head,
)
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


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8),
    extensions=st.lists(_EXTENSIONS, min_size=1, max_size=3),
    trailers=_TRAILERS,
)
def test_one_whole_chunk_a_read_decodes_as_the_whole_body(
    chunks: list[bytes], extensions: list[bytes], trailers: list[bytes]
) -> None:
    # The relay's common read (one chunk exactly) takes a fast path of its own.
    wire = encode(chunks, extensions, trailers)
    body = ChunkedBody()
    at = 0
    for i, chunk in enumerate(chunks):
        piece = b"%x%s\r\n%s\r\n" % (len(chunk), extensions[i % len(extensions)], chunk)
        assert body.feed(piece) == chunk
        at += len(piece)
    assert body.feed(wire[at:]) == b"" and body.done and not body.extra
    with pytest.raises(ChunkError):  # a chunk whose CRLF is wrong is refused there too
        ChunkedBody().feed(b"%x\r\n%sXY" % (len(chunks[0]), chunks[0]))


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
    """The framing the server writes without h11 is h11's framing: an empty
    body message must not read as the last chunk, and no part of the
    response goes through h11's ``send`` (head and end included)."""
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
    assert sent_through_h11 == []


_TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~",
    min_size=1,
    max_size=20,
)
_VALUE = st.text("".join(map(chr, range(0x21, 0x7F))) + " \t", max_size=40).map(str.strip)


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(min_value=200, max_value=599),
    fields=st.lists(st.tuples(_TOKEN, _VALUE), max_size=8),
    informational=st.booleans(),
    newline=st.sampled_from(["\r\n", "\n"]),
)
def test_response_heads_read_as_h11_reads_them(
    status: int, fields: list[tuple[str, str]], informational: bool, newline: str
) -> None:
    """Status, fields (names in lower case, values trimmed) and framing agree with h11."""
    fields = [(n, v) for n, v in fields if n.lower() not in ("transfer-encoding", "content-length")]
    lines = [f"HTTP/1.1 {status} Reason", *(f"{n}:  {v} " for n, v in fields)]
    raw = newline.join(lines).encode() + (newline * 2).encode()
    if informational:
        raw = b"HTTP/1.1 100 Continue\r\n\r\n" + raw
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw + b"body")
    while type(event := conn.next_event()) is not h11.Response:
        assert type(event) is h11.InformationalResponse
    parsed = parse_head(raw + b"body", head_request=False)
    assert parsed is not None
    head, body_at = parsed
    assert raw[body_at:] + b"body" == b"body"
    assert head.status == event.status_code
    assert head.headers == list(event.headers)
    connection = b"close" in b",".join(v.lower() for n, v in head.headers if n == b"connection")
    no_body = status in (204, 304)
    assert head.framing is (Framing.NONE if no_body else Framing.CLOSE)
    assert head.keep_alive is not connection


@pytest.mark.parametrize(
    ("raw", "framing", "length", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", Framing.LENGTH, 12, True),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n",
            Framing.LENGTH,
            3,
            True,
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", Framing.CHUNKED, 0, True),
        (b"HTTP/1.1 200 OK\r\n\r\n", Framing.CLOSE, 0, True),
        (b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n", Framing.NONE, 0, True),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", Framing.LENGTH, 2, False),
        (
            b"HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n",
            Framing.LENGTH,
            0,
            False,
        ),
        (b"HTTP/1.1 200\r\ncontent-length: 1\r\n\r\n", Framing.LENGTH, 1, True),
    ],
)
def test_framing_and_keep_alive(
    raw: bytes, framing: Framing, length: int, keep_alive: bool
) -> None:
    parsed = parse_head(raw, head_request=False)
    assert parsed is not None
    head = parsed[0]
    assert (head.framing, head.length, head.keep_alive) == (framing, length, keep_alive)
    head_request = parse_head(raw, head_request=True)
    assert head_request is not None and head_request[0].framing is Framing.NONE


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 099 Odd\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: a\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        # framing read two ways (RFC 9112 section 6.3), in either order
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 999 Odd\r\n\r\n",  # no status of RFC 9110's five classes
        b"HTTP/1.1 600 Odd\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n",  # asked for by no one
        b"HTTP/1.1 200 OK\r\nx: " + b"a" * 70_000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: " + b"a" * 70_000,  # a head that never ends is bounded too
    ],
)
def test_what_is_not_an_http11_response_is_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_head(raw, head_request=False)


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_FINAL = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"


@settings(max_examples=200, deadline=None)
@given(
    informational=st.lists(
        st.sampled_from([_CONTINUE, b"HTTP/1.1 103 Early Hints\nlink: </a>\n\n"]), max_size=20
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=20),
)
def test_heads_cut_anywhere_read_as_one_piece(informational: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(informational) + _FINAL
    reader = HeadReader(head_request=False)
    at, parsed = 0, None
    for cut in [*sorted(c for c in cuts if c <= len(wire)), len(wire)]:
        parsed = reader.feed(wire[at:cut])
        at = cut
        if parsed is not None:
            break
    assert parsed is not None
    head, body = parsed
    assert (head.status, head.declared, body + wire[at:]) == (200, 4, b"body")


@pytest.mark.parametrize("read", [1, 7, 4096, 65536])
def test_a_run_of_informational_heads_is_refused_past_the_budget_each_byte_scanned_once(
    read: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However the run is cut into reads, the reader searches each byte about
    once (an end may start in the last two bytes of a read) and stops at the
    budget: a run of ``100 Continue`` costs its length, and only up to it."""
    scanned = 0
    head_end = http11._HEAD_END

    class Counted:
        def search(self, data: bytearray, pos: int) -> object:
            nonlocal scanned
            found = head_end.search(data, pos)
            scanned += (found.end() if found else len(data)) - pos
            return found

    monkeypatch.setattr(http11, "_HEAD_END", Counted())
    run = _CONTINUE * (4 * MAX_HEADS // len(_CONTINUE))
    reader = HeadReader(head_request=False)
    fed = 0
    with pytest.raises(ProtocolError, match="response heads"):
        for at in range(0, len(run), read):
            fed += read
            reader.feed(run[at : at + read])
    assert MAX_HEADS < fed <= MAX_HEADS + read
    assert scanned <= fed + 2 * (fed // read + 1)


def test_heads_within_the_budget_are_read() -> None:
    run = _CONTINUE * ((MAX_HEADS - len(_FINAL)) // len(_CONTINUE))
    parsed = HeadReader(head_request=False).feed(run + _FINAL)
    assert parsed is not None and parsed[0].status == 200
    with pytest.raises(ProtocolError, match="response heads"):
        HeadReader(head_request=False).feed(run + _CONTINUE + _FINAL)
    with pytest.raises(ProtocolError, match="too long"):  # one head keeps its own bound
        HeadReader(head_request=False).feed(b"HTTP/1.1 100 Continue\r\nx: " + b"a" * MAX_HEAD)


@pytest.mark.parametrize(
    ("raw", "declared"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n", 7),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", None),  # re-framed
        (b"HTTP/1.1 200 OK\r\n\r\n", None),
        (b"HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n", None),  # no body at all
        (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 7\r\n\r\n", None),
    ],
)
def test_the_declared_length_is_one_that_describes_the_body(
    raw: bytes, declared: int | None
) -> None:
    parsed = parse_head(raw, head_request=False)
    assert parsed is not None and parsed[0].declared == declared


def test_an_incomplete_head_waits_for_more() -> None:
    assert parse_head(b"HTTP/1.1 200 OK\r\ncontent-le", head_request=False) is None
    assert parse_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", head_request=False) is None


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        (b"/v1/x\r\nhost: evil", []),
        (b"/v1/x", [(b"x-a", b"1\r\nx-b: 2")]),
        (b"/v1/x", [(b"x-a", b"1\nx-b: 2")]),
        (b"/v1/x", [(b"x-a\r", b"1")]),
        (b"/v1/x", [(b"x-a", b"1\x00")]),
    ],
)
def test_a_request_head_cannot_be_split(target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ProtocolError):
        request_head(b"POST", target, headers)
    assert request_head(b"POST", b"/v1/x", [(b"host", b"h")]) == (
        b"POST /v1/x HTTP/1.1\r\nhost: h\r\n\r\n"
    )
