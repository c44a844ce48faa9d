"""A bare HTTP/2 client (h2c, prior knowledge) over a trio socket, able to reset one stream."""

import socket
from collections.abc import Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import trio

__all__ = ["H2Client"]


class H2Client:
    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.data: dict[int, bytearray] = {}
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.ended: set[int] = set()
        self.reset_by_server: set[int] = set()
        self.closed = False

    @classmethod
    async def connect(cls, host: str, port: int) -> "H2Client":
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await sock.connect((host, port))
        client = cls(sock)
        client.conn.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        view = memoryview(data)
        while view:
            view = view[await self._sock.send(view) :]

    async def request(
        self,
        path: str,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        end: bool = True,
        content_length: int | None = None,
    ) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        length = len(body) if content_length is None else content_length
        self.conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":path", path),
                (":scheme", "http"),
                (":authority", "localhost"),
                ("content-length", str(length)),
                *headers.items(),
            ],
            end_stream=False,
        )
        if body or end:
            self.conn.send_data(stream_id, body, end_stream=end)
        await self.flush()
        self.data[stream_id] = bytearray()
        return stream_id

    async def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self.conn.send_data(stream_id, data, end_stream=end)
        await self.flush()

    async def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        await self.flush()

    async def pump(self) -> None:
        """Read once from the socket and record what the events say."""
        data = await self._sock.recv(65536)
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.headers[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.reset_by_server.add(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
        await self.flush()

    async def pump_until(self, done: Callable[[], bool]) -> None:
        while not done():
            if self.closed:
                raise ConnectionError("server closed the HTTP/2 connection")
            await self.pump()

    def close(self) -> None:
        self._sock.close()
