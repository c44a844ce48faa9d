"""One record, one outcome, one access line and one count for every request,
refused or relayed; the one stop; the upstream exchange's state machine; the
key limiter's typed answers."""

import re
import ssl
import threading

import httpx
import pytest
import trio

from tests.helpers import AccessLog, ScriptedUpstream, start_proxy, start_sim
from trioproxy.asgi import CLIENT_GONE, CLIENT_HANGUP, give_client_gone, gone_already, hangup_of
from trioproxy.proxy.core.outcome import Outcome
from trioproxy.proxy.core.record import RequestRecord
from trioproxy.proxy.gateway.config import ClientKey, ProxyConfig
from trioproxy.proxy.gateway.keys import Busy, KeyLimiter, Limited, Slot
from trioproxy.proxy.upstream.errors import Aborted
from trioproxy.proxy.upstream.pool import Deadlines, UpstreamPool
from trioproxy.proxy.upstream.routing import Upstream
from trioproxy.proxy.upstream.state import ExchangeState, State
from trioproxy.sim import SimUpstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
DEADLINES = Deadlines(connect_s=5, headers_s=5, idle_s=5)
_COUNT = re.compile(r'^trioproxy_requests_total\{.*outcome="([a-z_]+)".*\} ([0-9.]+)$')


async def test_every_refusal_is_one_line_and_one_count_with_an_outcome_of_its_own(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    """401, 404 (a model not served, a path outside the API), 429, 400 and 405:
    each one access line with its own outcome and status, and one count."""
    upstream = await start_sim(nursery, SimUpstream())
    bob = ClientKey("bob", "sk-bob", per_minute=2)
    carol = ClientKey("carol", "sk-carol")
    config = ProxyConfig(
        upstream="",
        upstreams=(Upstream("a", f"{upstream}/v1", models=("m",)),),
        client_keys=(bob, carol),
    )
    proxy = await start_proxy(nursery, config)
    as_bob = {"authorization": "Bearer sk-bob"}
    as_carol = {"authorization": "Bearer sk-carol"}
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=proxy) as client:
            statuses = [
                (await client.post("/v1/chat/completions", json=CHAT)).status_code,
                (
                    await client.post(
                        "/v1/chat/completions", json=CHAT | {"model": "m"}, headers=as_bob
                    )
                ).status_code,
                (
                    await client.post(
                        "/v1/chat/completions", json=CHAT | {"model": "nope"}, headers=as_bob
                    )
                ).status_code,
                (await client.post("/v1/chat/completions", json=CHAT, headers=as_bob)).status_code,
                (await client.get("/v1/x/%2e%2e/models", headers=as_carol)).status_code,
                (await client.request("PUT", "/v1/models", headers=as_carol)).status_code,
                (await client.get("/nowhere")).status_code,
            ]
            lines = await access_log.wait_for(len(statuses))
            text = (await client.get("/metrics")).text
    assert statuses == [401, 200, 404, 429, 400, 405, 404]
    expected = [
        "401 outcome=refused",
        "200 outcome=completed",
        "404 outcome=not_found",
        "429 outcome=limited",
        "400 outcome=bad_request",
        "405 outcome=bad_request",
        "404 outcome=not_found",
    ]
    assert len(lines) == len(expected), lines
    for line, wanted in zip(lines, expected, strict=True):
        assert f" {wanted} " in line, (line, wanted)
    assert " /nowhere 404 " in lines[-1] and " key=bob " in lines[3]
    counts: dict[str, float] = {}
    for sample in text.splitlines():
        if found := _COUNT.match(sample):
            counts[found[1]] = counts.get(found[1], 0) + float(found[2])
    assert counts == {
        "refused": 1,
        "completed": 1,
        "not_found": 2,
        "limited": 1,
        "bad_request": 2,
    }
    assert 'trioproxy_key_limited_total{key="bob"} 1.0' in text.splitlines()


class _Exchange:
    """A stand-in upstream exchange: counts the aborts a stop sends it, and the thread."""

    def __init__(self) -> None:
        self.aborts: list[str] = []

    def abort(self) -> None:
        self.aborts.append(threading.current_thread().name)


class _Hangup:
    def __init__(self) -> None:
        self.action: object = None

    def arm(self, action: object) -> None:
        self.action = action

    def disarm(self) -> None:
        self.action = None


async def test_a_client_stop_fires_once_and_only_before_the_outcome() -> None:
    """The first fire decides the outcome and acts (abort, free, cancel); a second
    one, by another path, changes nothing; a leaving after the answer's end does
    nothing; the admin's cancel acts even then."""
    rec = RequestRecord("POST", "/v1/chat/completions")
    exchange, freed = _Exchange(), []
    with trio.CancelScope() as race:
        rec.stop.guard(race)
        rec.stop.frees(lambda: freed.append(1))
        rec.stop.link(exchange)
        rec.stop.fire(Outcome.CLIENT_CLOSED)
        rec.stop.client_gone()  # the server's hook, later: the same stop
        await trio.sleep_forever()
    assert race.cancelled_caught and rec.outcome is Outcome.CLIENT_CLOSED
    assert rec.status_logged == 499 and rec.client_closed_at is not None
    assert len(exchange.aborts) == 1 and freed == [1]

    done = RequestRecord("POST", "/v1/chat/completions")
    late = _Exchange()
    done.stop.link(late)
    done.end(Outcome.COMPLETED, 200)
    done.stop.fire(Outcome.CLIENT_CLOSED)  # hypercorn's disconnect after the answer
    assert late.aborts == [] and done.outcome is Outcome.COMPLETED
    done.stop.fire(Outcome.CANCELLED_BY_ADMIN)
    assert len(late.aborts) == 1 and done.outcome is Outcome.COMPLETED


