"""A bare HTTP/2 client (h2c with prior knowledge, or TLS with ALPN h2) over a trio
stream, able to reset one stream, and to behave as odd clients do: send any
``:method`` and ``:path`` bytes, or never open its flow-control window."""

import ssl
from collections.abc import Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import trio

__all__ = ["H2Client"]


class H2Client:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._sending = trio.Lock()
        config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False)
        self.conn = h2.connection.H2Connection(config)
        self.data: dict[int, bytearray] = {}
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.ended: set[int] = set()
        self.reset_by_server: dict[int, int] = {}
        """Streams the server reset, with its error code."""
        self.goaway: int | None = None
        """The error code of the server's GOAWAY, once one came."""
        self.closed = False
        self.reads = True
        """False: a client that never reads, its flow-control window stays shut."""

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        window: int | None = None,
    ) -> "H2Client":
        """Connect; ``window=0`` announces a closed flow-control window and never opens it."""
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_hostname=host)
            await stream.do_handshake()
            assert stream.selected_alpn_protocol() == "h2"
        client = cls(stream)
        client.conn.initiate_connection()
        if window is not None:
            client.reads = False
            code = h2.settings.SettingCodes.INITIAL_WINDOW_SIZE
            client.conn.update_settings({code: window})
        await client.flush()
        return client

    async def flush(self) -> None:
        async with self._sending:  # a reader task and a writer may flush at once
            data = self.conn.data_to_send()
            if not data:
                return
            try:
                await self._stream.send_all(data)
            except trio.BrokenResourceError as exc:  # as a socket would say it
                raise ConnectionError(f"HTTP/2 connection broken: {exc}") from exc

    async def request(
        self,
        path: str | bytes,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        end: bool = True,
        content_length: int | None = None,
        method: str | bytes = "POST",
        flush: bool = True,
        protocol: str | None = None,
    ) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        length = len(body) if content_length is None else content_length
        extended = [(":protocol", protocol)] if protocol else []
        self.conn.send_headers(
            stream_id,
            [
                *extended,
                (":method", method),
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
        if flush:
            await self.flush()
        self.data[stream_id] = bytearray()
        return stream_id

    async def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self.conn.send_data(stream_id, data, end_stream=end)
        await self.flush()

    async def reset(self, stream_id: int, *, flush: bool = True) -> None:
        self.conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        if flush:
            await self.flush()

    async def pump(self) -> None:
        """Read once from the connection and record what the events say."""
        try:
            data = await self._stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.headers[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                if self.reads:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.reset_by_server[event.stream_id] = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event.error_code
                self.closed = True
        await self.flush()

    async def pump_until(self, done: Callable[[], bool]) -> None:
        while not done():
            if self.closed:
                raise ConnectionError("server closed the HTTP/2 connection")
            await self.pump()

    def close(self) -> None:
        # Like a socket's close: no TLS close_notify, no waiting.
        stream = self._stream
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        assert isinstance(stream, trio.SocketStream)
        stream.socket.close()
