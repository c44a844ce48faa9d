"""Fixtures: the simulated upstream and the proxy, served by hypercorn's trio
worker on 127.0.0.1 port 0, in the test's own trio run. The helpers they are
built from (and that tests import) live in ``tests/helpers``."""

import logging
import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
import trustme

from tests.helpers import AccessLog, Stack, TLSFiles, stack_on


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
