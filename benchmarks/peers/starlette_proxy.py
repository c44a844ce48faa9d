"""A hand-written Starlette + httpx proxy, as people write it: the usual peer.

``StreamingResponse`` over ``client.send(..., stream=True)``. Starlette
notices a disconnect only while it streams the body, so a stop while the
upstream has not answered (headers, or a whole non-streaming answer) is
never seen. Run: ``python -m benchmarks.peers.starlette_proxy UPSTREAM PORT [fast]``;
``fast`` runs uvicorn with uvloop and httptools.
"""

import sys

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


def build(upstream: str) -> Starlette:
    client = httpx.AsyncClient(
        timeout=None, limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000)
    )

    async def relay(request: Request) -> StreamingResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        outgoing = client.build_request(
            request.method,
            upstream + request.url.path[len("/v1") :],
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        response = await client.send(outgoing, stream=True)
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP}
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            headers=out_headers,
            background=BackgroundTask(response.aclose),
        )

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/v1/{path:path}", relay, methods=methods)])


if __name__ == "__main__":
    # "fast": uvloop and httptools, as users of uvicorn[standard] run it.
    upstream, port, *speed = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
    loop, http = ("uvloop", "httptools") if speed == ["fast"] else ("asyncio", "h11")
    app = build(upstream)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop=loop, http=http)
