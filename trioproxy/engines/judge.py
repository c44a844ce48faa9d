"""One stop of one request, judged by the engine: what it had generated when
the client stopped, whether it logged an abort, and what it generated after.

One request at a time, from an idle engine: the engine's counters are totals,
and only then are their differences this request's. The tiny model never
ends an answer by itself, so an unstopped request runs to ``MAX_TOKENS``."""

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import trio

from trioproxy.conformance import RawClient, StopKind, request_bytes
from trioproxy.engines.counters import Counters, read_counters
from trioproxy.engines.process import MODEL, Engine

__all__ = [
    "MAX_TOKENS",
    "MID_STREAM",
    "NON_STREAMING",
    "PHASES",
    "PROMPT",
    "Phase",
    "Stopped",
    "chat_request",
    "settled",
    "stop_once",
    "wait_until",
]

MAX_TOKENS = 1500  # an unstopped request: 8-25 s of decoding on 2 cores
MID_STREAM_EVENTS = 16  # events the client reads before a mid-stream stop
NON_STREAMING_AFTER_S = 1.0  # how long a non-streaming request decodes before its stop
# A long prompt, about 2.1 tokens a word: vLLM processes 6,000 tokens in 1-3 s
# here, llama-server (AVX2, one thread) 2,000 in several seconds.
LONG_PROMPT_WORDS = {"vllm": 3000, "llama.cpp": 1000}
# Made-up words like the tokenizer's training text.
_SYLLABLES = [c + v for c in "bdgklmprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


@dataclass(frozen=True)
class Phase:
    name: str
    stream: bool
    long_prompt: bool


PROMPT = Phase("prompt_processing", stream=True, long_prompt=True)
MID_STREAM = Phase("mid_stream", stream=True, long_prompt=False)
NON_STREAMING = Phase("non_streaming", stream=False, long_prompt=False)
PHASES = (PROMPT, MID_STREAM, NON_STREAMING)


@dataclass(frozen=True)
class Stopped:
    aborted: bool
    before_stop: int  # tokens the request had made when the client stopped
    after_stop: int  # tokens the engine made after the stop
    abort_seen_ms: float | None  # stop -> the abort line seen in the engine's log


def chat_request(engine: str, phase: Phase) -> bytes:
    # A fresh prompt every time: nothing of it is in a cache from an earlier request.
    rng = random.Random()
    words = 3 + (LONG_PROMPT_WORDS[engine] if phase.long_prompt else 20)
    text = " ".join(rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) for _ in range(words))
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": MAX_TOKENS,
        "stream": phase.stream,
    }
    return json.dumps(request).encode()


async def wait_until(condition: Callable[[], bool]) -> None:
    # An engine's log is a file another process writes: nothing to await but
    # its growth, so this polls; callers bound it.
    while not condition():  # noqa: ASYNC110
        await trio.sleep(0.01)


async def settled(http: httpx.AsyncClient, engine: Engine) -> Counters:
    """The engine's counters once it runs no request (polled: its metrics are all it says)."""
    while (counters := await read_counters(http, engine.engine, engine.origin)).running:  # noqa: ASYNC110
        await trio.sleep(0.02)
    return counters


async def stop_once(
    engine: Engine, origin: str, phase: Phase, kind: StopKind, wait_abort_s: float
) -> Stopped:
    """Send one chat completion to ``origin`` (the engine, or a proxy in front of
    it), stop it in ``phase`` by ``kind``, and read what the engine did."""
    async with httpx.AsyncClient() as http:
        before = await settled(http, engine)
        started, aborts = engine.started(), engine.aborts()
        host, port = origin.removeprefix("http://").rsplit(":", 1)
        client = await RawClient.connect(host, int(port))
        headers = {"content-type": "application/json"}
        body = chat_request(engine.engine, phase)
        await client.send(request_bytes("POST", "/v1/chat/completions", body, headers))
        with trio.move_on_after(30):
            await wait_until(lambda: engine.started() > started)
        if engine.started() == started:  # refused, most likely: say what came back
            with trio.move_on_after(5):
                await client.read_all()
            raise RuntimeError(f"the engine did not take the request up: {client.received[:500]!r}")
        if phase is MID_STREAM:
            await client.read_until(b"data: ", count=MID_STREAM_EVENTS)
        elif phase is NON_STREAMING:
            # Read nothing from the engine meanwhile: any answer of llama-server's
            # restarts the quiet second it waits before it checks such a client.
            await trio.sleep(NON_STREAMING_AFTER_S)
        at_stop = await read_counters(http, engine.engine, engine.origin)
        stopped_at = client.stop(kind)
        with trio.move_on_after(wait_abort_s):
            await wait_until(lambda: engine.aborts() > aborts)
        seen = (time.monotonic() - stopped_at) * 1000
        aborted = engine.aborts() > aborts
        client.close()
        after = await settled(http, engine)
    return Stopped(
        aborted,
        at_stop.generated - before.generated,
        after.generated - at_stop.generated,
        seen if aborted else None,
    )
