"""One HTTP/1.1 connection to an upstream, and how it is opened: the socket,
its idle check, its close and its shut-down from any thread."""

import contextlib
import errno
import functools
import ipaddress
import os
import select
import socket

import trio

__all__ = ["Connection", "Origin", "connect", "framed", "receive_plain", "send_plain"]

type Origin = tuple[str, str, int]
"""Scheme, host, port: from the configuration only."""


class Connection:
    __slots__ = ("idle_until", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.idle_until = 0.0

    @property
    def _socket(self) -> trio.socket.SocketType:
        stream = self.stream
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        assert isinstance(stream, trio.SocketStream)
        return stream.socket

    def still_open(self) -> bool:
        """Not expired, and nothing to read: a readable idle socket is one the upstream closed."""
        if trio.current_time() > self.idle_until:
            return False
        poller = select.poll()  # select() cannot take a descriptor past 1023
        poller.register(self._socket.fileno(), select.POLLIN)
        return not poller.poll(0)

    def close(self) -> None:
        """At once, with no TLS close_notify to wait on; a task blocked on it wakes.
        A second close costs nothing."""
        self._socket.close()

    def shut_down(self) -> None:
        """From any thread: the upstream sees its client go at once (a FIN), and the
        loop's task blocked on the socket wakes; the loop closes it later."""
        sock = self._socket
        if sock.fileno() >= 0:
            # Not connected yet, or reset already: nothing left to tell.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


async def receive_plain(stream: trio.SocketStream, max_bytes: int) -> bytes:
    """``stream.receive_some(max_bytes)`` for a plain TCP stream, without its layers.

    Run once per relayed event: trio's conflict detector, its error-translating
    context manager and its socket method wrapper cost about as much as the
    ``recv`` itself. The same steps remain, in trio's order: a checkpoint if
    cancelled, one non-blocking read, a wait for readable only if it would
    block, and a shielded checkpoint after a read that did not wait. Errors are
    trio's: ``ClosedResourceError`` for a closed socket, ``BrokenResourceError``
    (from the ``OSError``) for a broken one. One task reads a connection at a time.
    """
    sock = stream.socket
    await trio.lowlevel.checkpoint_if_cancelled()
    waited = False
    while True:
        try:
            data = os.read(sock.fileno(), max_bytes)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            waited = True
            continue
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                raise trio.ClosedResourceError("this socket was already closed") from None
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data


async def send_plain(stream: trio.SocketStream, data: bytes) -> None:
    """``stream.send_all(data)`` for a plain TCP stream: what the socket takes at
    once goes with one ``write``, the rest (rare: a request head and body past the
    socket's buffer) the long way. A checkpoint if cancelled first, as ``send_all``;
    the errors are trio's, as in :func:`receive_plain`."""
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        sent = os.write(stream.socket.fileno(), data)
    except BlockingIOError:
        sent = 0
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.ENOTSOCK):
            raise trio.ClosedResourceError("this socket was already closed") from None
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
    if sent < len(data):
        await stream.send_all(memoryview(data)[sent:])


async def connect(host: str, port: int) -> trio.SocketStream:
    """A TCP connection; to an address (the common upstream on a private
    network) without ``open_tcp_stream``'s name lookup and its nursery of attempts."""
    family = _address_family(host)
    if family is None:
        return await trio.open_tcp_stream(host, port)
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


@functools.cache
def _address_family(host: str) -> int | None:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None


@functools.cache
def _host_header(origin: Origin) -> tuple[bytes, bytes]:
    scheme, host, port = origin
    default = 443 if scheme == "https" else 80
    if _address_family(host) == socket.AF_INET6:
        host = f"[{host}]"
    return (b"host", (host if port == default else f"{host}:{port}").encode("ascii"))


def framed(
    origin: Origin, headers: list[tuple[bytes, bytes]], method: bytes, body: bytes
) -> list[tuple[bytes, bytes]]:
    framed = [_host_header(origin), *headers]
    if body or method in (b"POST", b"PUT", b"PATCH"):
        framed.append((b"content-length", b"%d" % len(body)))
    return framed
