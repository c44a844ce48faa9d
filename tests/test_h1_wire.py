"""The server's HTTP/1.1 connection by hand (``guards/h1_*``) against h11, by hypothesis.

- requests: the same bytes, cut the same way, give the same events (method,
  target, version, headers, body, end, close), the same refusals with the
  same status, and the same states, as h11's server side with the rules the
  guard added to it before (the oracle below: obs-fold, repeated or bad
  ``Content-Length``, ``Content-Length`` with ``Transfer-Encoding``, versions,
  pipelined bytes bounded and never PAUSED); keep-alive cycles included;
- responses: the same ``Response`` after the same request gives the same
  bytes (head, body framing, end), the same refusals and the same states;
  a response refused for its fields leaves the 500 that follows possible;
- on a real socket, a WebSocket upgrade is answered as the plain GET it is.
"""

import itertools
import re
from typing import Any

import h11
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.asgi import Receive, Scope, Send
from trioproxy.conformance import RawClient
from trioproxy.server import hypercorn_config, serve_app
from trioproxy.server.guards.h1_connection import ServerConnection

_BLANK = re.compile(rb"\n\r?\n")


def _strict(head: bytes) -> int | None:
    """What the guard refused before h11 read a head (its former ``_check_framing``)."""
    if re.search(rb"\r?\n[ \t]", head):
        return 400
    lengths = re.findall(rb"\ncontent-length[ \t]*:([^\r\n]*)", head, re.IGNORECASE)
    if len(lengths) > 1 or (lengths and not lengths[0].strip(b" \t").isdigit()):
        return 400
    if lengths and re.search(rb"\ntransfer-encoding[ \t]*:", head, re.IGNORECASE):
        return 400
    return None


def _states(conn: Any) -> tuple[object, object]:
    theirs = conn.their_state
    # h11 waits for a protocol switch that this server never makes (an Upgrade is ignored).
    switching = h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]  # not in h11.__all__
    return conn.our_state, h11.DONE if theirs is switching else theirs


class _Oracle:
    """h11's server side with the guard's former rules around it."""

    def __init__(self, max_size: int) -> None:
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)
        self.max_size = max_size
        self.refused: tuple[object, object] | None = None
        """The states after a refusal by the guard's rules, which it made inside h11's
        reader: the request never reached h11's state machine, the client is in ERROR."""

    def states(self) -> tuple[object, object]:
        return self.refused or _states(self.conn)

    def next_event(self) -> Any:
        conn = self.conn
        if conn.their_state is h11.IDLE:
            buf = conn.trailing_data[0]
            blank = _BLANK.search(buf)
            if blank is not None and (status := _strict(buf[: blank.start() + 1])):
                self._refuse(status)
        event = conn.next_event()
        if isinstance(event, h11.Request):
            preface = (event.method, event.target, event.http_version) == (b"PRI", b"*", b"2.0")
            if event.http_version not in (b"1.0", b"1.1") and not preface:
                self._refuse(505)
        if event is h11.PAUSED and _states(conn)[1] is h11.DONE:
            if len(conn.trailing_data[0]) > self.max_size:
                self._refuse(400)
            return h11.NEED_DATA
        return event

    def _refuse(self, status: int) -> None:
        ours = self.conn.our_state
        ours = h11.IDLE if ours is h11.SEND_RESPONSE else ours  # the request was never taken
        self.refused = (h11.MUST_CLOSE if ours is h11.DONE else ours, h11.ERROR)
        raise h11.RemoteProtocolError("by the guard", error_status_hint=status)

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        out = self.conn.send(h11.Response(status_code=status, headers=headers)) or b""
        out += self.conn.send(h11.Data(data=body)) or b""
        return out + (self.conn.send(h11.EndOfMessage()) or b"")


class _Ours:
    def __init__(self, max_size: int) -> None:
        self.conn = ServerConnection(max_size)

    def states(self) -> tuple[object, object]:
        return _states(self.conn)

    def next_event(self) -> Any:
        return self.conn.next_event()

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        out = self.conn.send_response(status, headers)
        return out + self.conn.send_data(body) + self.conn.send_end()


def _drive(side: _Oracle | _Ours, pieces: list[bytes], close: bool) -> list[object]:
    """Every event, state and answer while the pieces arrive; a 200 to every whole request."""
    seen: list[object] = []
    for piece in [*pieces, b""] if close else pieces:
        side.conn.receive_data(piece)
        while True:
            try:
                event = side.next_event()
            except h11.RemoteProtocolError as exc:
                return [*seen, ("refused", exc.error_status_hint, side.states())]
            if event is h11.NEED_DATA:
                break
            seen.append(_shown(event, side.conn))
            if isinstance(event, h11.ConnectionClosed):
                return seen
            if isinstance(event, h11.EndOfMessage):
                seen.append(side.respond(200, [(b"content-length", b"2")], b"ok"))
                seen.append(_states(side.conn))
                if _states(side.conn) == (h11.DONE, h11.DONE):
                    side.conn.start_next_cycle()
    return seen


