"""A client's leaving acted on in the step that reads it.

hypercorn learns of a stop in its connection's read task (EOF, a reset, an
HTTP/2 ``RST_STREAM``) and passes it to the application as an
``http.disconnect`` message on a channel. The relay's watcher takes it from
there, one trio batch later, and only then closes the upstream. In a storm
of stops each batch holds the relay work of every other stream, so that
hop was a stop's longest wait.

Here the protocol, as it closes a stream, first calls the request's
:data:`~trioproxy.asgi.CLIENT_GONE` hook, if the application put one in the
scope's ``extensions`` (or, for now, in the scope itself), before hypercorn
queues the message: the upstream socket closes in the very step that saw
the client go. The message is still queued and the watcher still runs; the
hook only comes first. The hook must be synchronous and must not raise.
"""

from collections.abc import Callable
from typing import Any

from trioproxy.asgi import CLIENT_GONE

__all__ = ["call_client_gone"]


def call_client_gone(stream: object) -> None:
    """Call the hook of the request ``stream`` carries, if it has one."""
    scope: dict[str, Any] | None = getattr(stream, "scope", None)  # none before the head
    if scope is None:
        return
    extensions = scope.get("extensions")
    hook: Callable[[], None] | None = None
    if extensions is not None:
        hook = extensions.get(CLIENT_GONE)
    if hook is None:
        hook = scope.get(CLIENT_GONE)  # where the proxy put it before extensions
    if hook is not None:
        hook()
