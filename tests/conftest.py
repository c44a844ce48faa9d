"""Fixtures: the simulated upstream and the proxy, served by hypercorn's trio
worker on 127.0.0.1 port 0, in the test's own trio run. The helpers they are
built from (and that tests import) live in ``tests/helpers``."""

import logging
import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
import trustme
from trio.testing import MockClock

from tests.helpers import AccessLog, Stack, TLSFiles, stack_on


@pytest.fixture
def idle_clock() -> MockClock:
    """Virtual time for a timeout test on real sockets: a test that asks for it runs
    on this clock (pytest-trio passes a test's one Clock argument to ``trio.run``),
    and the clock jumps to the next deadline once the whole run has waited 0.1 s of
    real time. With a threshold of 0 it would jump while a thread (a name lookup,
    the hang-up watcher) is still at work, and fire a timeout nobody earned. So a
    60 s default is exercised as it is, in a fraction of a real second, and a
    ``fail_after`` bound is virtual too."""
    return MockClock(autojump_threshold=0.1)


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
    yield await stack_on(nursery)


@pytest.fixture
def access_log() -> Iterator[AccessLog]:
    handler = AccessLog()
    logger = logging.getLogger("trioproxy.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
