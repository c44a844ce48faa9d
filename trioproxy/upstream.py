"""The upstream connection pool: per origin, a list of idle HTTP/1.1 connections.

httpcore's own pool scans every connection for every queued request, and
under concurrency hands one idle connection to several requests, which then
fail over (``ConnectionNotAvailable``) and scan again. Measured with wrk at
32 connections it was half of the proxy's CPU. An LLM proxy talks to few
origins and caps nothing, so a last-in-first-out list of idle connections per
origin does the job: take one that has not expired, or open a new one.

A connection goes back to the list only if its response was read to the end
(httpcore marks it idle). A response closed early — the client left — closes
the connection instead, and the upstream sees it go. HTTP/2 is never spoken:
httpcore sends no RST_STREAM on cancel.
"""

import ssl
from collections.abc import AsyncIterator

import httpcore
import httpx
import trio

# httpx's own mapping of httpcore exceptions to httpx ones (pinned httpx < 0.29).
from httpx._transports.default import map_httpcore_exceptions

__all__ = ["UpstreamTransport"]

type _Key = tuple[bytes, bytes, int]  # httpcore.Origin is not hashable
type _Idle = dict[_Key, list[httpcore.AsyncHTTP11Connection]]


class UpstreamTransport(httpx.AsyncBaseTransport):
    def __init__(self, ssl_context: ssl.SSLContext, keepalive_expiry_s: float = 5.0) -> None:
        self._ssl_context = ssl_context
        self._keepalive_expiry_s = keepalive_expiry_s
        self._backend = httpcore.TrioBackend()
        self._idle: _Idle = {}

    def idle_connections(self) -> int:
        return sum(len(conns) for conns in self._idle.values())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key: _Key = (url.raw_scheme, url.raw_host, url.port or _default_port(url))
        origin = httpcore.Origin(*key)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with map_httpcore_exceptions():
            connection = await self._take_idle(key) or await self._open(origin, core_request)
            response = await connection.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response, connection, self._idle.setdefault(key, [])),
            extensions=response.extensions,
        )

    async def _take_idle(self, key: _Key) -> httpcore.AsyncHTTP11Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            # has_expired() also notices a connection the upstream closed.
            if not connection.has_expired():
                return connection
            await _close(connection)
        return None

    async def _open(
        self, origin: httpcore.Origin, request: httpcore.Request
    ) -> httpcore.AsyncHTTP11Connection:
        timeouts = request.extensions.get("timeout", {})
        stream = await self._backend.connect_tcp(
            origin.host.decode("ascii"), origin.port, timeout=timeouts.get("connect")
        )
        if origin.scheme == b"https":
            try:
                stream = await stream.start_tls(
                    self._ssl_context,
                    server_hostname=origin.host.decode("ascii"),
                    timeout=timeouts.get("connect"),
                )
            except BaseException:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                raise
        return httpcore.AsyncHTTP11Connection(origin, stream, self._keepalive_expiry_s)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                await _close(connection)
        self._idle.clear()


class _Body(httpx.AsyncByteStream):
    """The response body; closing it hands the connection back, or closes it."""

    def __init__(
        self,
        response: httpcore.Response,
        connection: httpcore.AsyncHTTP11Connection,
        idle: list[httpcore.AsyncHTTP11Connection],
    ) -> None:
        self._response = response
        self._connection = connection
        self._idle = idle

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with map_httpcore_exceptions():
            async for chunk in self._response.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        # Shielded: a cancelled relay must still close (not leak) the socket.
        with trio.CancelScope(shield=True):
            await self._response.aclose()
        if self._connection.is_idle():
            self._idle.append(self._connection)
        # Otherwise httpcore has closed it: the body was not read to the end.


async def _close(connection: httpcore.AsyncHTTP11Connection) -> None:
    with trio.CancelScope(shield=True):
        await connection.aclose()


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80
