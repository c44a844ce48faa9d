"""A client's stop, in every phase, by FIN and by RST, closes the upstream connection."""

import httpx
import pytest
import trio

from tests.helpers import AccessLog, Stack
from trioproxy.conformance import SCENARIOS, Scenario, StopKind, stop_in_phase

# Generous on purpose: the speed goal (p99 <= 5 ms) lives in benchmarks/;
# this bound only catches a stop that is not propagated by the race at all.
BOUND_MS = 250.0

# The phase the proxy logs for each scenario: a non-streaming request is
# stopped while the proxy waits for the upstream's headers.
LOGGED_PHASE = {
    "non_streaming": "waiting_headers",
    "upload_trickle": "upload",
    "streaming_spare_idle": "streaming",
}


@pytest.mark.parametrize("kind", list(StopKind))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_stop_closes_upstream(
    stack: Stack, access_log: AccessLog, scenario: Scenario, kind: StopKind
) -> None:
    with trio.fail_after(15):
        result = await stop_in_phase(stack.host, stack.port, stack.sim, scenario, kind, "r")
        line = await access_log.wait_for_line(" 499 ")
    phase = LOGGED_PHASE.get(scenario.name, scenario.name)
    assert f"outcome=client_closed phase={phase} " in line
    if phase == "upload":
        assert result.upstream == "never opened"
        assert stack.sim.fates == []
        return
    assert result.upstream == "closed", result
    assert result.propagation_ms is not None and result.propagation_ms < BOUND_MS
    print(f"{scenario.name} {kind}: upstream closed {result.propagation_ms:.2f} ms after the stop")


async def test_stopped_connection_is_not_returned_to_the_pool(stack: Stack) -> None:
    """After a stop the next request opens a fresh upstream connection and works."""
    (mid,) = [s for s in SCENARIOS if s.name == "streaming"]
    with trio.fail_after(15):
        await stop_in_phase(stack.host, stack.port, stack.sim, mid, StopKind.FIN, "first")
        async with httpx.AsyncClient(base_url=stack.proxy) as client:
            response = await client.post(
                "/v1/chat/completions",
                headers={"x-sim-id": "second"},
                json={"model": "m", "stream": True, "messages": []},
            )
    assert response.status_code == 200 and response.content.endswith(b"data: [DONE]\n\n")
    assert stack.sim.fate("first").outcome == "disconnected"
    assert stack.sim.fate("second").outcome == "completed"
