"""A raw-socket HTTP/1.1 client that stops the way chat clients do.

Chat clients stop by going away: FIN when their receive buffer is empty, RST
when unread bytes sit in it (or when they set ``SO_LINGER`` to zero). This
client makes either happen on purpose, and notes the ``time.monotonic()`` of
the stop so a caller can time how long the upstream took to notice.
"""

import enum
import json
import socket
import struct
import time
from typing import Any

import trio

__all__ = ["RawClient", "StopKind", "chat_body", "request_bytes", "sim_model"]


class StopKind(enum.StrEnum):
    FIN = "FIN"
    RST = "RST"


def request_bytes(
    method: str, path: str, body: bytes, headers: dict[str, str], host: str = "localhost"
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sim_model(settings: dict[str, str]) -> str:
    """The model name that carries ``x-sim-*`` settings through proxies that drop headers."""
    options = [
        f"{k.removeprefix('x-sim-')}={v}" for k, v in settings.items() if k.startswith("x-sim-")
    ]
    return ";".join(["sim-small", *options])


def chat_body(stream: bool, **extra: Any) -> bytes:
    request = {
        "model": "sim-small",
        "stream": stream,
        "messages": [{"role": "user", "content": "hello"}],
    } | extra
    return json.dumps(request).encode()


class RawClient:
    """One TCP connection, read by hand."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        self.received = b""
        self.eof = False

    @classmethod
    async def connect(cls, host: str, port: int) -> "RawClient":
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await sock.connect((host, port))
        return cls(sock)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = await self._sock.send(view)
            view = view[sent:]

    async def read_more(self) -> bool:
        """Read what arrives next; False at EOF."""
        try:
            data = await self._sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.received += data
        self.eof = not data
        return bool(data)

    async def read_until(self, marker: bytes, count: int = 1) -> None:
        """Read until ``marker`` has been seen ``count`` times (or EOF)."""
        while self.received.count(marker) < count and await self.read_more():
            pass

    async def read_response(self) -> None:
        """Read one whole response (by Content-Length, or chunked) and leave the
        connection open, as a client's keep-alive pool does."""
        await self.read_until(b"\r\n\r\n")
        head, _, _ = self.received.partition(b"\r\n\r\n")
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            await self.read_until(b"\r\n0\r\n\r\n")
            return
        length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(self.received) < len(head) + 4 + length and await self.read_more():
            pass

    async def read_all(self) -> bytes:
        while await self.read_more():
            pass
        return self.received

    def stop(self, kind: StopKind) -> float:
        """Close as a client that stops does; returns the monotonic time of the stop."""
        if kind is StopKind.RST:
            # Linger on with a zero timeout: close() sends RST, not FIN.
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            at = time.monotonic()
            self._sock.close()
        else:
            at = time.monotonic()
            self._sock.shutdown(socket.SHUT_WR)
        return at

    def close(self) -> None:
        self._sock.close()

    @property
    def status(self) -> int:
        head = self.received.split(b"\r\n", 1)[0]
        return int(head.split()[1]) if head.startswith(b"HTTP/") else 0

    @property
    def body(self) -> bytes:
        """The response body, de-chunked when it was sent chunked."""
        head, _, rest = self.received.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" not in head.lower():
            return rest
        out = []
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out.append(rest[:size])
            rest = rest[size + 2 :]
        return b"".join(out)
