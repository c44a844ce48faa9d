"""The upstream pool on in-memory streams (no sockets): which connections go back
to the idle list. The pool, its exchanges and their state machine are the real
ones; only the connection is in memory (``trio.testing.memory_stream_pair``), its
far end an upstream that answers each request head with the bytes it is given.

The rule checked (as httpcore's ``test_http11_connection_unread_response``
does): a connection is reused only after an answer handed out whole, with
keep-alive; an answer left unread, an aborted exchange and ``connection:
close`` each close it.
"""

import contextlib
import ssl
from collections.abc import Callable

import pytest
import trio
import trio.testing
from trio.testing import MemoryReceiveStream, MemorySendStream

from trioproxy.proxy.upstream.connection import Connection, Origin
from trioproxy.proxy.upstream.errors import Aborted
from trioproxy.proxy.upstream.pool import Deadlines, UpstreamPool
from trioproxy.proxy.upstream.state import State

type Pair = trio.StapledStream[MemorySendStream, MemoryReceiveStream]

ORIGIN: Origin = ("http", "upstream.test", 80)
DEADLINES = Deadlines(connect_s=5, headers_s=5, idle_s=5)
WHOLE = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"


class MemoryConnection(Connection):
    """A connection on one end of an in-memory pair: closing it closes both
    directions, so the far end reads EOF (a socket's close and shut-down alike)."""

    __slots__ = ("closed", "pair")

    def __init__(self, pair: Pair) -> None:
        super().__init__(pair)
        self.pair = pair
        self.closed = False

    def still_open(self) -> bool:
        return not self.closed and trio.current_time() <= self.idle_until

    def close(self) -> None:
        self.closed = True
        self.pair.send_stream.close()
        self.pair.receive_stream.close()

    def shut_down(self) -> None:
        self.close()


class MemoryPool(UpstreamPool):
    """The pool, with in-memory connections whose upstream writes ``answer`` for
    each request head it reads."""

    def __init__(self, nursery: trio.Nursery, answer: bytes) -> None:
        super().__init__(ssl.create_default_context())
        self._nursery = nursery
        self.answer = answer
        self.opened: list[MemoryConnection] = []
        self.requests: list[bytes] = []

    async def open_connection(self, origin: Origin) -> Connection:
        near, far = trio.testing.memory_stream_pair()
        conn = MemoryConnection(near)
        self.opened.append(conn)
        self._nursery.start_soon(self._upstream, far)
        await trio.lowlevel.checkpoint()
        return conn

    async def _upstream(self, far: Pair) -> None:
        buffer = b""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                while b"\r\n\r\n" not in buffer:
                    if not (data := await far.receive_some()):
                        return  # the pool closed the connection
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.requests.append(head)
                await far.send_all(self.answer)


async def _get(pool: MemoryPool, read: bool = True) -> State:
    """One GET; its body read whole (or left unread); the exchange's last state."""
    exchange = pool.exchange(ORIGIN, b"GET", b"/v1/models", [], b"", DEADLINES)
    async with exchange.open() as response:
        if read:
            await response.read(1 << 20)
    return exchange.state


async def test_a_whole_answer_with_keep_alive_is_reused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    pool = MemoryPool(nursery, WHOLE)
    with trio.fail_after(10):
        assert await _get(pool) is State.DONE
        assert pool.idle_connections() == 1
        assert await _get(pool) is State.DONE
    assert len(pool.opened) == 1 and len(pool.requests) == 2


@pytest.mark.parametrize(
    "answer",
    [WHOLE, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello"],
    ids=["all-arrived", "half-arrived"],
)
async def test_an_unread_response_is_never_reused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, answer: bytes
) -> None:
    """Left with its body unread, even when every byte of it has arrived: the
    next exchange gets a new connection."""
    pool = MemoryPool(nursery, answer)
    with trio.fail_after(10):
        assert await _get(pool, read=False) is State.CLOSED
        assert pool.idle_connections() == 0 and pool.opened[0].closed
        pool.answer = WHOLE
        assert await _get(pool) is State.DONE
    assert len(pool.opened) == 2


async def test_a_body_read_in_part_is_never_reused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    pool = MemoryPool(nursery, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
    with trio.fail_after(10):
        exchange = pool.exchange(ORIGIN, b"GET", b"/", [], b"", DEADLINES)
        async with exchange.open() as response:
            assert await response.next_chunk() == b"hello"
        assert exchange.state is State.CLOSED
    assert pool.idle_connections() == 0 and pool.opened[0].closed


@pytest.mark.parametrize("when", ["after-the-whole-body", "mid-body"])
async def test_an_aborted_exchange_is_never_reused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, when: str
) -> None:
    """A stop's abort: after the body was read whole (the exchange not yet over),
    or while it waits for the rest of the body, which then fails as Aborted."""
    answer = WHOLE if when == "after-the-whole-body" else WHOLE.replace(b": 5", b": 10")
    pool = MemoryPool(nursery, answer)
    with trio.fail_after(10):
        exchange = pool.exchange(ORIGIN, b"GET", b"/", [], b"", DEADLINES)
        async with exchange.open() as response:
            assert await response.next_chunk() == b"hello"
            if when == "mid-body":
                async with trio.open_nursery() as inner:
                    inner.start_soon(_abort_when_blocked, exchange.abort)
                    with pytest.raises(Aborted):
                        await response.next_chunk()
            else:
                assert await response.next_chunk() is None
                exchange.abort()
        assert exchange.state is State.SHUT_DOWN
    assert pool.idle_connections() == 0 and pool.opened[0].closed


async def _abort_when_blocked(abort: Callable[[], None]) -> None:
    await trio.testing.wait_all_tasks_blocked()
    abort()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\ncontent-length: 5\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        WHOLE + b"HTTP/1.1 200 OK\r\n",  # bytes past the answer's end
    ],
    ids=["connection-close", "close-in-a-list", "http-1.0", "bytes-after-the-body"],
)
async def test_an_answer_that_ends_the_connection_is_not_reused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, answer: bytes
) -> None:
    pool = MemoryPool(nursery, answer)
    with trio.fail_after(10):
        exchange = pool.exchange(ORIGIN, b"GET", b"/", [], b"", DEADLINES)
        async with exchange.open() as response:
            assert await response.read(1 << 20) == b"hello"
        assert exchange.state is State.CLOSED
    assert pool.idle_connections() == 0 and pool.opened[0].closed


async def test_an_idle_connection_past_its_keep_alive_expiry_is_not_taken(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The pool's own keep-alive expiry (5 s), on virtual time."""
    pool = MemoryPool(nursery, WHOLE)
    with trio.fail_after(30):
        await _get(pool)
        await trio.sleep(4.9)
        await _get(pool)  # within the expiry: the same connection
        assert len(pool.opened) == 1
        await trio.sleep(5.1)
        await _get(pool)
    assert len(pool.opened) == 2 and pool.opened[0].closed
