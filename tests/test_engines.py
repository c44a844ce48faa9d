"""A client's stop through trioproxy stops a real model server: vLLM and
llama.cpp's llama-server, each serving the tiny random-weight model that
``scripts/engines/install.sh`` builds. The judge is the engine itself: the
tokens it counted in its ``/metrics`` and the aborts it logged.

The tiny model never reaches an end-of-text token, so an unstopped request
would run to ``MAX_TOKENS`` (many seconds): a stop that did not reach the
engine shows as hundreds of tokens after it, one that did as at most a
handful (the tokens already in flight when it came).

Skipped, with the command that installs them, when the engines are not in
the cache (``trioproxy.engines.find_installed``); ``scripts/test.sh`` installs
them unless ``TRIOPROXY_SKIP_ENGINES=1``.
"""

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import trio

from tests.helpers import start_proxy
from trioproxy.conformance import RawClient, StopKind, request_bytes
from trioproxy.engines import ENGINES, Counters, Engine, find_installed, read_counters
from trioproxy.engines.process import MODEL, running_engine
from trioproxy.proxy.gateway.config import ProxyConfig

pytestmark = pytest.mark.engines

MAX_TOKENS = 1500  # an unstopped request: 8-20 s of decoding on 2 cores
HANDFUL = 8  # tokens an engine may still generate after a stop: those in flight
# A long prompt, about 2.1 tokens a word: vLLM processes 6,000 tokens in 1-3 s
# here, llama-server (AVX2, one thread) 2,000 in several seconds.
LONG_PROMPT_WORDS = {"vllm": 3000, "llama.cpp": 1000}
BOUND_S = 90.0  # each test, whatever the machine's load


@pytest.fixture(scope="module", params=ENGINES)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One engine for the module's tests, stopped at the end."""
    installed = find_installed(request.param)
    if isinstance(installed, str):
        pytest.skip(installed)
    log = tmp_path_factory.mktemp("engine") / f"{request.param}.log"
    with running_engine(installed, log) as engine:
        yield engine


@dataclass(frozen=True)
class Phase:
    name: str
    stream: bool
    long_prompt: bool


PROMPT = Phase("prompt_processing", stream=True, long_prompt=True)
MID_STREAM = Phase("mid_stream", stream=True, long_prompt=False)
NON_STREAMING = Phase("non_streaming", stream=False, long_prompt=False)


# Made-up words like the tokenizer's training text: about 1.6 tokens a word.
SYLLABLES = [c + v for c in "bdgklmprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def _body(engine: str, phase: Phase) -> bytes:
    # A fresh prompt every time: nothing of it is in a cache from an earlier test.
    rng = random.Random()
    words = 3 + (LONG_PROMPT_WORDS[engine] if phase.long_prompt else 20)
    text = " ".join(rng.choice(SYLLABLES) + rng.choice(SYLLABLES) for _ in range(words))
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": MAX_TOKENS,
        "stream": phase.stream,
    }
    return json.dumps(request).encode()


async def _wait_until(condition: Callable[[], bool]) -> None:
    # An engine's log is a file another process writes: nothing to await but
    # its growth, so this polls, bounded by the test's own deadline.
    while not condition():  # noqa: ASYNC110
        await trio.sleep(0.01)


async def _settled(http: httpx.AsyncClient, engine: Engine) -> Counters:
    """The engine's counters once it runs no request (polled: its metrics are all it says)."""
    while (counters := await read_counters(http, engine.engine, engine.origin)).running:  # noqa: ASYNC110
        await trio.sleep(0.02)
    return counters


@dataclass(frozen=True)
class Stopped:
    aborted: bool
    before_stop: int  # tokens the request had made when the client stopped
    after_stop: int  # tokens the engine made after the stop


