"""The admin page in headless Chromium, against ``trioproxy serve --workers 2``:
it shows every stream of both workers, and its Cancel buttons close their upstreams."""

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from tests.clients.conftest import CHROMIUM, require, run_node, stopped_at
from tests.helpers import ADMIN, Server, Stack, streams_on_both_workers, two_workers, worker_of


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: pathlib.Path) -> AsyncIterator[Server]:
    require(CHROMIUM, "apt-get install chromium (bash scripts/test.sh does)")
    async with two_workers(nursery, tmp_path) as running:
        yield running


async def test_the_admin_page_shows_every_worker_and_its_cancel_closes_the_upstream(
    server: Server,
) -> None:
    with trio.fail_after(90):
        clients, listing = await streams_on_both_workers(server)
        base = f"http://127.0.0.1:{server.port}"
        stack = Stack(server.sim, "", base, "127.0.0.1", server.port)
        lines = await run_node("admin-page-cancel", stack, "", adminKey=ADMIN, count=len(clients))
        fates = [await server.sim.wait_ended(f"s{n}") for n in range(len(clients))]
    result: Any = lines[-1]
    shown = {row["id"] for row in result["shown"]}
    assert shown == {r["id"] for r in listing}
    assert {worker_of(i) for i in shown} == server.workers()  # both workers on one page
    assert result["workers"] == "2 workers"
    assert result["keyInUrl"] is False  # the fragment is dropped once read
    # Each Cancel closed its upstream, after the click.
    assert all(f.outcome == "disconnected" for f in fates), fates
    assert all(f.ended_at is not None and f.ended_at > stopped_at(lines) for f in fates)
    assert set(result["recent"]) == {"cancelled_by_admin"}
    counted = sum(int(bar.rsplit(": ", 1)[1]) for bar in result["bars"])
    assert counted == len(clients)  # the chart counts every stop, whole server
    assert f"cancelled_by_admin: {len(clients)}" in str(result["totals"])
