"""The ASGI types and helpers every part shares: the proxy, the simulated upstream, the checker.

Kept loose: hypercorn passes plain dicts.
"""

import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import trio

__all__ = [
    "CLIENT_GONE",
    "CLIENT_HANGUP",
    "GONE_ALREADY",
    "ASGIApp",
    "Hangup",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "disconnected",
    "give_client_gone",
    "gone_already",
    "hangup_of",
    "send_json",
]

type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLIENT_GONE = "trioproxy.client_gone"
"""An entry of ``scope["extensions"]`` the application sets: a synchronous hook
the server's read task calls the moment the client leaves, before it queues
``http.disconnect``. It must not raise. (Set at the scope's top level too,
for a server that still reads it there.)"""

CLIENT_HANGUP = "trioproxy.client_hangup"
"""An entry of ``scope["extensions"]`` the server sets in HTTP/1.1 requests (a
server of before extensions put it in the scope itself): a :class:`Hangup`.
Once armed, its action runs from a watcher thread the moment the client's
connection hangs up, without waiting for the event loop."""

GONE_ALREADY = "trioproxy.gone_already"
"""An entry of ``scope["extensions"]`` the server may set: a synchronous callable
that takes an ``http.disconnect`` already queued for the request without
blocking, and says whether it took one."""


class Hangup(Protocol):
    """What :data:`CLIENT_HANGUP` holds: ``arm`` and ``disarm`` are called from the loop.
    The proxy needs nothing else of it (no lock of its own, no ``fired``)."""

    def arm(self, action: Callable[[], None]) -> None:
        """Run ``action`` from the watcher thread if the client hangs up before disarm."""

    def disarm(self) -> None:
        """After this returns, the action never runs."""


def _extensions(scope: Scope) -> MutableMapping[str, Any]:
    extensions = scope.get("extensions")
    if extensions is None:
        extensions = scope["extensions"] = {}
    return extensions


def give_client_gone(scope: Scope, hook: Callable[[], None]) -> None:
    """Hand the server the :data:`CLIENT_GONE` hook for this request."""
    _extensions(scope)[CLIENT_GONE] = hook
    scope[CLIENT_GONE] = hook  # a server that reads the top-level key


def hangup_of(scope: Scope) -> Hangup | None:
    """The server's :data:`CLIENT_HANGUP` for this request, if it watches one:
    from ``scope["extensions"]``, else from the scope itself."""
    hangup = (scope.get("extensions") or {}).get(CLIENT_HANGUP)
    return hangup if hangup is not None else scope.get(CLIENT_HANGUP)


def gone_already(receive: Receive, scope: Scope | None = None) -> bool:
    """Whether the client's disconnect is already waiting in the server's queue
    (taken if so): the server's :data:`GONE_ALREADY`, if it offers one.

    Else, for hypercorn, whose ``receive`` is a trio memory channel's: taking a
    message without blocking is safe there (unlike a ``receive()`` under a
    zero timeout, which can lose it). Called once the body is whole, when the
    only message left to come is the disconnect. Any other server: False.
    """
    offered = (scope.get("extensions") or {}).get(GONE_ALREADY) if scope is not None else None
    if offered is not None:
        return bool(offered())
    channel = getattr(receive, "__self__", None)
    if not isinstance(channel, trio.MemoryReceiveChannel):
        return False
    try:
        message = channel.receive_nowait()
    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
        return False
    return bool(message["type"] == "http.disconnect")


async def disconnected(receive: Receive) -> None:
    """Return once the client has left (``http.disconnect``); other messages are dropped."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    *,
    close: bool = False,
    retry_after_s: float = 0,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """A whole JSON answer in two ASGI messages; ``close`` ends the connection after
    it; ``headers`` come after the content's own."""
    headers = (
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        *headers,
    )
    if close:
        headers += ((b"connection", b"close"),)
    if retry_after_s:
        headers += ((b"retry-after", b"%d" % math.ceil(retry_after_s)),)
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body, "more_body": False})
