"""The ASGI callable types the raw handlers use (kept loose: hypercorn passes plain dicts)."""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["CLIENT_GONE", "ASGIApp", "Message", "Receive", "Scope", "Send"]

type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLIENT_GONE = "trioproxy.client_gone"
"""A scope entry: a synchronous hook hypercorn's read task calls the moment the
client leaves, before it queues ``http.disconnect`` (:mod:`trioproxy.guards.gone`)."""
