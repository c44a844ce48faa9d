"""The ceiling of this stack: stock hypercorn's trio worker answering a canned body.

It reads the request body and answers what the upstream would (the same
bytes, fetched once from it at start), with no upstream and none of
trioproxy's guards: what a proxy on this stack is measured against. Run:
``python -m benchmarks.peers.bare_hypercorn UPSTREAM PORT [guarded]``;
``guarded`` serves the same app on trioproxy's own server
(:func:`trioproxy.server.serve_app`), to measure the server alone.
"""

import sys
import urllib.request

import trio
from hypercorn.trio import serve

from trioproxy.asgi import ASGIApp, Receive, Scope, Send
from trioproxy.server import hypercorn_config, serve_app


def canned(upstream: str) -> tuple[bytes, bytes]:
    request = urllib.request.Request(
        f"{upstream}/chat/completions", data=b"{}", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request) as answer:
        return answer.headers.get("content-type", "application/json").encode(), answer.read()


def build(content_type: bytes, body: bytes) -> ASGIApp:
    head = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return app


if __name__ == "__main__":
    upstream, port = sys.argv[1], int(sys.argv[2])
    app = build(*canned(upstream))
    config = hypercorn_config("127.0.0.1", port)
    if sys.argv[3:] == ["guarded"]:
        trio.run(serve_app, app, config)
    else:
        trio.run(serve, app, config)  # type: ignore[arg-type]
