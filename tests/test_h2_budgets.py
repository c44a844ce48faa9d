"""HTTP/2 frame budgets and ignored priorities, over h2c and HTTP/2 over TLS.

The floods are frames built by hand on a raw connection (:class:`RawH2`),
the way an attacker writes them: a client's h2 stack would refuse to send
most of them. Refused h2c upgrades and quiet header loggers are in
``test_h2_upgrade.py``.
"""

import contextlib
import logging
from collections.abc import Callable

import h2.errors
import hpack
import httpx
import pytest
import trio
import trio.testing
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.helpers import BODY, TRANSPORTS, H2Target, TLSFiles, assert_no_tracebacks, h2_target
from trioproxy.conformance import RawClient
from trioproxy.server.guards import ServerLimits
from trioproxy.server.guards.frames import WINDOW_UPDATES_PER_DATA_FRAME, FrameBudget
from trioproxy.sim.render import Render

CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class RawH2:
    """One HTTP/2 connection written frame by frame; the server's frames parsed as they come."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self.frames: list[Frame] = []
        self.eof = False

    @classmethod
    async def connect(cls, target: H2Target) -> "RawH2":
        stream: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
        if target.ssl_context is not None:
            stream = trio.SSLStream(stream, target.ssl_context, server_hostname=target.host)
        raw = cls(stream)
        await raw.send(PREFACE, SettingsFrame(0))
        return raw

    async def send(self, *frames: Frame | bytes) -> None:
        await self._stream.send_all(
            b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        )

    async def read_until(self, done: Callable[[], bool]) -> None:
        while not done() and not self.eof:
            try:
                data = await self._stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            self.eof = not data
            self._buffer += data
            while len(self._buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
                if len(self._buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self._buffer[9 : 9 + length]))
                del self._buffer[: 9 + length]
                self.frames.append(frame)

    async def read_until_closed(self) -> None:
        await self.read_until(lambda: False)

    @property
    def goaway(self) -> int | None:
        codes = [f.error_code for f in self.frames if isinstance(f, GoAwayFrame)]
        return codes[-1] if codes else None

    async def aclose(self) -> None:
        stream = self._stream  # the socket itself: no TLS close_notify, no waiting
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        await stream.aclose()


def headers(stream_id: int, path: str, *, method: str = "GET", end: bool = True) -> HeadersFrame:
    frame = HeadersFrame(stream_id)
    frame.data = hpack.Encoder().encode(
        [(":method", method), (":path", path), (":scheme", "http"), (":authority", "x")]
    )
    frame.flags.add("END_HEADERS")
    if end:
        frame.flags.add("END_STREAM")
    return frame


def priority(
    stream_id: int, depends_on: int = 0, weight: int = 15, exclusive: bool = False
) -> Frame:
    frame = PriorityFrame(stream_id)
    frame.depends_on, frame.stream_weight, frame.exclusive = depends_on, weight, exclusive
    return frame


def siblings_reweighted(count: int) -> list[Frame]:
    """999 streams never opened, made siblings, then re-weighted over and over."""
    return [priority(1 + 2 * (i % 999), weight=i % 256) for i in range(count)]


def window_update() -> Frame:
    frame = WindowUpdateFrame(0)
    frame.window_increment = 1
    return frame


def ping() -> Frame:
    frame = PingFrame(0)
    frame.opaque_data = b"12345678"
    return frame


# Written by hand: hyperframe's ExtensionFrame serializes a length of 0 with its body.
PRIORITY_UPDATE = b"\x00\x00\x07\x10\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x01u=0"


def empty_data() -> Frame:
    return DataFrame(1)  # no data, no END_STREAM


# Each kind: what opens the flood (a stream for DATA, a header block for
# CONTINUATION), and one frame of the flood.
FLOODS: dict[str, tuple[list[Frame], Callable[[], Frame | bytes]]] = {
    "PRIORITY": ([], lambda: priority(7, weight=200)),
    "WINDOW_UPDATE": ([], window_update),
    "SETTINGS": ([], lambda: SettingsFrame(0)),
    "PING": ([], ping),
    "empty DATA": ([headers(1, "/v1/chat/completions", method="POST", end=False)], empty_data),
    "CONTINUATION": ([HeadersFrame(1)], lambda: ContinuationFrame(1)),  # a block never ended
    # PRIORITY_UPDATE (RFC 9218, type 0x10): a type h2 does not know, read and ignored.
    "GOAWAY, ALTSVC or unknown-type": ([], lambda: PRIORITY_UPDATE),
}  # resets: test_abuse.py::test_h2_rapid_reset_opens_nothing_upstream_and_ends_in_goaway
LIMIT = 20
SMALL = ServerLimits(
    h2_max_priority_per_s=LIMIT,
    h2_max_window_updates_per_s=LIMIT,
    h2_max_settings_per_s=LIMIT,
    h2_max_pings_per_s=LIMIT,
    h2_max_empty_data_per_s=LIMIT,
    h2_max_continuations_per_s=LIMIT,  # under h2's own 64 a block, so the budget is what acts
    h2_max_other_frames_per_s=LIMIT,
)


@TRANSPORTS
@pytest.mark.parametrize("kind", FLOODS)
async def test_a_frame_flood_ends_in_goaway_and_spares_the_next_connection(
    nursery: trio.Nursery,
    tls: TLSFiles,
    caplog: pytest.LogCaptureFixture,
    transport: str,
    kind: str,
) -> None:
    target = await h2_target(nursery, transport, tls, limits=SMALL)
    opening, frame = FLOODS[kind]
    with trio.fail_after(10):
        flood = await RawH2.connect(target)
        await flood.send(*opening, *(frame() for _ in range(2 * LIMIT)))
        await flood.read_until_closed()
        await flood.aclose()
        client = await target.connect()
        after = await client.request("/v1/chat/completions", {"x-sim-id": "after"}, BODY)
        await client.pump_until(lambda: after in client.ended)
        client.close()
    assert flood.goaway == CALM
    assert target.sim.fate("after").outcome == "completed"
    warnings = [r.getMessage() for r in caplog.records if "frames a second" in r.getMessage()]
    assert len(warnings) == 1 and f"over {LIMIT} {kind} frames" in warnings[0], warnings
    assert_no_tracebacks(caplog)


@TRANSPORTS
async def test_an_exclusive_priority_chain_is_ignored(
    nursery: trio.Nursery, tls: TLSFiles, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    """hypercorn built a tree node for each: past 1,000 streams, or deep
    enough, the connection ended in a fault (``RecursionError``)."""
    limits = ServerLimits(h2_max_priority_per_s=1_000_000)  # the tree alone, not the budget
    target = await h2_target(nursery, transport, tls, limits=limits)
    chain = [
        priority(s, depends_on=s - 2, weight=s % 256, exclusive=True) for s in range(3, 3001, 2)
    ]
    with trio.fail_after(30):
        raw = await RawH2.connect(target)
        await raw.send(priority(1), *chain, *siblings_reweighted(2000), headers(3001, "/health"))
        await raw.read_until(
            lambda: any(f.stream_id == 3001 and "END_STREAM" in f.flags for f in raw.frames)
        )
        await raw.aclose()
    (answer,) = [f for f in raw.frames if isinstance(f, HeadersFrame) and f.stream_id == 3001]
    assert (b":status", b"200") in list(hpack.Decoder().decode(answer.data, raw=True))
    assert not [r for r in caplog.records if "fault" in r.getMessage()]
    assert_no_tracebacks(caplog)


def _flood_bytes(kind: str) -> tuple[bytes, bytes]:
    if kind == "PRIORITY":  # the stall: a chain would end the connection in a fault first
        return b"", b"".join(f.serialize() for f in siblings_reweighted(2000))
    opening, frame = FLOODS[kind]
    one = frame()
    return b"".join(f.serialize() for f in opening), (
        one if isinstance(one, bytes) else one.serialize()
    ) * 2000


async def _flood(
    target: H2Target, kind: str, ended: list[int | None], started: trio.Event, closed: trio.Event
) -> None:
    """Flood one connection until the server closes it, then the next one, for ever."""
    opening, frames = _flood_bytes(kind)
    while True:
        raw = await RawH2.connect(target)
        await raw.send(opening)
        async with trio.open_nursery() as nursery:

            async def write(raw: RawH2 = raw) -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while True:
                        await raw.send(frames)
                        started.set()

            nursery.start_soon(write)
            await raw.read_until_closed()
            nursery.cancel_scope.cancel()
        ended.append(raw.goaway)
        closed.set()
        await raw.aclose()


async def _health(target: H2Target) -> int:
    client = await RawClient.connect(target.host, target.port)
    await client.send(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    await client.read_all()
    client.close()
    return client.status


@pytest.mark.parametrize("kind", ["PRIORITY", "WINDOW_UPDATE", "empty DATA"])
async def test_health_answers_during_a_flood(
    nursery: trio.Nursery, tls: TLSFiles, kind: str
) -> None:
    """With the default budgets. Before them, a PRIORITY flood kept ``/health``
    from answering for seconds, and nothing ever closed the flood."""
    target = await h2_target(nursery, "h2c", tls)
    ended: list[int | None] = []
    started, closed = trio.Event(), trio.Event()
    with trio.fail_after(30):
        async with trio.open_nursery() as flooding:
            flooding.start_soon(_flood, target, kind, ended, started, closed)
            await started.wait()
            for _ in range(30):
                with trio.fail_after(1):  # generous: about 2 ms without a flood
                    assert await _health(target) == 200
            await closed.wait()
            flooding.cancel_scope.cancel()
    assert set(ended) == {CALM}, ended


async def test_normal_h2_clients_stay_within_the_budgets(
    nursery: trio.Nursery, tls: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that returns credit for every DATA frame, on its stream and on
    the connection, pings and sends a browser's priority tree, downloading
    while siblings stream: never near a budget. The fixed WINDOW_UPDATE
    allowance is set low, so only the credit for DATA sent can carry it."""
    limits = ServerLimits(h2_max_window_updates_per_s=10)
    target = await h2_target(nursery, "tls", tls, limits=limits)
    with trio.fail_after(30):
        client = await target.connect()
        client.reads = False  # credit returned below, for every frame
        for stream_id in (3, 5, 7, 9, 11):  # Firefox's idle streams
            client.conn.prioritize(stream_id, weight=200, depends_on=0)
        streams = [
            await client.request(
                "/v1/chat/completions",
                {"x-sim-id": f"s{i}", "x-sim-tokens": "400", "x-sim-interval": "0.0005"},
                BODY,
            )
            for i in range(4)
        ]
        updates = pings = 0
        while not all(s in client.ended for s in streams):
            before = {s: len(client.data.get(s, b"")) for s in streams}
            await client.pump()
            assert not client.closed
            for stream_id in streams:
                got = len(client.data.get(stream_id, b"")) - before[stream_id]
                if got and stream_id not in client.ended:
                    client.conn.increment_flow_control_window(got, stream_id=stream_id)
                if got:
                    client.conn.increment_flow_control_window(got)
                    updates += 2 - (stream_id in client.ended)
            if pings < 5:
                client.conn.ping(b"ping%04d" % pings)
                pings += 1
            await client.flush()
        client.close()
    assert client.goaway is None
    assert updates > 10 * limits.h2_max_window_updates_per_s, updates
    assert all(target.sim.fate(f"s{i}").outcome == "completed" for i in range(4))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_httpx_over_h2_is_untouched_by_the_default_budgets(
    nursery: trio.Nursery, tls: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    target = await h2_target(nursery, "tls", tls)
    assert target.ssl_context is not None
    origin = f"https://{target.host}:{target.port}"
    bodies: dict[int, bytes] = {}
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=origin, http2=True, verify=target.ssl_context) as c:

            async def one(i: int) -> None:
                headers = {"x-sim-id": f"x{i}", "x-sim-tokens": "2000", "x-sim-interval": "0"}
                async with c.stream(
                    "POST", "/v1/chat/completions", content=BODY, headers=headers
                ) as r:
                    assert r.http_version == "HTTP/2"
                    bodies[i] = b"".join([chunk async for chunk in r.aiter_raw()])

            async with trio.open_nursery() as streams:
                for i in range(10):
                    streams.start_soon(one, i)
            assert (await c.get("/health")).status_code == 200
    for i in range(10):
        assert bodies[i] == Render("chat", "sim-small", f"x{i}").stream(2000)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_budget_counts_per_second_and_credits_data_sent() -> None:
    clock = trio.testing.MockClock()
    limits = ServerLimits(h2_max_pings_per_s=3, h2_max_window_updates_per_s=2)
    credit = WINDOW_UPDATES_PER_DATA_FRAME

    async def main() -> None:
        budget = FrameBudget(limits)
        assert [budget.spend("PING") for _ in range(4)] == [True, True, True, False]
        clock.jump(1.0)
        assert budget.spend("PING")  # a new second, a new budget
        budget.data_frame_sent()  # the client may answer it
        assert [budget.spend("WINDOW_UPDATE") for _ in range(2 + credit + 1)] == [True] * (
            2 + credit
        ) + [False]

        budget = FrameBudget(limits)
        budget.data_frame_sent()
        budget.data_frame_sent()
        clock.jump(1.0)  # the answers come in the next second: the credit carries over
        assert all(budget.spend("WINDOW_UPDATE") for _ in range(2 + credit))
        clock.jump(1.0)  # once: what was earned two seconds ago is gone
        assert [budget.spend("WINDOW_UPDATE") for _ in range(3)] == [True, True, False]

    trio.run(main, clock=clock)
