"""The floor of a relay on trio: bytes copied from the upstream to the client, nothing else.

One upstream connection per client connection; a request is read to its
``Content-Length``, sent on as it came, and the answer's bytes are copied
back read by read until its chunked end. No parsing beyond that, no
headers changed, no stop detection, no HTTP server: what any trio relay
spends per event on its two sockets and its scheduler, and what the scale
benchmark sets a proxy on this stack against. It serves the scale
benchmark's paced upstream only (chunked answers, requests with a length).
Run: ``python -m benchmarks.peers.bare_trio_relay UPSTREAM PORT``.
"""

import re
import sys
import urllib.parse

import trio

_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
_END = b"\r\n0\r\n\r\n"


async def relay(client: trio.SocketStream, upstream: tuple[str, int]) -> None:
    up = await trio.open_tcp_stream(*upstream)
    buffer = b""
    try:
        while True:
            while b"\r\n\r\n" not in buffer:
                if not (data := await client.receive_some(65536)):
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = int(found[1]) if (found := _LENGTH.search(head)) else 0
            while len(buffer) < length:
                if not (data := await client.receive_some(65536)):
                    return
                buffer += data
            await up.send_all(head + b"\r\n\r\n" + buffer[:length])
            buffer = buffer[length:]
            tail = b""
            while not tail.endswith(_END):
                if not (data := await up.receive_some(65536)):
                    return
                await client.send_all(data)
                tail = (tail + data)[-len(_END) :]
    except trio.BrokenResourceError:
        pass  # wrk resets its connections at the end of a run
    finally:
        await trio.aclose_forcefully(up)


if __name__ == "__main__":
    parsed = urllib.parse.urlsplit(sys.argv[1])
    target = (parsed.hostname or "127.0.0.1", parsed.port or 80)
    trio.run(trio.serve_tcp, lambda stream: relay(stream, target), int(sys.argv[2]))
