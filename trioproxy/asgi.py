"""The ASGI types and helpers every part shares: the proxy, the simulated upstream, the checker.

Kept loose: hypercorn passes plain dicts.
"""

import math
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = [
    "CLIENT_GONE",
    "CLIENT_HANGUP",
    "ASGIApp",
    "Hangup",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "disconnected",
    "send_json",
]

type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLIENT_GONE = "trioproxy.client_gone"
"""A key of ``scope["extensions"]`` the application may set: a synchronous hook
the server calls the moment the client leaves, before it queues
``http.disconnect`` (:mod:`trioproxy.server.guards.gone`). The server also
looks for it in the scope itself, where the proxy put it before extensions."""

CLIENT_HANGUP = "trioproxy.client_hangup"
"""A key of ``scope["extensions"]`` the server sets in HTTP/1.1 requests (and,
for now, in the scope itself): an object with ``arm(action)``, ``disarm()``,
``fired`` and ``lock``. Once armed, ``action`` runs from a watcher thread,
under ``lock``, the moment the client's connection hangs up, without
waiting for the event loop (:mod:`trioproxy.server.guards.hangup`)."""


class Hangup(Protocol):
    """What :data:`CLIENT_HANGUP` holds."""

    @property
    def lock(self) -> AbstractContextManager[bool]: ...
    @property
    def fired(self) -> bool: ...
    def arm(self, action: Callable[[], None]) -> None: ...
    def disarm(self) -> None: ...


async def disconnected(receive: Receive) -> None:
    """Return once the client has left (``http.disconnect``); other messages are dropped."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_json(
    send: Send, status: int, body: bytes, *, close: bool = False, retry_after_s: float = 0
) -> None:
    """A whole JSON answer in two ASGI messages; ``close`` ends the connection after it."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    if retry_after_s:
        headers.append((b"retry-after", b"%d" % math.ceil(retry_after_s)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
