"""openai-python, anthropic, requests and curl, stopping the ways their users stop them."""

import gc
import json
import signal
import subprocess
import time
from typing import Any

import anthropic
import openai
import pytest
import requests
import trio
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from tests.clients.conftest import assert_stop_reached_upstream, require
from tests.helpers import AccessLog, Stack
from trioproxy.sim.render import Render, token_text

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
PROMPT: list[MessageParam] = [{"role": "user", "content": "hello"}]
LONG = {"x-sim-tokens": "100000", "x-sim-interval": "0.01"}


def _openai(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.proxy}/v1", api_key="sk-test", max_retries=0)


def _text(n: int) -> str:
    return "".join(token_text(i) for i in range(n))


async def test_openai_python_whole_stream(stack: Stack) -> None:
    def run() -> str:
        stream = _openai(stack).chat.completions.create(
            model="sim-small",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-sim-id": "whole", "x-sim-tokens": "30"},
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    with trio.fail_after(30):
        assert await trio.to_thread.run_sync(run) == _text(30)


@pytest.mark.parametrize("how", ["close", "leave-with", "break"])
async def test_openai_python_stream_stop(
    request: pytest.FixtureRequest, stack: Stack, access_log: AccessLog, how: str
) -> None:
    def run() -> float:
        stream = _openai(stack).chat.completions.create(
            model="sim-small",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-sim-id": how, **LONG},
        )
        if how == "leave-with":
            with stream:
                for i, _ in enumerate(stream):
                    if i == 5:
                        stopped_at = time.monotonic()
                        break
            return stopped_at
        for i, _ in enumerate(stream):
            if i == 5:
                break
        if how == "close":
            stopped_at = time.monotonic()
            stream.close()
            return stopped_at
        # "break" alone closes nothing: the SDK's stream and its generator
        # hold each other, so the response closes only when the cycle
        # collector reclaims them (seconds later, when it happens to run).
        # The client's stop is that moment; make it now.
        # The stop happens inside the collection, when the response's finalizer
        # closes its socket; the proxy's hang-up watcher thread can act on it
        # before the collection returns (finalizers let other threads run), so
        # the stop is timed from the collection's start: the figure then
        # includes the rest of the collection, well inside the bound.
        stopped_at = time.monotonic()
        del stream
        gc.collect()
        return stopped_at

    with trio.fail_after(30):
        stopped_at = await trio.to_thread.run_sync(run)
    await assert_stop_reached_upstream(request, stack, access_log, how, stopped_at)


async def test_openai_python_cancelled_non_streaming_call(
    request: pytest.FixtureRequest, stack: Stack, access_log: AccessLog
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{stack.proxy}/v1", api_key="sk-test", max_retries=0)
    with trio.fail_after(30):
        whole = await client.chat.completions.create(
            model="sim-small",
            messages=MESSAGES,
            extra_headers={"x-sim-id": "json", "x-sim-tokens": "7"},
        )
        assert whole.choices[0].message.content == _text(7)
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                await client.chat.completions.create(
                    model="sim-small",
                    messages=MESSAGES,
                    extra_headers={"x-sim-id": "cancelled", "x-sim-first-token-delay": "600"},
                )

            nursery.start_soon(call)
            await stack.sim.wait_started("cancelled")
            stopped_at = time.monotonic()
            nursery.cancel_scope.cancel()
        await client.close()
    await assert_stop_reached_upstream(request, stack, access_log, "cancelled", stopped_at)


async def test_anthropic_sdk_messages_stream(
    request: pytest.FixtureRequest, stack: Stack, access_log: AccessLog
) -> None:
    client = anthropic.Anthropic(base_url=stack.proxy, api_key="sk-test", max_retries=0)

    def whole() -> str:
        with client.messages.stream(
            model="sim-small",
            max_tokens=64,
            messages=PROMPT,
            extra_headers={"x-sim-id": "a-whole", "x-sim-tokens": "12"},
        ) as stream:
            return "".join(stream.text_stream)

    def stopped() -> float:
        with client.messages.stream(
            model="sim-small",
            max_tokens=64,
            messages=PROMPT,
            extra_headers={"x-sim-id": "a-stop", **LONG},
        ) as stream:
            for i, _ in enumerate(stream.text_stream):
                if i == 5:
                    return time.monotonic()  # leaving the with closes the stream
        raise AssertionError("stream ended by itself")

    with trio.fail_after(30):
        assert await trio.to_thread.run_sync(whole) == _text(12)
        stopped_at = await trio.to_thread.run_sync(stopped)
    await assert_stop_reached_upstream(request, stack, access_log, "a-stop", stopped_at)


async def test_requests_closing_a_streamed_response(
    request: pytest.FixtureRequest, stack: Stack, access_log: AccessLog
) -> None:
    url = f"{stack.proxy}/v1/chat/completions"
    body: dict[str, Any] = {"model": "sim-small", "stream": True, "messages": MESSAGES}

    def whole() -> bytes:
        return requests.post(url, json=body, headers={"x-sim-id": "r-whole"}, timeout=30).content

    def stopped() -> float:
        response = requests.post(
            url, json=body, headers={"x-sim-id": "r-stop", **LONG}, stream=True, timeout=30
        )
        for i, _ in enumerate(response.iter_lines()):
            if i == 10:
                at = time.monotonic()
                response.close()
                return at
        raise AssertionError("stream ended by itself")

    with trio.fail_after(30):
        assert await trio.to_thread.run_sync(whole) == Render(
            "chat", "sim-small", "r-whole"
        ).stream(16)
        stopped_at = await trio.to_thread.run_sync(stopped)
    await assert_stop_reached_upstream(request, stack, access_log, "r-stop", stopped_at)


async def test_curl_stopped_by_sigint(
    request: pytest.FixtureRequest, stack: Stack, access_log: AccessLog
) -> None:
    require("curl", "apt-get install curl")
    body = json.dumps({"model": "sim-small", "stream": True, "messages": MESSAGES})

    def curl(sim_id: str, *headers: str) -> list[str]:
        args = [
            "curl",
            "-N",
            "-s",
            "-H",
            "content-type: application/json",
            "-H",
            f"x-sim-id: {sim_id}",
        ]
        for header in headers:
            args += ["-H", header]
        return [*args, "-d", body, f"{stack.proxy}/v1/chat/completions"]

    with trio.fail_after(30):
        whole = await trio.run_process(curl("c-whole"), capture_stdout=True)
        assert whole.stdout == Render("chat", "sim-small", "c-whole").stream(16)
        process = await trio.lowlevel.open_process(
            curl("c-stop", "x-sim-tokens: 100000", "x-sim-interval: 0.01"), stdout=subprocess.PIPE
        )
        assert process.stdout is not None
        seen = b""
        while seen.count(b"data: ") < 5:
            seen += await process.stdout.receive_some(65536)
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert await process.wait() != 0
    await assert_stop_reached_upstream(request, stack, access_log, "c-stop", stopped_at)
