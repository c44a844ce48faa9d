"""The polling design of the note trioproxy grew from: check for a disconnect every 100 ms.

Starlette + httpx on uvicorn, with the upstream call in a task that a loop
of ``request.is_disconnected()`` every 100 ms cancels. It notices in every
phase, but up to 100 ms late by design. Run:
``python -m benchmarks.peers.polling_proxy UPSTREAM PORT``.
"""

import asyncio
import sys
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

POLL_S = 0.1
_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


def build(upstream: str) -> Starlette:
    client = httpx.AsyncClient(
        timeout=None, limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000)
    )

    async def poll_until_gone(request: Request, work: asyncio.Task[object]) -> None:
        while not work.done():
            if await request.is_disconnected():
                work.cancel()
                return
            await asyncio.sleep(POLL_S)

    async def relay(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        outgoing = client.build_request(
            request.method,
            upstream + request.url.path[len("/v1") :],
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        opening = asyncio.ensure_future(client.send(outgoing, stream=True))
        poller = asyncio.ensure_future(poll_until_gone(request, opening))
        try:
            response = await opening
        except asyncio.CancelledError:
            return Response(status_code=499)
        finally:
            poller.cancel()
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP}

        async def body() -> AsyncIterator[bytes]:
            chunks = response.aiter_raw()
            try:
                while True:
                    chunk = asyncio.ensure_future(anext(chunks))
                    watch = asyncio.ensure_future(poll_until_gone(request, chunk))
                    try:
                        yield await chunk
                    except (StopAsyncIteration, asyncio.CancelledError):
                        return
                    finally:
                        watch.cancel()
            finally:
                await response.aclose()

        return StreamingResponse(body(), status_code=response.status_code, headers=out_headers)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/v1/{path:path}", relay, methods=methods)])


if __name__ == "__main__":
    upstream, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(build(upstream), host="127.0.0.1", port=port, log_level="warning")
