"""A client's leaving acted on in the step that reads it.

hypercorn learns of a stop in its connection's read task (EOF, a reset, an
HTTP/2 ``RST_STREAM``) and passes it to the application as an
``http.disconnect`` message on a channel. The relay's watcher takes it from
there, one trio batch later, and only then closes the upstream. In a storm
of stops each batch holds the relay work of every other stream, so that
hop was a stop's longest wait.

Here the read task itself calls the request's :data:`CLIENT_GONE` hook, if
the application put one in its scope, before hypercorn queues the message:
the upstream socket closes in the very step that saw the client go. The
message is still queued and the watcher still runs; the hook only comes
first. The hook must be synchronous and must not raise.
"""

from typing import Any

from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.http_stream import HTTPStream

from trioproxy.asgi import CLIENT_GONE

__all__ = ["install"]


def install() -> None:
    handle = HTTPStream.handle

    async def handle_gone_first(self: Any, event: Any) -> None:
        if type(event) is StreamClosed:
            scope = getattr(self, "scope", None)  # none before the request's head
            hook = scope.get(CLIENT_GONE) if scope is not None else None
            if hook is not None:
                hook()
        await handle(self, event)

    setattr(HTTPStream, "handle", handle_gone_first)  # noqa: B010 (mypy: method-assign)
