"""The openai npm SDK (Kilo Code, Cline, Roo Code) and the Vercel AI SDK (Cherry Studio,
Chatbox) on Node, stopping the ways those apps stop."""

import pytest

from tests.clients.conftest import assert_stop_reached_upstream, run_node, stopped_at, text
from tests.helpers import AccessLog, Stack
from trioproxy.sim.render import token_text


@pytest.mark.parametrize("client", ["openai", "aisdk"])
async def test_whole_answer(stack: Stack, client: str) -> None:
    lines = await run_node(f"{client}-whole", stack, "whole", tokens=25)
    assert text(lines) == "".join(token_text(i) for i in range(25))


@pytest.mark.parametrize("scenario", ["openai-abort", "openai-break", "aisdk-abort"])
async def test_stop(
    request: pytest.FixtureRequest, stack: Stack, access_log: AccessLog, scenario: str
) -> None:
    lines = await run_node(scenario, stack, scenario)
    assert text(lines) == "".join(token_text(i) for i in range(len(str(text(lines)).split())))
    await assert_stop_reached_upstream(request, stack, access_log, scenario, stopped_at(lines))
