"""A client's hang-up reaches the upstream while the event loop is busy
(``server/guards/hangup.py``): the upstream here runs in a thread of its own
with blocking sockets, and the test blocks the loop right after each stop,
as a long batch of other streams' work would."""

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from tests.helpers import (
    AccessLog,
    assert_no_tracebacks,
    live_tasks,
    open_fds,
    start_proxy,
    wait_for_baseline,
)
from trioproxy.conformance import RawClient, StopKind, chat_body, request_bytes
from trioproxy.proxy.gateway.config import ProxyConfig

_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
_EVENT = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
_LOOP_BUSY_S = 1.0


@dataclass
class ThreadUpstream:
    """Answers each request with a head and one event (or, with ``silent``, with
    nothing) and notes when its client (the proxy) closed or shut the socket."""

    silent: bool = False
    port: int = 0
    requests: int = 0
    ended_at: list[float] = field(default_factory=list)
    _listener: socket.socket = field(default_factory=socket.socket)

    def serve(self) -> None:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.ended_at.append(time.monotonic())
                    return
                self.requests += data.count(b"HTTP/1.1\r\n")
                if not self.silent:
                    conn.sendall(_HEAD + b"%x\r\n%s\r\n" % (len(_EVENT), _EVENT))


@pytest.fixture
def thread_upstream() -> Iterator[ThreadUpstream]:
    upstream = ThreadUpstream()
    upstream.serve()
    yield upstream
    upstream._listener.close()


@pytest.mark.parametrize("kind", list(StopKind))
@pytest.mark.parametrize("phase", ["streaming", "waiting_headers"])
async def test_a_hang_up_reaches_the_upstream_while_the_loop_is_busy(
    nursery: trio.Nursery,
    thread_upstream: ThreadUpstream,
    access_log: AccessLog,
    caplog: pytest.LogCaptureFixture,
    kind: StopKind,
    phase: str,
) -> None:
    thread_upstream.silent = phase == "waiting_headers"
    config = ProxyConfig(upstream=f"http://127.0.0.1:{thread_upstream.port}/v1")
    host, port = (await start_proxy(nursery, config)).removeprefix("http://").rsplit(":", 1)
    await trio.testing.wait_all_tasks_blocked()  # the server's own tasks are all up
    tasks, fds = live_tasks(), open_fds()
    with trio.fail_after(10):
        for attempt in range(2):  # the second on a pooled connection, when one was kept
            client = await RawClient.connect(host, int(port))
            body = chat_body(True)
            await client.send(request_bytes("POST", "/v1/chat/completions", body, {}))
            if phase == "streaming":
                await client.read_until(_EVENT)
            else:
                while thread_upstream.requests <= attempt:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            ended = len(thread_upstream.ended_at)
            stopped_at = client.stop(kind)
            time.sleep(_LOOP_BUSY_S)  # noqa: ASYNC251 (the loop is busy: none of it runs)
            assert len(thread_upstream.ended_at) == ended + 1, "the upstream never saw the stop"
            assert thread_upstream.ended_at[-1] - stopped_at < _LOOP_BUSY_S / 2
            line = await access_log.wait_for_line(f" 499 outcome=client_closed phase={phase}")
            access_log.lines.remove(line)
            client.close()
        await wait_for_baseline(tasks, fds)  # the shut-down upstream sockets are closed too
    assert thread_upstream.requests == 2  # a stop is never sent upstream again
    assert_no_tracebacks(caplog)


def _wait_until(flag: threading.Event) -> bool:
    return flag.wait(10)


def test_a_keep_alive_connection_is_watched_once_and_each_request_arms_it() -> None:
    """One epoll entry for a connection's life: its requests arm and disarm it
    without touching the epoll; a hang-up between two requests runs nothing,
    and the next request's arm reports it at once; forget removes the entry."""
    from trioproxy.server.guards.hangup import Hangup, HangupWatcher

    watcher = HangupWatcher()
    ours, client = socket.socketpair()
    try:
        hangup = Hangup(ours.fileno(), watcher)
        first, second = threading.Event(), threading.Event()
        hangup.arm(first.set)
        assert hangup.registered and watcher.armed == {ours.fileno(): hangup}
        hangup.disarm()
        hangup.arm(first.set)  # the connection's next request: the same entry
        hangup.disarm()
        assert hangup.registered and not hangup.spent
        client.shutdown(socket.SHUT_WR)  # the client leaves between two requests
        deadline = time.monotonic() + 10
        while not hangup.spent and time.monotonic() < deadline:
            time.sleep(0.005)
        assert hangup.spent and not first.is_set() and not hangup.fired  # nobody to stop
        hangup.arm(second.set)  # a request read before the FIN: told at once
        assert _wait_until(second) and hangup.fired and not first.is_set()
        hangup.forget()
        assert not hangup.registered and watcher.armed == {}
    finally:
        watcher.close()
        ours.close()
        client.close()
