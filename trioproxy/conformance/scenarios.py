"""Stopping a request in a chosen phase, and timing how long the upstream takes to notice.

Shared by ``trioproxy demo``, the tests and the conformance run. The client
is :class:`~trioproxy.conformance.probe.RawClient`; the upstream is a
:class:`~trioproxy.sim.SimUpstream` whose record says when its connection
closed. Both clocks are ``time.monotonic()``.
"""

import enum
from dataclasses import dataclass

import trio

from trioproxy.conformance.probe import RawClient, StopKind, chat_body, request_bytes, sim_model
from trioproxy.sim import SimUpstream

__all__ = ["SCENARIOS", "Reached", "Scenario", "StopResult", "stop_in_phase"]

_LONG = "600"  # seconds: far longer than any test, so only a stop ends the request
_HELD_BACK_S = 0.2  # how long a proxy may sit on what the upstream sent before the stop
_TRICKLE_BYTES = 10  # a slow upload: this many body bytes, one at a time, then the stop
_TRICKLE_GAP_S = 0.03
_STREAMING = (("x-sim-tokens", "1000000"), ("x-sim-interval", "0.005"))


class Reached(enum.Enum):
    """How the client knows the request is in the phase to stop it in."""

    BODY_HALF_SENT = enum.auto()
    BODY_TRICKLED = enum.auto()
    UPSTREAM_STARTED = enum.auto()
    RESPONSE_HEAD = enum.auto()
    EVENTS = enum.auto()


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    stream: bool
    sim_headers: tuple[tuple[str, str], ...]
    reached: Reached
    spare_idle: bool = False
    """Another connection of the same client stays open and idle meanwhile: a
    Node-style keep-alive pool, whose abort destroys only the busy socket."""


SCENARIOS = (
    Scenario("upload", True, (), Reached.BODY_HALF_SENT),
    Scenario("waiting_headers", True, (("x-sim-headers-delay", _LONG),), Reached.UPSTREAM_STARTED),
    Scenario(
        "waiting_first_byte", True, (("x-sim-first-token-delay", _LONG),), Reached.RESPONSE_HEAD
    ),
    Scenario("upload_trickle", True, (), Reached.BODY_TRICKLED),
    Scenario("streaming", True, _STREAMING, Reached.EVENTS),
    Scenario("streaming_spare_idle", True, _STREAMING, Reached.EVENTS, spare_idle=True),
    Scenario(
        "non_streaming", False, (("x-sim-first-token-delay", _LONG),), Reached.UPSTREAM_STARTED
    ),
)


@dataclass(frozen=True, slots=True)
class StopResult:
    scenario: str
    kind: StopKind
    upstream: str  # "closed" | "never opened" | "still running"
    propagation_ms: float | None
    tokens_sent: int


async def stop_in_phase(
    host: str,
    port: int,
    sim: SimUpstream,
    scenario: Scenario,
    kind: StopKind,
    sim_id: str,
    *,
    wait_s: float = 5.0,
    path: str = "/v1/chat/completions",
) -> StopResult:
    """Send one request, stop it once ``scenario`` is reached, report what the upstream saw."""
    headers = {"content-type": "application/json", "x-sim-id": sim_id, **dict(scenario.sim_headers)}
    body = chat_body(scenario.stream, model=sim_model(headers))
    raw = request_bytes("POST", path, body, headers)
    spare = await _spare_connection(host, port) if scenario.spare_idle else None
    client = await RawClient.connect(host, port)
    try:
        with trio.fail_after(wait_s):
            if scenario.reached is Reached.BODY_TRICKLED:
                await client.send(raw[: len(raw) - len(body)])
                for byte in body[:_TRICKLE_BYTES]:
                    await client.send(bytes([byte]))
                    await trio.sleep(_TRICKLE_GAP_S)
            elif scenario.reached is Reached.BODY_HALF_SENT:
                await client.send(raw[: len(raw) - len(body) // 2])
                # Nothing outside the proxy shows it is reading the body: give
                # it a moment to take what was sent.
                await trio.sleep(0.05)
            else:
                await client.send(raw)
                await _wait_for(scenario.reached, client, sim, sim_id)
        stopped_at = client.stop(kind)
        fate = sim.fate(sim_id)
        # Not at the upstream by the time of the stop: it never will be.
        if fate.started.is_set():
            with trio.move_on_after(wait_s):
                await fate.ended.wait()
    finally:
        client.close()
        if spare is not None:
            spare.close()
    if not fate.started.is_set():
        return StopResult(scenario.name, kind, "never opened", None, 0)
    if not fate.ended.is_set() or fate.ended_at is None or fate.outcome != "disconnected":
        return StopResult(scenario.name, kind, "still running", None, fate.tokens_sent)
    ms = (fate.ended_at - stopped_at) * 1000
    return StopResult(scenario.name, kind, "closed", ms, fate.tokens_sent)


async def _spare_connection(host: str, port: int) -> RawClient:
    """A connection that served one request and now idles in the client's pool."""
    spare = await RawClient.connect(host, port)
    with trio.fail_after(5):
        await spare.send(request_bytes("GET", "/v1/models", b"", {}))
        await spare.read_response()
    return spare


async def _wait_for(reached: Reached, client: RawClient, sim: SimUpstream, sim_id: str) -> None:
    if reached is Reached.UPSTREAM_STARTED:
        await sim.wait_started(sim_id)
        return
    async with trio.open_nursery() as race:

        async def seen_by_client() -> None:
            if reached is Reached.RESPONSE_HEAD:
                await client.read_until(b"\r\n\r\n")
            else:
                await client.read_until(b"data: ", count=5)
            if client.eof:
                raise ConnectionError(f"proxy closed early: {client.received[:200]!r}")
            race.cancel_scope.cancel()

        async def done_by_upstream() -> None:
            # A proxy may hold back what the upstream sent (headers until the
            # first token, say); the phase is the upstream's all the same.
            await sim.fate(sim_id).wait_progress(
                tokens=0 if reached is Reached.RESPONSE_HEAD else 5
            )
            await trio.sleep(_HELD_BACK_S)
            race.cancel_scope.cancel()

        race.start_soon(seen_by_client)
        race.start_soon(done_by_upstream)
