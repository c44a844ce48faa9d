"""A paced upstream for the scale benchmark: one timer feeds every open stream.

Each request gets a chunked SSE answer of TOKENS chat chunks, one every
INTERVAL seconds, then ``[DONE]`` and the last chunk; the connection stays
open for the client's next request. The event bytes are built once; one task
ticks for all of a process's streams with one non-blocking write each, so a
thousand paced streams cost one timer, not a thousand tasks. With
``--procs N`` that many processes share the port (SO_REUSEPORT), so the
upstream is never what limits the events per second.
Run: ``python -m benchmarks.ticker PORT INTERVAL TOKENS [--procs N]``.
"""

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys

import trio

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_DELTA = {"index": 0, "delta": {"content": "tick "}, "finish_reason": None}
_EVENT = {
    "id": "tick",
    "object": "chat.completion.chunk",
    "model": "sim-small",
    "choices": [_DELTA],
}
EVENT = b"data: " + json.dumps(_EVENT, separators=(",", ":")).encode() + b"\n\n"
DONE = b"data: [DONE]\n\n"
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


def framed(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def serve(port: int, interval: float, tokens: int) -> None:
    every, last = framed(EVENT), framed(EVENT + DONE) + b"0\r\n\r\n"
    streams: dict[trio.SocketStream, list[object]] = {}  # stream -> [tokens sent, done event]

    async def handle(stream: trio.SocketStream) -> None:
        # The client left: wrk resets every connection at its end.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await answer(stream)

    async def answer(stream: trio.SocketStream) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = _LENGTH.search(head)
            while length and len(buffer) < int(length[1]):
                buffer += await stream.receive_some(65536)
            buffer = buffer[int(length[1]) if length else 0 :]
            await stream.send_all(HEAD)
            done = trio.Event()
            streams[stream] = [0, done]
            await done.wait()
            if stream.socket.fileno() < 0:  # the tick found it gone
                return

    async def tick() -> None:
        due = trio.current_time()
        while True:
            due += interval  # on a fixed beat: the work of one tick does not delay the next
            await trio.sleep_until(due)
            for stream, state in list(streams.items()):
                sent = state[0] + 1  # type: ignore[operator]
                try:
                    os.write(stream.socket.fileno(), last if sent >= tokens else every)
                except OSError:  # gone, or not reading: drop it
                    sent = tokens
                    stream.socket.close()
                state[0] = sent
                if sent >= tokens:
                    del streams[stream]
                    state[1].set()  # type: ignore[attr-defined]

    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    await sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        await trio.serve_listeners(handle, [trio.SocketListener(sock)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("interval", type=float)
    parser.add_argument("tokens", type=int)
    parser.add_argument("--procs", type=int, default=1)
    args = parser.parse_args()
    argv = [sys.executable, "-m", "benchmarks.ticker", *sys.argv[1:4]]
    others = [subprocess.Popen(argv) for _ in range(args.procs - 1)]

    def stop(signum: int, frame: object) -> None:
        for other in others:
            other.terminate()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    trio.run(serve, args.port, args.interval, args.tokens)


if __name__ == "__main__":
    main()
