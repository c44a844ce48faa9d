"""Serving an ASGI app: on the guarded server, or on stock hypercorn.

:func:`serve_app` is the guarded server (:mod:`.worker`), for the proxy and
the simulated upstream; :func:`serve_plain` is hypercorn's own trio worker,
unchanged, for anything that wants the stack's floor. Each is chosen by
calling it: nothing in the process is changed by importing or running
either. Both report the bound addresses through ``task_status`` so tests
can bind port 0.
"""

import logging
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.utils import wrap_app

from trioproxy.asgi import ASGIApp
from trioproxy.server.guards.limits import DEFAULTS, ServerLimits, attach
from trioproxy.server.versions import check_versions
from trioproxy.server.worker import serve_guarded

__all__ = ["hypercorn_config", "serve_app", "serve_plain"]


def hypercorn_config(
    host: str,
    port: int,
    certfile: str | None = None,
    keyfile: str | None = None,
    *,
    keep_alive_s: float = 5.0,
    limits: ServerLimits = DEFAULTS,
) -> Config:
    config = Config()
    attach(config, limits)  # read by the guards, per connection
    # An idle keep-alive connection is closed after this long.
    config.keep_alive_timeout = keep_alive_s
    # hypercorn waits 60 s for a TLS handshake: a cheap way to hold a connection.
    config.ssl_handshake_timeout = 10.0
    config.bind = [f"{host}:{port}"]
    config.certfile = certfile
    config.keyfile = keyfile
    config.accesslog = None  # the relay writes its own line, with the outcome
    # hypercorn logs start-up and its own failures here; its default name,
    # "hypercorn.error", would put "error" on every start-up line.
    config.errorlog = logging.getLogger("trioproxy.server")
    config.include_server_header = False
    # hypercorn's backlog of 100 drops the SYNs of a burst of clients, which
    # then retry a second later: a storm must be accepted at once.
    config.backlog = 4096
    # A relayed answer carries the upstream's own Date; a second one would be noise.
    config.include_date_header = False
    return config


async def serve_app(
    app: ASGIApp,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    grace_over: Callable[[], object] | None = None,
    stop_now_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on the guarded server until the trigger (or a cancel); see
    :func:`~.worker.serve_guarded` for ``grace_over`` and ``stop_now_trigger``."""
    check_versions()
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
    await serve_guarded(
        wrapped,
        config,
        shutdown_trigger=shutdown_trigger,
        grace_over=grace_over,
        stop_now_trigger=stop_now_trigger,
        task_status=task_status,
    )


async def serve_plain(
    app: ASGIApp,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on hypercorn's own trio worker, none of the guards."""
    await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)  # type: ignore[arg-type]
