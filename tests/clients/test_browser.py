"""Headless Chromium (Debian's) driven by playwright-core: a chat page's stop button
(SillyTavern, the Cherry Studio renderer), EventSource, and HTTP/2 over TLS."""

import json

import pytest
import trio

from tests.clients.conftest import (
    CHROMIUM,
    assert_stop_reached_upstream,
    require,
    run_node,
    stopped_at,
    text,
)
from tests.helpers import AccessLog, Stack, TLSFiles, start_proxy, start_sim
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.sim import SimUpstream
from trioproxy.sim.render import Render


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require(CHROMIUM, "apt-get install chromium (bash scripts/test.sh does)")


async def test_fetch_whole_and_stop_button(
    request: pytest.FixtureRequest, stack: Stack, access_log: AccessLog
) -> None:
    whole = await run_node("browser-fetch-whole", stack, "whole", tokens=20)
    assert text(whole) == Render("chat", "sim-small", "whole").stream(20).decode()
    lines = await run_node("browser-fetch-abort", stack, "stop")
    assert "Clicked stop button" in str(lines[-1]["error"])
    await assert_stop_reached_upstream(request, stack, access_log, "stop", stopped_at(lines))


async def test_eventsource_close(
    request: pytest.FixtureRequest, stack: Stack, access_log: AccessLog
) -> None:
    whole = await run_node("browser-eventsource-whole", stack, "whole", tokens=20)
    events = str(text(whole)).split("\n")
    assert events[-1] == "[DONE]" and len(events) == 20 + 3
    lines = await run_node("browser-eventsource-close", stack, "stop")
    await assert_stop_reached_upstream(request, stack, access_log, "stop", stopped_at(lines))


async def test_http2_over_tls_resets_only_its_stream(
    request: pytest.FixtureRequest, nursery: trio.Nursery, tls: TLSFiles, access_log: AccessLog
) -> None:
    sim = SimUpstream()
    upstream = await start_sim(nursery, sim)
    origin = await start_proxy(
        nursery, ProxyConfig(upstream=f"{upstream}/v1"), certfile=tls.certfile, keyfile=tls.keyfile
    )
    host, port = origin.removeprefix("https://").rsplit(":", 1)
    stack = Stack(sim, upstream, origin, host, int(port))
    lines = await run_node(
        "browser-h2-sibling",
        stack,
        "doomed",
        siblingId="sibling",
        siblingTokens=300,
        interval=0.005,
    )
    result = lines[-1]
    # The page itself is served by Playwright (no protocol); both fetches went over h2.
    protocols = [p for p in result["protocols"] if p]  # type: ignore[attr-defined]
    assert protocols == ["h2", "h2"], json.dumps(result)[:300]
    assert result["error"] is None
    assert result["text"] == Render("chat", "sim-small", "sibling").stream(300).decode()
    assert sim.fate("sibling").outcome == "completed"
    await assert_stop_reached_upstream(request, stack, access_log, "doomed", stopped_at(lines))
