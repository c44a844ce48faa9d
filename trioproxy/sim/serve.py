"""The simulated upstream on its own port, on the same hardened server as the proxy."""

from collections.abc import Awaitable, Callable

import trio

from trioproxy.server import hypercorn_config, serve_app
from trioproxy.sim.upstream import SimUpstream

__all__ = ["serve_sim"]


async def serve_sim(
    sim: SimUpstream,
    host: str = "127.0.0.1",
    port: int = 0,
    certfile: str | None = None,
    keyfile: str | None = None,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``sim`` until the trigger (or a cancel); ``task_status`` gets the bound URLs."""
    config = hypercorn_config(host, port, certfile, keyfile)
    await serve_app(sim, config, shutdown_trigger=shutdown_trigger, task_status=task_status)
