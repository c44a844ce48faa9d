"""A stand-in proxy for the verdict's tests: a TCP relay that passes a client's stop on late.

``python -m tests.helpers.late_relay UPSTREAM PORT --late-ms N|never [--first-only]``
relays bytes both ways, as a layer-4 proxy does. When a client goes away (FIN,
RST, or a write to it fails), the relay closes that client's upstream
connection ``N`` ms later, or never (it then closes only when the upstream
ends); with ``--first-only``, only the first connection that carried a request
is late, and every later one closes at once. That makes a proxy that is
correct but slow, one with a single outlier, and one that once never closes,
each deterministically.
"""

import argparse
import itertools
from urllib.parse import urlsplit

import trio

_CHUNK = 65536


async def relay(
    client: trio.SocketStream, first: bytes, upstream: tuple[str, int], late_s: float | None
) -> None:
    """One client connection whose first bytes were ``first``; ``late_s`` None: never
    pass its stop on."""
    gone = trio.Event()
    async with await trio.open_tcp_stream(*upstream) as up, trio.open_nursery() as nursery:

        async def down() -> None:
            while True:
                try:
                    data = await up.receive_some(_CHUNK)
                except trio.BrokenResourceError:
                    data = b""
                if not data:  # the upstream ended its side: nothing left to relay
                    nursery.cancel_scope.cancel()
                    return
                try:
                    await client.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    gone.set()
                    return

        async def upward() -> None:
            data = first
            while data:
                await up.send_all(data)
                try:
                    data = await client.receive_some(_CHUNK)
                except trio.BrokenResourceError:
                    data = b""
            gone.set()

        nursery.start_soon(down)
        nursery.start_soon(upward)
        await gone.wait()
        if late_s is None:
            await trio.sleep_forever()
        await trio.sleep(late_s)
        nursery.cancel_scope.cancel()


async def main(args: argparse.Namespace) -> None:
    split = urlsplit(args.upstream)
    upstream = (split.hostname or "127.0.0.1", split.port or 80)
    late_s = None if args.late_ms == "never" else float(args.late_ms) / 1000
    requests = itertools.count()

    async def handle(client: trio.SocketStream) -> None:
        async with client:
            try:
                first = await client.receive_some(_CHUNK)
            except trio.BrokenResourceError:
                return
            if not first:
                return  # the run's "does it accept yet" probe: no request, not counted
            late = late_s if next(requests) == 0 or not args.first_only else 0.0
            await relay(client, first, upstream, late)

    await trio.serve_tcp(handle, args.port, host="127.0.0.1")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("upstream")
    parser.add_argument("port", type=int)
    parser.add_argument("--late-ms", required=True)
    parser.add_argument("--first-only", action="store_true")
    trio.run(main, parser.parse_args())
