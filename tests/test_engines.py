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

from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.helpers import start_proxy
from trioproxy.conformance import RawClient, StopKind, request_bytes
from trioproxy.engines import ENGINES, Engine, find_installed, read_counters, running_engine
from trioproxy.engines.judge import (
    MID_STREAM,
    NON_STREAMING,
    PHASES,
    PROMPT,
    Phase,
    chat_request,
    settled,
    stop_once,
    wait_until,
)
from trioproxy.proxy.gateway.config import ProxyConfig

pytestmark = pytest.mark.engines

HANDFUL = 8  # tokens an engine may still generate after a stop: those in flight
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


@pytest.fixture
async def trioproxy(engine: Engine, nursery: trio.Nursery) -> str:
    return await start_proxy(nursery, ProxyConfig(upstream=f"{engine.origin}/v1"))


@pytest.fixture
def judged(engine: Engine, phase: Phase) -> Engine:
    """The engine, unless it cannot stop ``phase`` itself (a sync fixture: a skip
    raised inside the trio test loses its reason)."""
    if engine.engine == "llama.cpp" and phase is NON_STREAMING:
        # The engine's own limit, which a proxy that only closes its connection
        # cannot lift (issue 21 item 3, stream_upstream, will): it is measured
        # against no proxy at all by the test below, not skipped.
        pytest.skip(
            "llama-server checks a non-streaming client once a second: "
            "test_a_non_streaming_stop_on_llama_cpp_is_what_the_engine_does_alone compares"
        )
    return engine


@pytest.mark.parametrize("kind", list(StopKind))
@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.name)
async def test_a_stop_through_trioproxy_aborts_the_engine(
    judged: Engine, trioproxy: str, phase: Phase, kind: StopKind
) -> None:
    engine = judged
    with trio.fail_after(BOUND_S):
        # llama-server sees a stop during prompt processing only when the prompt
        # batch it is in is done (its own cost, seconds here): the wait is long.
        result = await stop_once(engine, trioproxy, phase, kind, wait_abort_s=30)
    print(f"{engine.engine} {phase.name} {kind}: {result}")
    assert result.aborted, result
    if result.after_stop > HANDFUL:
        # A second look, as the conformance verdict takes one: on a loaded 2-core
        # machine the engine's own server can take a second to read a disconnect
        # (106 tokens once, its abort 906 ms after the stop, while other work ran).
        # A proxy that does not pass the stop on fails both looks.
        with trio.fail_after(BOUND_S):
            result = await stop_once(engine, trioproxy, phase, kind, wait_abort_s=30)
        print(f"second look: {result}")
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
            body = chat_request(engine.engine, MID_STREAM)
            await client.send(request_bytes("POST", "/v1/chat/completions", body, headers))
            await wait_until(lambda: engine.started() > started)
            await client.read_until(b"data: ", count=2)
            first = await read_counters(http, engine.engine, engine.origin)
            await client.read_until(b"data: ", count=2 + 4 * HANDFUL)
            later = await read_counters(http, engine.engine, engine.origin)
            assert later.generated - first.generated > HANDFUL
            assert engine.aborts() == aborts
            client.stop(StopKind.RST)
            await wait_until(lambda: engine.aborts() > aborts)
            await settled(http, engine)


@pytest.fixture
def llama_cpp(engine: Engine) -> Engine:
    if engine.engine != "llama.cpp":
        pytest.skip("vLLM stops a non-streaming request: the test above checks it")
    return engine


@pytest.mark.parametrize("kind", list(StopKind))
async def test_a_non_streaming_stop_on_llama_cpp_is_what_the_engine_does_alone(
    llama_cpp: Engine, trioproxy: str, kind: StopKind
) -> None:
    """llama-server checks a non-streaming request's client only once a second
    with no answer sent: through trioproxy as with no proxy at all."""
    engine = llama_cpp
    with trio.fail_after(2 * BOUND_S):
        direct = await stop_once(engine, engine.origin, NON_STREAMING, kind, wait_abort_s=10)
        proxied = await stop_once(engine, trioproxy, NON_STREAMING, kind, wait_abort_s=10)
    print(f"llama.cpp non_streaming {kind}: direct {direct}, through trioproxy {proxied}")
    assert proxied.aborted == direct.aborted
