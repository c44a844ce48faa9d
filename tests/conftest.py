"""Fixtures: the simulated upstream and the proxy, served by hypercorn's trio
worker on 127.0.0.1 port 0, in the test's own trio run."""

import logging
import os
import pathlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trustme

from trioproxy.proxy.app import serve_proxy
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.server import hypercorn_config, serve_app
from trioproxy.sim import SimUpstream


@dataclass
class Stack:
    sim: SimUpstream
    upstream: str  # the simulated upstream's origin, http://127.0.0.1:PORT
    proxy: str  # the proxy's origin
    host: str
    port: int


def _split(origin: str) -> tuple[str, int]:
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
    nursery: trio.Nursery, sim: SimUpstream, certfile: str | None = None, keyfile: str | None = None
) -> str:
    hypercorn = hypercorn_config("127.0.0.1", 0, certfile, keyfile)
    (bound,) = await nursery.start(serve_app, sim, hypercorn)
    return str(bound)


@dataclass
class TLSFiles:
    ca: trustme.CA
    certfile: str
    keyfile: str
    cafile: str


@pytest.fixture
def tls(tmp_path: pathlib.Path) -> TLSFiles:
    """A throw-away CA and a certificate for 127.0.0.1 and localhost, as files."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(
        ca, str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"), str(tmp_path / "ca.pem")
    )
    cert.private_key_and_cert_chain_pem.write_to_path(files.certfile)
    cert.private_key_pem.write_to_path(files.keyfile)
    ca.cert_pem.write_to_path(files.cafile)
    return files


@pytest.fixture
async def stack(nursery: trio.Nursery) -> AsyncIterator[Stack]:
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    proxy = await start_proxy(nursery, ProxyConfig(upstream=f"{upstream}/v1"))
    yield Stack(sim, upstream, proxy, *_split(proxy))


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


@pytest.fixture
def access_log() -> Iterator[AccessLog]:
    handler = AccessLog()
    logger = logging.getLogger("trioproxy.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_tasks() -> int:
    """Every task in this trio run, counted through the nursery tree."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def wait_for_baseline(tasks: int, fds: int) -> None:
    """Wait until the run is back to ``tasks`` tasks and ``fds`` open files.

    hypercorn ends a connection's tasks a moment after the upstream closed and
    nothing signals it, so this one test-side wait polls (bounded by the
    caller's ``fail_after``).
    """
    while (live_tasks(), open_fds()) != (tasks, fds):  # noqa: ASYNC110
        await trio.sleep(0.01)


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]
