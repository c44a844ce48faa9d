"""The cancellation conformance run: does a proxy's client stop reach the upstream, and how fast?

Runs against any HTTP proxy in front of the simulated upstream: a command
that starts it (``{upstream}`` and ``{port}`` filled in), or a URL where it
already runs. Each scenario stops requests in one phase by one stop kind and
times, at the upstream, how long after the stop its connection closed; a
scenario whose first look is correct but over its speed bound is looked at
once more (:mod:`.report` says what the verdict makes of both). Integrity
scenarios check that unstopped answers arrive whole and in order.
"""

import random
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from trioproxy.conformance.answers import expected_text, integrity, stream_text
from trioproxy.conformance.probe import RawClient, StopKind, chat_body, request_bytes, sim_model
from trioproxy.conformance.probe_h2 import H2Client
from trioproxy.conformance.proxy_process import Target
from trioproxy.conformance.report import Report, RunConfig, ScenarioResult
from trioproxy.conformance.scenarios import SCENARIOS, Scenario, stop_in_phase
from trioproxy.sim import SimUpstream, serve_sim

__all__ = ["run_conformance", "with_sim"]


_GIVE_UP = 3

type Look = Callable[[ScenarioResult, str], Awaitable[None]]
"""One look at a scenario: its stops, added to the result. The string goes into
the requests' ids, so that a second look's requests are told from the first's."""


async def run_conformance(
    sim: SimUpstream,
    target: Target,
    config: RunConfig,
    proxy: str = "",
    tls_target: Target | None = None,
) -> Report:
    """``tls_target``: where the proxy also listens with TLS, for the reset over TLS."""
    results = []

    def phase(name: str) -> ScenarioResult:
        return ScenarioResult(
            name, bound_ms=config.bound_ms, close_within_ms=config.close_within_s * 1000
        )

    for scenario in SCENARIOS:
        for kind in StopKind:
            result = phase(f"{scenario.name} {kind}")
            look = partial(_phase, sim, target, scenario, kind, config)
            results.append(await _judged(result, look))
    h2 = phase("streaming h2-reset")
    results.append(await _judged(h2, partial(_h2_reset, sim, target, config)))
    if tls_target is None:
        skipped = ScenarioResult("streaming h2-reset TLS", skipped="no TLS listener")
        results.append(skipped)
    else:
        h2s = phase("streaming h2-reset TLS")
        results.append(await _judged(h2s, partial(_h2_reset, sim, tls_target, config, tls=True)))
    for size in config.storms:
        storm = ScenarioResult(
            f"storm {size} streams",
            bound_ms=config.storm_bound_ms,
            close_within_ms=config.storm_close_within_s * 1000,
        )
        results.append(await _judged(storm, partial(_storm, sim, target, size, config)))
    results.append(await integrity(target, config))
    return Report(proxy, results, config)


async def _judged(result: ScenarioResult, look: Look) -> ScenarioResult:
    """The first look, and a second one when the first was correct but slow: a busy
    machine's hiccup seldom strikes twice, a slow proxy is slow again."""
    await look(result, "")
    if result.wants_second_look:
        again = ScenarioResult(
            result.name, bound_ms=result.bound_ms, close_within_ms=result.close_within_ms
        )
        await look(again, "again-")
        result.second_look = again
    return result


async def _phase(
    sim: SimUpstream,
    target: Target,
    scenario: Scenario,
    kind: StopKind,
    config: RunConfig,
    result: ScenarioResult,
    look: str,
) -> None:
    for i in range(config.repeats):
        sim_id = f"{scenario.name}-{kind}-{look}{i}"
        try:
            result.add(
                await stop_in_phase(*target, sim, scenario, kind, sim_id, wait_s=config.wait_s)
            )
        except (OSError, trio.TooSlowError, ConnectionError) as exc:
            result.failures.append(f"{sim_id}: {exc!r}")
        if result.never_closed + len(result.failures) >= _GIVE_UP:
            break  # failed already; each more try costs wait_s


async def _h2_reset(
    sim: SimUpstream,
    target: Target,
    config: RunConfig,
    result: ScenarioResult,
    look: str,
    *,
    tls: bool = False,
) -> None:
    """Reset one HTTP/2 stream mid-stream while a sibling on the connection streams on
    (over TLS with ALPN h2, as Chromium does it, when ``tls``)."""
    context = _any_certificate() if tls else None
    for i in range(config.repeats):
        name = f"h2{'s' * tls}-{look}{i}"
        try:
            with trio.fail_after(config.wait_s * 2):
                stopped_at, sibling_whole = await _h2_reset_once(sim, target, name, context)
        except (ConnectionError, OSError, AssertionError) as exc:
            if i == 0:  # a proxy that does not speak h2 closes at the preface, or
                # does not offer it by ALPN
                result.skipped = f"no {'h2' if tls else 'h2c'} ({type(exc).__name__})"
            else:
                result.failures.append(f"{name}: {exc!r}")
            break
        except trio.TooSlowError:
            result.failures.append(f"{name}: timed out")
            continue
        if not sibling_whole:
            result.failures.append(f"{name}: sibling stream damaged by the reset")
        result.add_closed(await _closed_after(sim, f"{name}-doomed", stopped_at, config.wait_s))


