"""One fuzz case against the live proxy, from its first byte to the checks after it.

A case runs in its own ``trio.run``: the raw upstream serves, another client
samples ``/health`` on fresh connections all along (so a flood's stall is
seen while it lasts, not only after), the case's client sends and reads,
and once it has left the proxy must list no request in flight. Then: the
process is alive and its log keeps the rule (:meth:`LiveProxy.check`), no
``/health`` took a stall's time, and the family's own checks hold.
"""

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from hypothesis import target
from hypothesis.control import currently_in_test_context

from tests.fuzzing.live import STALL_MS, LiveProxy, health_ms, wait_settled
from tests.helpers.upstream import ScriptedUpstream

__all__ = ["CASE_S", "SLOW_MS", "Fuzz", "exchange", "p99"]

SLOW_MS = 100.0
"""Issue 18's bound for another client's /health; held by the median of a case's
samples (one sample can lose its core to another process for that long, half
of them do not) and by the p99 of a family's (tests/test_fuzz.py)."""
CASE_S = 8.0
"""One case's client, from its first byte to its last read."""
_SAMPLE_EVERY_S = 0.01

type Client = Callable[[int], Awaitable[bytes]]
"""Sends a case to the proxy's port; returns what the proxy answered."""


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class Fuzz:
    proxy: LiveProxy
    upstream: ScriptedUpstream
    samples: list[float] = field(default_factory=list)
    """Every /health of this family's cases, in ms."""

    def run(self, client: Client) -> bytes:
        """Run one case; the process and log checks come first, then the stall bound.

        A case that failed leaves a fresh process to the next: a stalled proxy
        takes tens of seconds to recover, and the next case must not be
        blamed for it (nor hypothesis see the same case pass and fail)."""
        self.proxy.ensure_running()
        self.upstream.received.clear()
        found: list[float] = []
        answer, error = trio.run(self._case, client, found)
        worst = max(found)
        if currently_in_test_context():  # hypothesis steers toward stalls
            target(worst, label="slowest /health, ms")
        try:
            self.proxy.check()
            assert worst < STALL_MS, f"another client's /health took {worst:.0f} ms"
            middle = sorted(found)[len(found) // 2]
            assert len(found) < 3 or middle < SLOW_MS, f"/health median {middle:.0f} ms: {found}"
            if error is not None:
                raise error
        except BaseException:
            self.proxy.restart()
            raise
        self.samples += found
        return answer

    async def _case(self, client: Client, found: list[float]) -> tuple[bytes, Exception | None]:
        port, answer, error = self.proxy.port, b"", None
        async with trio.open_nursery() as nursery:
            await nursery.start(self.upstream.serve)
            with trio.CancelScope() as case:
                nursery.start_soon(_sample, port, found, case)
                try:
                    with trio.fail_after(CASE_S + 1):
                        answer = await client(port)
                    await wait_settled(port)
                except Exception as exc:  # reported after the process and log checks
                    error = exc
            nursery.cancel_scope.cancel()
        if not case.cancelled_caught:
            found.append(await health_ms(port))  # and once more with the case wholly done
        return answer, error


async def _sample(port: int, found: list[float], case: trio.CancelScope) -> None:
    """Another client's /health, all through the case; a stall ends the case at once."""
    while True:
        found.append(await health_ms(port))
        if found[-1] >= STALL_MS:
            case.cancel()
            return
        await trio.sleep(_SAMPLE_EVERY_S)


_HEAD_END = re.compile(rb"\r\n\r\n")
_LENGTH = re.compile(rb"(?im)^content-length: *(\d+)\r?$")


def _complete(data: bytes | bytearray) -> bool:
    """A whole final answer with a length or chunked framing: no need to wait for more."""
    while data[9:10] == b"1" and (end := _HEAD_END.search(data)):
        data = data[end.end() :]
    end = _HEAD_END.search(data)
    if not end:
        return False
    head, body = data[: end.start()], data[end.end() :]
    if length := _LENGTH.search(head):
        return len(body) >= int(length[1])
    return b"chunked" in head.lower() and body.endswith(b"0\r\n\r\n")


async def exchange(port: int, pieces: list[bytes], *, idle_s: float, whole: bool) -> bytes:
    """Send ``pieces`` on one connection and read until the proxy closes or goes quiet.

    ``whole``: stop reading at the end of a whole HTTP/1.1 answer, too. The read
    runs along the writes: a proxy that answers early is never blocked on us."""
    received = bytearray()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:

        async def read() -> None:
            while not (whole and _complete(received)):
                with trio.move_on_after(idle_s):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    received.extend(chunk)
                    continue
                return  # quiet for idle_s: the proxy waits for more, or answers no more

        with trio.move_on_after(CASE_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                try:
                    for piece in pieces:
                        await stream.send_all(piece)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the proxy closed on an early piece: what it said is read
    return bytes(received)
