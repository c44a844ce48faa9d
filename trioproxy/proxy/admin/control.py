"""The admin: list and cancel requests in flight in every worker, and a live page.

``GET /admin/`` is a page with no data of its own: it asks for the admin key
and sends it as ``Authorization: Bearer`` on every call, so the key never
sits in a URL or a log. The page reads ``GET /admin/events``, an event stream
with a snapshot of the whole server every :data:`EVERY_S` seconds, and
cancels with ``DELETE /admin/requests/{id}``. It needs no network beyond the
proxy: no CDN, no build step; it is ``admin.html`` with its script and styles
in ``admin.js`` and ``admin.css`` beside it (nothing inline, so the page's
``Content-Security-Policy`` can be ``default-src 'self'``).

The event stream is raw ASGI, not Quart, for the reason the relay is: only
raw ASGI sees ``http.disconnect``, so a closed page ends its stream at once.
"""

import importlib.resources
import json
import math
from collections.abc import Callable
from typing import Any

import trio

from trioproxy.asgi import Receive, Scope, Send, disconnected
from trioproxy.proxy.admin.cluster import Cluster
from trioproxy.proxy.admin.metrics import Metrics
from trioproxy.proxy.core.errors import send_json_error
from trioproxy.proxy.gateway.gate import bearer_ok

__all__ = ["ASSETS", "EVERY_S", "Admin"]

EVERY_S = 1.0
"""How often the page's event stream sends a snapshot."""

_FILES = importlib.resources.files("trioproxy.proxy.admin")
_PAGE = _FILES.joinpath("admin.html")
ASSETS = {"admin.js": "text/javascript; charset=utf-8", "admin.css": "text/css; charset=utf-8"}
"""The page's script and styles, by name, with their content types."""


class Admin:
    def __init__(
        self, cluster: Cluster, metrics: Metrics, admin_keys: Callable[[], frozenset[bytes]]
    ) -> None:
        """``admin_keys``: the keys in use now (a reload may change them)."""
        self.cluster = cluster
        self._metrics = metrics
        self._keys = admin_keys

    @property
    def enabled(self) -> bool:
        return bool(self._keys())

    def allowed(self, scope: Scope) -> bool:
        keys = self._keys()
        return bool(keys) and bearer_ok(scope, keys)

    @staticmethod
    def page() -> bytes:
        return _PAGE.read_bytes()

    @staticmethod
    def asset(name: str) -> bytes:
        """One of :data:`ASSETS`."""
        if name not in ASSETS:
            raise ValueError(f"not an admin asset: {name!r}")
        return _FILES.joinpath(name).read_bytes()

    async def snapshot(self) -> dict[str, Any]:
        merged = await self.cluster.listing()
        # JSON has no infinity: the last bucket's bound is null.
        buckets = [
            (le if math.isfinite(le) else None, n)
            for le, n in self._metrics.stop_propagation_buckets()
        ]
        return merged | {"workers": self.cluster.workers, "stop_propagation": buckets}

    async def events(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /admin/events``: a snapshot now and every :data:`EVERY_S` s, till the page goes."""
        if not self.allowed(scope):
            await send_json_error(
                send, 401, "admin key missing or wrong", "invalid_request_error", "invalid_api_key"
            )
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_end_when_gone, receive, nursery.cancel_scope)
            while True:
                data = json.dumps(await self.snapshot(), separators=(",", ":")).encode()
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: %s\n\n" % data,
                        "more_body": True,
                    }
                )
                await trio.sleep(EVERY_S)


async def _end_when_gone(receive: Receive, scope: trio.CancelScope) -> None:
    await disconnected(receive)
    scope.cancel()