def _any_certificate() -> ssl.SSLContext:
    """The proxy's certificate is the run's own self-signed one: not verified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


async def _h2_reset_once(
    sim: SimUpstream, target: Target, name: str, context: ssl.SSLContext | None = None
) -> tuple[float, bool]:
    """Returns when the reset was sent, and whether the sibling arrived whole."""
    doomed_sim = {
        "x-sim-id": f"{name}-doomed",
        "x-sim-tokens": "1000000",
        "x-sim-interval": "0.005",
    }
    sibling_sim = {"x-sim-id": f"{name}-sibling", "x-sim-tokens": "50", "x-sim-interval": "0.002"}
    client = await H2Client.connect(*target, ssl_context=context)
    try:
        doomed = await client.request(
            "/v1/chat/completions", doomed_sim, chat_body(True, model=sim_model(doomed_sim))
        )
        sibling = await client.request(
            "/v1/chat/completions", sibling_sim, chat_body(True, model=sim_model(sibling_sim))
        )
        await client.pump_until(lambda: client.data[doomed].count(b"data: ") >= 3)
        stopped_at = time.monotonic()
        await client.reset(doomed)
        await client.pump_until(lambda: sibling in client.ended)
    finally:
        client.close()
    return stopped_at, stream_text(bytes(client.data[sibling])) == expected_text(50)


async def _closed_after(
    sim: SimUpstream, sim_id: str, stopped_at: float, wait_s: float
) -> float | None:
    """Milliseconds from the stop to the upstream's close; None if it did not close in time."""
    fate = sim.fate(sim_id)
    with trio.move_on_after(wait_s):
        await fate.ended.wait()
    if fate.outcome != "disconnected" or fate.ended_at is None:
        return None
    return (fate.ended_at - stopped_at) * 1000


async def _storm(
    sim: SimUpstream,
    target: Target,
    size: int,
    config: RunConfig,
    result: ScenarioResult,
    look: str,
) -> None:
    """N concurrent streams, each stopped at a random moment once the upstream has it
    (the same moments on a second look)."""
    rng = random.Random(size)
    stopped_at: dict[str, float] = {}

    async def one(i: int) -> None:
        sim_id = f"storm-{size}-{look}{i}"
        settings = {
            "x-sim-id": sim_id,
            "x-sim-tokens": "1000000",
            # Slow tokens: the storm is about many stops at once, and the
            # upstream shares this process with every client.
            "x-sim-interval": "0.25",
            "x-sim-headers-delay": rng.choice(["0", "0.05", "600"]),
        }
        body = chat_body(True, model=sim_model(settings))
        request = request_bytes("POST", "/v1/chat/completions", body, settings)
        client = await RawClient.connect(*target)
        try:
            await client.send(request)
            await sim.wait_started(sim_id)
            await trio.sleep(rng.uniform(0.0, 0.5))
            stopped_at[sim_id] = client.stop(rng.choice(list(StopKind)))
        finally:
            client.close()

    try:
        with trio.fail_after(config.wait_s + 60):
            async with trio.open_nursery() as nursery:
                for i in range(size):
                    nursery.start_soon(one, i)
    except (OSError, trio.TooSlowError) as exc:
        result.failures.append(f"storm did not start: {exc!r}")
    deadline = trio.current_time() + config.wait_s
    for sim_id, at in stopped_at.items():
        wait_s = max(0.0, deadline - trio.current_time())
        result.add_closed(await _closed_after(sim, sim_id, at, wait_s))


async def with_sim(body: Callable[[SimUpstream, str], Awaitable[Report]], port: int = 0) -> Report:
    """Serve a fresh simulated upstream for the length of ``body``."""
    sim = SimUpstream()
    # The guarded server: its hang-up watcher times each close when the kernel
    # reports it, not when this process, busy with a storm, gets to it.
    serve = partial(serve_sim, sim, "127.0.0.1", port, server="guarded")
    async with trio.open_nursery() as nursery:
        (origin,) = await nursery.start(serve)
        report = await body(sim, f"{origin}/v1")
        nursery.cancel_scope.cancel()
    return report
