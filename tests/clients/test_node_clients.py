"""The openai npm SDK (Kilo Code, Cline, Roo Code) and the Vercel AI SDK (Cherry Studio,
Chatbox) on Node, stopping the ways those apps stop."""

import json

import pytest
import trio

from tests.clients.conftest import JS, assert_stop_reached_upstream, require_node_modules
from tests.conftest import AccessLog, Stack
from trioproxy.sim.render import token_text


async def run_node(
    scenario: str, stack: Stack, sim_id: str, **extra: object
) -> list[dict[str, object]]:
    require_node_modules()
    config = {
        "base": stack.proxy,
        "simId": sim_id,
        "tokens": 100000,
        "interval": 0.01,
        "stopAfter": 5,
    } | extra
    with trio.fail_after(60):
        done = await trio.run_process(
            ["node", str(JS / "client.mjs"), scenario, json.dumps(config)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def stopped_at(lines: list[dict[str, object]]) -> float:
    (stamp,) = [line["stopped_at"] for line in lines if "stopped_at" in line]
    assert isinstance(stamp, float)
    return stamp


def text(lines: list[dict[str, object]]) -> object:
    return next(line["text"] for line in lines if "text" in line)


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