def _shown(event: Any, conn: Any) -> object:
    if isinstance(event, h11.Request):
        head = (event.method, event.target, event.http_version, [tuple(h) for h in event.headers])
        return ("request", head, conn.they_are_waiting_for_100_continue, _states(conn))
    if isinstance(event, h11.Data):
        return ("data", bytes(event.data))
    return (type(event).__name__, _states(conn))


_METHOD = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"PRI", b"G@T", b""])
_TARGET = st.sampled_from([b"/", b"/a?b=c", b"*", b"/caf\xc3\xa9", b"/a b", b"http://x/y"])
_VERSION = st.sampled_from([b"1.1", b"1.1", b"1.0", b"2.0", b"1.2", b"0.9", b"11"])
_NAME = st.sampled_from(
    [
        *(b"Host", b"host", b"Content-Length", b"content-length", b"Transfer-Encoding"),
        *(b"Connection", b"Expect", b"Upgrade", b"X-A", b"x-b", b"Bad Name", b"", b"a\x00"),
    ]
)
_VALUE = st.one_of(
    st.sampled_from(
        [
            *(b"x", b"5", b"0", b"05", b"5, 5", b"abc", b"chunked", b"Chunked", b"gzip"),
            *(b"close", b"keep-alive", b"Close, upgrade", b"100-continue", b"websocket"),
            *(b"h2c", b"", b"a\tb", b"\x01", b"\x7f", b"caf\xc3\xa9", b"a\x00b", b"1" * 21),
            b"a\rb",
        ]
    ),
    st.binary(max_size=6),
)
_OWS = st.sampled_from([b"", b" ", b"\t", b"  "])
_EOL = st.sampled_from([b"\r\n", b"\r\n", b"\n"])
_LINE = st.one_of(
    st.tuples(_NAME, _OWS, _VALUE, _OWS).map(lambda t: t[0] + b":" + t[1] + t[2] + t[3]),
    st.sampled_from([b" folded", b"\tfolded", b"no colon", b"x :y", b"\x00"]),
)


@st.composite
def _chunked(draw: st.DrawFn) -> bytes:
    chunks = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=3))
    ext = draw(st.sampled_from([b"", b";a=1", b" ;x", b'; q="r" ']))
    trailer = draw(st.sampled_from([b"", b"x-t: 1\r\n", b'x-t: 1\r\netag: "e"\r\n', b"bad\r\n"]))
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"xx"]))
    size = draw(st.sampled_from(["%x", "%X", "%04x"]))
    body = b"".join(b"%s%s\r\n%s\r\n" % ((size % len(c)).encode(), ext, c) for c in chunks)
    return body + b"0" + ext + b"\r\n" + trailer + end


@st.composite
def _request(draw: st.DrawFn) -> bytes:
    line = b"%s %s HTTP/%s" % (draw(_METHOD), draw(_TARGET), draw(_VERSION))
    if draw(st.booleans()):
        line = b"GET / HTTP/1.1" if draw(st.booleans()) else b"POST /p HTTP/1.1"
    fields = draw(st.lists(_LINE, max_size=6))
    if draw(st.integers(0, 3)):
        fields.insert(0, b"host: x")
    eol = draw(_EOL)
    head = b"".join(f + eol for f in [line, *fields]) + eol
    body = draw(st.one_of(st.just(b""), st.binary(max_size=12), _chunked()))
    return draw(st.sampled_from([b"", b"\r\n", b"\n"])) + head + body


def _cut(data: bytes, at: list[int]) -> list[bytes]:
    points = sorted({min(a, len(data)) for a in at} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=400, deadline=None)
@given(
    requests=st.lists(_request(), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 400), max_size=4),
    close=st.booleans(),
    max_size=st.sampled_from([16, 64, 16 * 1024]),
)
def test_requests_are_read_as_h11_reads_them_with_the_guards(
    requests: list[bytes], cuts: list[int], close: bool, max_size: int
) -> None:
    pieces = _cut(b"".join(requests), cuts)
    assert _drive(_Ours(max_size), pieces, close) == _drive(_Oracle(max_size), pieces, close)


