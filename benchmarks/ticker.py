"""A paced upstream for the scale benchmark: one timer feeds every open stream.

Each accepted request gets SSE response headers, then every INTERVAL seconds
one chat chunk whose content is the upstream's ``time.monotonic()`` when it
sent it, so a client can tell how late each token arrived. One task ticks for
all streams: a thousand paced streams cost one timer, not a thousand.
Run: ``python -m benchmarks.ticker PORT INTERVAL TOKENS``.
"""

import json
import os
import sys
import time

import trio

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"connection: close\r\n\r\n"
)


def chunk(i: int) -> bytes:
    body = {
        "id": "tick",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "sim-small",
        "choices": [
            {"index": 0, "delta": {"content": f"{time.monotonic():.6f} "}, "finish_reason": None}
        ],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


async def main(port: int, interval: float, tokens: int) -> None:
    streams: dict[trio.SocketStream, int] = {}

    async def accept(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            data = await stream.receive_some(65536)
            if not data:
                return
            request += data
        await stream.send_all(HEAD)
        streams[stream] = 0
        done = trio.Event()
        stream_done[stream] = done
        await done.wait()
        await stream.aclose()

    stream_done: dict[trio.SocketStream, trio.Event] = {}

    async def tick() -> None:
        while True:
            await trio.sleep(interval)
            for stream, sent in list(streams.items()):
                try:
                    last = sent + 1 >= tokens
                    data = chunk(sent) + (b"data: [DONE]\n\n" if last else b"")
                    # One non-blocking write per stream per tick: no task switch per token.
                    os.write(stream.socket.fileno(), data)
                    streams[stream] = sent + 1
                    if last:
                        raise BrokenPipeError
                except (BlockingIOError, OSError):
                    streams.pop(stream, None)
                    stream_done.pop(stream).set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        await trio.serve_tcp(accept, port, host="127.0.0.1", backlog=4096)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]))
