"""The simulated upstream on its own port, on the server its caller names.

``server="guarded"`` is the proxy's own server (:func:`trioproxy.server.serve_app`):
its hang-up watcher times a client's close the moment the kernel reports
it, so a checker busy with a storm's thousand clients times the proxy and
not its own batches. ``server="plain"`` is stock hypercorn
(:func:`trioproxy.server.serve_plain`): closes are timed when the loop sees
them.
"""

from collections.abc import Awaitable, Callable
from typing import Literal

import trio

from trioproxy.server import hypercorn_config, serve_app, serve_plain
from trioproxy.sim.upstream import SimUpstream

__all__ = ["SimServer", "serve_sim"]

type SimServer = Literal["guarded", "plain"]


async def serve_sim(
    sim: SimUpstream,
    host: str = "127.0.0.1",
    port: int = 0,
    certfile: str | None = None,
    keyfile: str | None = None,
    *,
    server: SimServer,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``sim`` on ``server`` until the trigger (or a cancel); ``task_status``
    gets the bound URLs."""
    config = hypercorn_config(host, port, certfile, keyfile)
    serve = serve_app if server == "guarded" else serve_plain
    await serve(sim, config, shutdown_trigger=shutdown_trigger, task_status=task_status)
