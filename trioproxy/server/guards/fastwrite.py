"""hypercorn's writes to its clients: cheap when the socket has room, bounded when not.

Every byte hypercorn sends goes through ``TCPServer.protocol_send``: take
the connection's send lock, open a *shielded* cancel scope, ``send_all``.
:class:`trioproxy.server.tcp.GuardedTCPServer` sends with the two functions
here instead.

- **Cost.** Under wrk with a thousand paced streams that was 43% of the
  proxy's CPU, one relayed event at a time. When no other write is under
  way (the lock is free), the bytes now go straight to the non-blocking
  socket with one ``send``; only what the kernel did not take goes the long
  way, in order, since nothing else runs in between. TLS connections always
  take the long way: their bytes must be encrypted first.
- **A client that never reads.** The shield made a write to a client that
  stopped reading wait for ever: nothing could end that request, not an
  admin's cancel, not the server's shutdown after its grace period. The
  long way is now unshielded and bounded: a client that takes no byte for
  ``send_stall_s`` (60 s) is cut off, which ends its request as a client's
  stop (upstream closed, 499); a cancel that comes while a write waits
  aborts the connection, since part of that write may be out already.
  hypercorn 0.18 has no issue on record for this (the nearest,
  pgjones/hypercorn#106, is about a teardown that skips the socket's
  shutdown); regression tests: ``tests/test_abuse.py``, ``*never_reads*``.

Errors are turned into hypercorn's ``Closed`` handling, exactly as hypercorn does.
"""

import contextlib
import os
import struct
from typing import Any

import trio

__all__ = ["send_bounded", "write_now"]


def write_now(stream: object, data: bytes) -> bytes:
    """Write what the socket takes at once, if ``stream`` is a plain TCP stream;
    return what is left to send the long way (all of it under TLS)."""
    if type(stream) is not trio.SocketStream:
        return data
    try:
        sent = os.write(stream.socket.fileno(), data)
    except OSError:  # would block, or broken: the long way says which
        return data
    return data[sent:]


async def send_bounded(stream: object, data: bytes, stall_s: float) -> None:
    """Send all of ``data``, resetting a client that takes no byte for ``stall_s``.

    Raises ``trio.BrokenResourceError`` or ``trio.ClosedResourceError`` as
    ``send_all`` does; a cancel while waiting aborts the connection.
    """
    if type(stream) is trio.SocketStream:
        await _send_plain(stream, data, stall_s)
    else:
        await _send_tls(stream, data, stall_s)


async def _send_plain(stream: trio.SocketStream, data: bytes, stall_s: float) -> None:
    """Send it all, as long as the client takes some bytes every ``stall_s``."""
    sock = stream.socket
    if sock.fileno() < 0:  # reset by a cut write before: what the app sends after is dropped
        raise trio.ClosedResourceError("the connection was reset")
    view = memoryview(data)
    try:
        while view:
            with trio.move_on_after(stall_s):
                await trio.lowlevel.wait_writable(sock)
                try:
                    view = view[os.write(sock.fileno(), view) :]
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise trio.BrokenResourceError(exc) from exc
                continue
            _abort(sock)
            raise trio.ClosedResourceError(f"client took no byte for {stall_s:g} s")
    except trio.Cancelled:
        _abort(sock)
        raise


async def _send_tls(stream: Any, data: bytes, stall_s: float) -> None:
    """TLS cannot be written a piece at a time here: the bound is on the whole write."""
    sock = stream.transport_stream.socket
    try:
        with trio.move_on_after(stall_s):
            await stream.send_all(data)
            return
    except trio.Cancelled:
        _abort(sock)
        raise
    _abort(sock)
    raise trio.ClosedResourceError(f"client took no write for {stall_s:g} s")


def _abort(sock: trio.socket.SocketType) -> None:
    """Reset at once (unsent bytes dropped, no FIN after them); every task waiting
    on the socket wakes with ClosedResourceError."""
    with contextlib.suppress(OSError):
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, _RESET)
    sock.close()


_RESET = struct.pack("ii", 1, 0)
