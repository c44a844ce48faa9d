"""The proxy and the simulated upstream, served by hypercorn's trio worker on
127.0.0.1 port 0 in the test's own trio run, and what tests read of them (the
access log, the run's tasks and open files). The fixtures built on these live
in ``tests/conftest.py``."""

import contextlib
import json
import logging
import os
import ssl
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trustme

from trioproxy.conformance import H2Client
from trioproxy.proxy.app import serve_proxy
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.server import hypercorn_config, serve_app
from trioproxy.sim import SimUpstream

__all__ = [
    "BODY",
    "CHAT",
    "TRANSPORTS",
    "AccessLog",
    "H2Target",
    "Proxied",
    "Stack",
    "TLSFiles",
    "assert_no_tracebacks",
    "h2_target",
    "live_tasks",
    "open_fds",
    "proxied",
    "split_origin",
    "stack_on",
    "start_proxy",
    "start_sim",
    "wait_for_baseline",
]


@dataclass
class Stack:
    sim: SimUpstream
    upstream: str  # the simulated upstream's origin, http://127.0.0.1:PORT
    proxy: str  # the proxy's origin
    host: str
    port: int


def split_origin(origin: str) -> tuple[str, int]:
    host, port = origin.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


async def start_proxy(
    nursery: trio.Nursery,
    config: ProxyConfig,
    certfile: str | None = None,
    keyfile: str | None = None,
    **server: Any,
) -> str:
    """The proxy on 127.0.0.1, any port; ``server`` goes to :func:`hypercorn_config`."""
    hypercorn = hypercorn_config("127.0.0.1", 0, certfile, keyfile, **server)
    (bound,) = await nursery.start(serve_proxy, config, hypercorn)
    return str(bound)


async def start_sim(
    nursery: trio.Nursery,
    sim: SimUpstream,
    certfile: str | None = None,
    keyfile: str | None = None,
    **server: Any,
) -> str:
    """The simulator on 127.0.0.1, any port; ``server`` goes to :func:`hypercorn_config`."""
    hypercorn = hypercorn_config("127.0.0.1", 0, certfile, keyfile, **server)
    (bound,) = await nursery.start(serve_app, sim, hypercorn)
    return str(bound)


@dataclass
class TLSFiles:
    ca: trustme.CA
    certfile: str
    keyfile: str
    cafile: str


class AccessLog(logging.Handler):
    """The proxy's access-log lines, with a way to wait for them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> list[str]:
        while len(self.lines) < count:
            await self._changed.wait()
        return self.lines

    async def wait_for_line(self, needle: str) -> str:
        while not (found := [line for line in self.lines if needle in line]):
            await self._changed.wait()
        return found[0]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_tasks() -> int:
    """Every task in this trio run, counted through the nursery tree."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def wait_for_baseline(tasks: int, fds: int, within_s: float = 30.0) -> None:
    """Wait until the run is back to ``tasks`` tasks and ``fds`` open files.

    hypercorn ends a connection's tasks a moment after the upstream closed and
    nothing signals it, so this one test-side wait polls. Fewer is back too: an
    earlier test's garbage (a socket in a reference cycle) may be collected
    meanwhile and close its file, and a count that fell below the baseline must
    not wait for ever. Past ``within_s`` it fails saying what is left.
    """
    with trio.move_on_after(within_s):
        while live_tasks() > tasks or open_fds() > fds:  # noqa: ASYNC110
            await trio.sleep(0.01)
        return
    raise AssertionError(
        f"not back to {tasks} tasks and {fds} files after {within_s:g} s: "
        f"{live_tasks()} tasks ({', '.join(_task_names())}), files {_fd_targets()}"
    )


def _task_names() -> list[str]:
    def walk(task: trio.lowlevel.Task) -> list[str]:
        children = (t for nursery in task.child_nurseries for t in nursery.child_tasks)
        return [task.name, *(name for child in children for name in walk(child))]

    root = trio.lowlevel.current_root_task()
    return walk(root) if root is not None else []


def _fd_targets() -> dict[str, str]:
    targets = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone already
            targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return targets


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


CHAT = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
"""A chat request, as JSON; ``CHAT | {"stream": True}`` for a stream."""
BODY = json.dumps({"model": "sim-small", "stream": True, "messages": []}).encode()
"""A streaming chat request's body, as bytes."""


class H2Target:
    """A proxy in front of a simulated upstream, reached over h2c or TLS."""

    def __init__(self, sim: SimUpstream, origin: str, ssl_context: ssl.SSLContext | None) -> None:
        self.sim = sim
        host, port = origin.split("://", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.ssl_context = ssl_context

    async def connect(self, window: int | None = None) -> H2Client:
        return await H2Client.connect(
            self.host, self.port, ssl_context=self.ssl_context, window=window
        )


async def h2_target(
    nursery: trio.Nursery, transport: str, tls: TLSFiles, **server: Any
) -> H2Target:
    sim = SimUpstream()
    config = ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1")
    context = None
    if transport == "tls":
        context = ssl.create_default_context(cafile=tls.cafile)
        context.set_alpn_protocols(["h2"])
        proxy = await start_proxy(nursery, config, tls.certfile, tls.keyfile, **server)
    else:
        proxy = await start_proxy(nursery, config, **server)
    return H2Target(sim, proxy, context)


@dataclass
class Proxied:
    """A proxy on its own simulated upstream, and where to reach it."""

    sim: SimUpstream
    origin: str
    host: str
    port: int


async def proxied(
    nursery: trio.Nursery,
    server: dict[str, Any] | None = None,
    sim_server: dict[str, Any] | None = None,
    **config: Any,
) -> Proxied:
    """``config`` goes to ProxyConfig, ``server`` to the proxy's hypercorn_config
    and ``sim_server`` to the simulator's."""
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim, **(sim_server or {}))
    origin = await start_proxy(
        nursery, ProxyConfig(upstream=f"{upstream}/v1", **config), **(server or {})
    )
    host, port = origin.removeprefix("http://").rsplit(":", 1)
    return Proxied(sim, origin, host, int(port))


TRANSPORTS = pytest.mark.parametrize("transport", ["h2c", "tls"])


async def stack_on(nursery: trio.Nursery) -> Stack:
    """A proxy in front of a simulated upstream of its own (the ``stack`` fixture)."""
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    proxy = await start_proxy(nursery, ProxyConfig(upstream=f"{upstream}/v1"))
    return Stack(sim, upstream, proxy, *split_origin(proxy))