async def test_the_hang_up_thread_aborts_only_while_an_exchange_is_linked() -> None:
    rec = RequestRecord("POST", "/v1/chat/completions")
    hangup, exchange = _Hangup(), _Exchange()
    rec.stop.watched_by(hangup)
    rec.stop.link(exchange)
    assert hangup.action == rec.stop.hang_up
    await trio.to_thread.run_sync(rec.stop.hang_up, thread_name="hangup")
    assert exchange.aborts == ["hangup"] and rec.outcome is None  # the loop decides it
    rec.stop.unlink()
    assert hangup.action is None
    rec.stop.hang_up()
    assert exchange.aborts == ["hangup"]


def test_the_exchange_state_machine() -> None:
    shut: list[int] = []
    state = ExchangeState()
    assert state.to(State.SENT) and state.to(State.BODY)
    with pytest.raises(AssertionError):
        state.to(State.DONE)  # not from BODY: only a whole answer is pooled
    state.abort_with(lambda: shut.append(1))
    assert state.state is State.SHUT_DOWN and shut == [1]
    assert not state.to(State.READ)  # the loop's move after an abort loses
    assert not state.end(lambda: shut.append(2)) and state.state is State.SHUT_DOWN
    assert shut == [1, 2]

    kept = ExchangeState()
    for step in (State.SENT, State.READ, State.WHOLE):
        assert kept.to(step)
    assert kept.end(lambda: shut.append(3)) and kept.state is State.DONE
    kept.abort_with(lambda: shut.append(4))  # over: a late stop never touches it
    assert kept.state is State.DONE and shut == [1, 2]

    closing = ExchangeState()
    for step in (State.SENT, State.READ, State.WHOLE):
        closing.to(step)
    closing.keep_alive = False
    assert not closing.end(lambda: shut.append(5)) and closing.state is State.CLOSED


async def test_an_exchange_aborted_from_a_thread_fails_as_aborted_and_is_never_pooled(
    nursery: trio.Nursery,
) -> None:
    """Mid-body, an abort from another thread wakes the read with Aborted (never the
    upstream's error), and an exchange aborted before it connects sends nothing."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello"
    upstream = ScriptedUpstream([answer], then="hold")  # the other half never comes
    await upstream.start(nursery)
    origin = ("http", "127.0.0.1", upstream.port)
    pool = UpstreamPool(ssl.create_default_context())
    with trio.fail_after(10):
        exchange = pool.exchange(origin, b"GET", b"/", [], b"", DEADLINES)
        async with exchange.open() as response:
            assert await response.next_chunk() == b"hello"
            await trio.to_thread.run_sync(exchange.abort)
            with pytest.raises(Aborted):
                await response.next_chunk()
        assert exchange.state is State.SHUT_DOWN and pool.idle_connections() == 0

        before = pool.exchange(origin, b"GET", b"/", [], b"", DEADLINES)
        before.abort()
        with pytest.raises(Aborted):
            async with before.open():
                pass
    assert len(upstream.received) == 1
    await pool.aclose()


def test_the_key_limiter_says_why_not() -> None:
    one = ClientKey("one", "sk-1", max_concurrent=1)
    rate = ClientKey("rate", "sk-2", per_minute=1)
    limiter = KeyLimiter((one, rate))
    slot = limiter.acquire(one)
    assert isinstance(slot, Slot)
    assert limiter.acquire(one) == Busy(retry_after_s=1.0)
    slot.release()
    assert isinstance(limiter.acquire(one), Slot)
    assert isinstance(limiter.acquire(rate), Slot)
    limited = limiter.acquire(rate)
    assert isinstance(limited, Limited) and 1 <= limited.retry_after_s <= 60


def test_the_hooks_between_proxy_and_server_travel_in_scope_extensions() -> None:
    """The proxy hands its hook in ``extensions`` (and at the top level, for a server
    that reads it there), and reads the server's there first."""

    def hook() -> None:
        pass

    scope: dict[str, object] = {"extensions": {"http.response.trailers": {}}}
    give_client_gone(scope, hook)
    assert scope["extensions"] == {"http.response.trailers": {}, CLIENT_GONE: hook}
    assert scope[CLIENT_GONE] is hook
    new, old = _Hangup(), _Hangup()
    assert hangup_of({"extensions": {CLIENT_HANGUP: new}, CLIENT_HANGUP: old}) is new
    assert hangup_of({"extensions": None, CLIENT_HANGUP: old}) is old
    assert hangup_of({}) is None
    queued = [True, False]

    async def receive() -> dict[str, object]:
        raise AssertionError("never awaited")

    offered = {"extensions": {"trioproxy.gone_already": queued.pop}}
    assert gone_already(receive, offered) is False and gone_already(receive, offered) is True
    assert gone_already(receive, {}) is False  # not a trio channel's, and nothing offered