_RESPONSE_NAME = st.sampled_from(
    [
        *(b"Content-Length", b"content-length", b"Transfer-Encoding", b"Connection"),
        *(b"connection", b"Host", b"X-A", b"content-type", b"Bad Name", b"", b"a:b"),
    ]
)
_RESPONSE_VALUE = st.sampled_from(
    [
        *(b"2", b"0", b"10", b"2, 2", b"2, 3", b"x", b"chunked", b"Chunked", b"gzip", b"close"),
        *(b"keep-alive", b"Keep-Alive, Upgrade", b"text/plain", b"", b" x", b"x ", b"a\tb"),
        *(b"a\r\nx: y", b"a\nb", b"a\x00", b"\x01", b"caf\xc3\xa9", b"1" * 21),
    ]
)


def _attempt(send: Any, *args: Any) -> object:
    try:
        return send(*args)
    except h11.LocalProtocolError:
        return "refused"


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from([b"GET", b"HEAD", b"POST", b"DELETE"]),
    version=st.sampled_from([b"1.1", b"1.0"]),
    request_close=st.booleans(),
    status=st.sampled_from([200, 201, 204, 304, 404, 500, 999, 1000, 99]),
    headers=st.lists(st.tuples(_RESPONSE_NAME, _RESPONSE_VALUE), max_size=5),
    body=st.lists(st.binary(max_size=5), max_size=3),
)
def test_responses_are_the_bytes_h11_writes(
    method: bytes,
    version: bytes,
    request_close: bool,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: list[bytes],
) -> None:
    request = b"%s / HTTP/%s\r\nhost: x\r\n%s\r\n" % (
        method,
        version,
        b"connection: close\r\n" if request_close else b"",
    )
    theirs = h11.Connection(h11.SERVER)
    ours = ServerConnection(16 * 1024)
    seen: list[list[object]] = [[], []]
    for conn in (theirs, ours):
        conn.receive_data(request)
        assert isinstance(conn.next_event(), h11.Request)
        assert isinstance(conn.next_event(), h11.EndOfMessage)
    seen[0].append(_attempt(lambda: theirs.send(h11.Response(status_code=status, headers=headers))))
    seen[1].append(_attempt(ours.send_response, status, headers))
    if seen[0][-1] == "refused":  # then hypercorn answers 500, which must still be possible
        error = [(b"content-length", b"0"), (b"connection", b"close")]
        seen[0].append(_attempt(lambda: theirs.send(h11.Response(status_code=500, headers=error))))
        seen[1].append(_attempt(ours.send_response, 500, error))
    for piece in body:
        seen[0].append(_attempt(theirs.send, h11.Data(data=piece)))
        seen[1].append(_attempt(ours.send_data, piece))
    seen[0].append(_attempt(theirs.send, h11.EndOfMessage()))
    seen[1].append(_attempt(ours.send_end))
    for conn, out in ((theirs, seen[0]), (ours, seen[1])):
        out.append(_states(conn))
    assert seen[1] == seen[0]


async def test_a_websocket_upgrade_is_answered_as_the_get_it_is(nursery: trio.Nursery) -> None:
    """No application here serves WebSockets: the upgrade is ignored (hypercorn
    started a WebSocket stream, which this application cannot answer)."""
    kinds: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        kinds.append(scope["type"])
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"plain"})

    bound = str((await nursery.start(serve_app, app, hypercorn_config("127.0.0.1", 0)))[0])
    host, port = bound.removeprefix("http://").rsplit(":", 1)
    upgrade = (
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    )
    with trio.fail_after(10):
        client = await RawClient.connect(host, int(port))
        await client.send(upgrade)
        await client.read_response()
        client.close()
    assert client.received.startswith(b"HTTP/1.1 200 "), client.received[:200]
    assert client.received.endswith(b"plain")
    assert kinds == ["http"]


async def test_expect_100_continue_gets_100_before_the_body(nursery: trio.Nursery) -> None:
    """hypercorn's read loop sends the 100 through the connection's ``send``, then
    the body is read and echoed; the connection is kept for a second request."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        body = b""
        while (message := await receive())["type"] == "http.request":
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    bound = str((await nursery.start(serve_app, app, hypercorn_config("127.0.0.1", 0)))[0])
    host, port = bound.removeprefix("http://").rsplit(":", 1)
    head = b"POST / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n"
    with trio.fail_after(10):
        client = await RawClient.connect(host, int(port))
        for _ in range(2):
            client.received = b""
            await client.send(head)
            await client.read_until(b"\r\n\r\n")
            assert client.received.startswith(b"HTTP/1.1 100 "), client.received
            client.received = b""
            await client.send(b"hello")
            await client.read_response()
            assert client.received.startswith(b"HTTP/1.1 200 ")
            assert client.received.endswith(b"\r\n\r\nhello")
        client.close()
