"""The tests' one raw HTTP/1.1 client: :class:`trioproxy.conformance.RawClient`
(bytes as written, a stop as a client stops) plus :meth:`Client.request`, which
speaks h11 to read one whole response and leave the connection open, so one
connection carries several requests (a keep-alive connection stays with one
worker and one pooled slot)."""

from typing import NamedTuple

import h11
import trio

from trioproxy.conformance import RawClient

__all__ = ["Answer", "Client"]


class Answer(NamedTuple):
    status: int
    body: bytes


class Client(RawClient):
    """One TCP connection: raw bytes through :meth:`send`, or whole requests
    through :meth:`request`; don't mix the two on one connection."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        super().__init__(sock)
        self._h11 = h11.Connection(h11.CLIENT)
        self._parsed = 0  # how much of ``received`` h11 was given

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> "Client":
        client = await cls.connect(host, port)
        assert isinstance(client, Client)
        return client

    @property
    def local_port(self) -> int:
        return int(self._sock.getsockname()[1])

    async def request(self, method: str, target: str, key: str = "", body: bytes = b"") -> Answer:
        """One request and its whole response; the connection stays open."""
        headers = [("host", "localhost"), ("content-length", str(len(body)))]
        if key:
            headers.append(("authorization", f"Bearer {key}"))
        for message in (
            h11.Request(method=method, target=target, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            await self.send(self._h11.send(message) or b"")
        status, answer = 0, b""
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                if self._parsed == len(self.received):
                    await self.read_more()
                self._h11.receive_data(self.received[self._parsed :])
                self._parsed = len(self.received)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                answer += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._h11.start_next_cycle()
                return Answer(status, answer)

    async def aclose(self) -> None:
        self.close()