async def _stop_once(
    engine: Engine, origin: str, phase: Phase, kind: StopKind, wait_abort_s: float
) -> Stopped:
    async with httpx.AsyncClient() as http:
        before = await _settled(http, engine)
        started, aborts = engine.started(), engine.aborts()
        host, port = origin.removeprefix("http://").rsplit(":", 1)
        client = await RawClient.connect(host, int(port))
        path = "/v1/chat/completions"
        headers = {"content-type": "application/json"}
        await client.send(request_bytes("POST", path, _body(engine.engine, phase), headers))
        with trio.move_on_after(30):
            await _wait_until(lambda: engine.started() > started)
        if engine.started() == started:  # refused, most likely: say what it answered
            with trio.move_on_after(5):
                await client.read_all()
            raise AssertionError(
                f"the engine did not take the request up: {client.received[:500]!r}"
            )
        if phase is MID_STREAM:
            await client.read_until(b"data: ", count=16)
        elif phase is NON_STREAMING:
            # Let it decode a while; read nothing from the engine meanwhile, since
            # llama-server's check of a non-streaming client waits for a quiet second.
            await trio.sleep(1.0)
        at_stop = await read_counters(http, engine.engine, engine.origin)
        client.stop(kind)
        with trio.move_on_after(wait_abort_s):
            await _wait_until(lambda: engine.aborts() > aborts)
        aborted = engine.aborts() > aborts
        client.close()
        after = await _settled(http, engine)
    return Stopped(
        aborted, at_stop.generated - before.generated, after.generated - at_stop.generated
    )


@pytest.fixture
async def trioproxy(engine: Engine, nursery: trio.Nursery) -> str:
    return await start_proxy(nursery, ProxyConfig(upstream=f"{engine.origin}/v1"))


# llama-server notices a stop during prompt processing only when the prompt is
# done (its own cost, seconds here): the abort is awaited that long.
STOPPABLE = [PROMPT, MID_STREAM]


@pytest.mark.parametrize("kind", list(StopKind))
@pytest.mark.parametrize("phase", [*STOPPABLE, NON_STREAMING], ids=lambda p: p.name)
async def test_a_stop_through_trioproxy_aborts_the_engine(
    engine: Engine, trioproxy: str, phase: Phase, kind: StopKind
) -> None:
    if engine.engine == "llama.cpp" and phase is NON_STREAMING:
        # The engine's own limit, which a proxy that only closes its connection
        # cannot lift (issue 21 item 3, stream_upstream, will): it is measured
        # against no proxy at all by the test below, not skipped.
        pytest.skip(
            "llama-server checks a non-streaming client once a second: "
            "test_a_non_streaming_stop_on_llama_cpp_is_what_the_engine_does_alone compares"
        )
    with trio.fail_after(BOUND_S):
        result = await _stop_once(engine, trioproxy, phase, kind, wait_abort_s=30)
    print(f"{engine.engine} {phase.name} {kind}: {result}")
    assert result.aborted, result
    assert result.after_stop <= HANDFUL, result
    if phase is PROMPT and engine.engine == "vllm":
        assert result.before_stop == 0, "the stop came after the prompt was processed"


async def test_the_judge_sees_an_engine_that_goes_on(engine: Engine, trioproxy: str) -> None:
    """A client that has not stopped yet: the same counters show the engine going
    on and no abort, so the checks above can fail."""
    host, port = trioproxy.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(BOUND_S):
        async with httpx.AsyncClient() as http:
            started, aborts = engine.started(), engine.aborts()
            client = await RawClient.connect(host, int(port))
            headers = {"content-type": "application/json"}
            body = _body(engine.engine, MID_STREAM)
            await client.send(request_bytes("POST", "/v1/chat/completions", body, headers))
            await _wait_until(lambda: engine.started() > started)
            await client.read_until(b"data: ", count=2)
            first = await read_counters(http, engine.engine, engine.origin)
            await client.read_until(b"data: ", count=2 + 4 * HANDFUL)
            later = await read_counters(http, engine.engine, engine.origin)
            assert later.generated - first.generated > HANDFUL
            assert engine.aborts() == aborts
            client.stop(StopKind.RST)
            await _wait_until(lambda: engine.aborts() > aborts)
            await _settled(http, engine)


@pytest.mark.parametrize("kind", list(StopKind))
async def test_a_non_streaming_stop_on_llama_cpp_is_what_the_engine_does_alone(
    engine: Engine, trioproxy: str, kind: StopKind
) -> None:
    """llama-server checks a non-streaming request's client only now and then,
    and mostly goes on to the end: through trioproxy as with no proxy at all."""
    if engine.engine != "llama.cpp":
        pytest.skip("vLLM stops a non-streaming request: the test above checks it")
    with trio.fail_after(2 * BOUND_S):
        direct = await _stop_once(engine, engine.origin, NON_STREAMING, kind, wait_abort_s=10)
        proxied = await _stop_once(engine, trioproxy, NON_STREAMING, kind, wait_abort_s=10)
    print(f"llama.cpp non_streaming {kind}: direct {direct}, through trioproxy {proxied}")
    assert proxied.aborted == direct.aborted
