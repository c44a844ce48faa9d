"""The relay's answer to a failed exchange (``relay/answers.py``,
``answer_failure``): each failure type, in each phase, gets the answer its
table documents. No sockets: the answer is what the relay hands the server's
``send``."""

import json
from typing import Any

import pytest

from trioproxy.proxy.core.outcome import Outcome, Phase
from trioproxy.proxy.core.record import RequestRecord
from trioproxy.proxy.relay.answers import answer_failure
from trioproxy.proxy.upstream.errors import (
    Aborted,
    ConnectTimeout,
    ExchangeError,
    HeadersTimeout,
    IdleTimeout,
    Unreachable,
    Unsendable,
    UpstreamBroken,
)

TIMEOUTS: list[type[ExchangeError]] = [ConnectTimeout, HeadersTimeout, IdleTimeout]
ERRORS: list[type[ExchangeError]] = [Unreachable, Unsendable, UpstreamBroken]
BEFORE_HEADERS = [Phase.UPLOAD, Phase.CONNECT, Phase.WAITING_HEADERS]
AFTER_HEADERS = [Phase.WAITING_FIRST_BYTE, Phase.STREAMING]


async def _answer(
    failure: ExchangeError, phase: Phase, *, early: bool = False, event_stream: bool = False
) -> tuple[RequestRecord, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    rec = RequestRecord("POST", "/v1/chat/completions")
    rec.phase, rec.event_stream = phase, event_stream
    await answer_failure(send, rec, failure, early)
    return rec, sent


def _json(sent: list[dict[str, Any]]) -> tuple[int, Any]:
    (start,) = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[-1].get("more_body", False) is False
    return start["status"], json.loads(body)


def _event(sent: list[dict[str, Any]]) -> Any:
    (message,) = sent
    assert message["type"] == "http.response.body" and message["more_body"] is False
    name, data = message["body"].split(b"\n", 1)
    assert name == b"event: error" and message["body"].endswith(b"\n\n")
    return json.loads(data.removeprefix(b"data: "))


@pytest.mark.parametrize("phase", BEFORE_HEADERS + AFTER_HEADERS)
@pytest.mark.parametrize("early", [False, True])
async def test_an_aborted_exchange_is_the_stops_and_gets_no_answer(
    phase: Phase, early: bool
) -> None:
    rec, sent = await _answer(Aborted("a stop"), phase, early=early, event_stream=True)
    assert sent == []
    assert rec.outcome is Outcome.CLIENT_CLOSED and rec.status_logged == 499


@pytest.mark.parametrize("phase", BEFORE_HEADERS)
@pytest.mark.parametrize("kind", TIMEOUTS + ERRORS, ids=lambda k: k.__name__)
async def test_before_headers_a_timeout_is_504_and_any_other_failure_502_json(
    phase: Phase, kind: type[ExchangeError]
) -> None:
    rec, sent = await _answer(kind("upstream said \x00 no"), phase)
    status, body = _json(sent)
    timeout = kind in TIMEOUTS
    outcome = Outcome.UPSTREAM_TIMEOUT if timeout else Outcome.UPSTREAM_ERROR
    assert status == rec.status == (504 if timeout else 502)
    assert rec.outcome is outcome
    assert body["error"]["type"] == body["error"]["code"] == outcome
    what = "timed out" if timeout else "unreachable or failed"
    assert body["error"]["message"].startswith(f"upstream {what}: upstream said")
    assert "\x00" not in body["error"]["message"]  # the upstream's words, kept printable


@pytest.mark.parametrize("phase", AFTER_HEADERS)
@pytest.mark.parametrize("kind", TIMEOUTS + ERRORS, ids=lambda k: k.__name__)
async def test_after_headers_an_event_stream_ends_with_an_error_event(
    phase: Phase, kind: type[ExchangeError]
) -> None:
    rec, sent = await _answer(kind("cut"), phase, event_stream=True)
    timeout = kind in TIMEOUTS
    outcome = Outcome.UPSTREAM_TIMEOUT if timeout else Outcome.UPSTREAM_ERROR
    error = _event(sent)["error"]
    assert error["type"] == outcome and rec.outcome is outcome
    assert error["message"] == f"upstream {'timed out' if timeout else 'failed'} mid-stream: cut"


@pytest.mark.parametrize("phase", AFTER_HEADERS)
@pytest.mark.parametrize("kind", TIMEOUTS + ERRORS, ids=lambda k: k.__name__)
async def test_after_headers_any_other_body_is_left_unfinished(
    phase: Phase, kind: type[ExchangeError]
) -> None:
    """Never a body that can pass for whole: nothing more is sent, so the
    server closes the connection on a truncated body."""
    rec, sent = await _answer(kind("cut"), phase, event_stream=False)
    assert sent == []
    assert rec.outcome in (Outcome.UPSTREAM_TIMEOUT, Outcome.UPSTREAM_ERROR)
    assert rec.status == 0  # the status the client already has stays the logged one


@pytest.mark.parametrize("kind", TIMEOUTS + ERRORS, ids=lambda k: k.__name__)
async def test_in_early_headers_mode_a_failure_before_the_upstreams_head_is_an_error_event(
    kind: type[ExchangeError],
) -> None:
    """The 200 and the event stream went out already: a status can no longer say it."""
    rec, sent = await _answer(kind("late"), Phase.WAITING_HEADERS, early=True)
    assert _event(sent)["error"]["type"] == rec.outcome
    assert not any(m["type"] == "http.response.start" for m in sent)


@pytest.mark.parametrize("phase", BEFORE_HEADERS + AFTER_HEADERS)
@pytest.mark.parametrize("kind", TIMEOUTS + ERRORS, ids=lambda k: k.__name__)
async def test_a_stop_that_decided_first_keeps_its_outcome_and_nothing_is_sent(
    phase: Phase, kind: type[ExchangeError]
) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    rec = RequestRecord("POST", "/v1/chat/completions")
    rec.phase, rec.event_stream = phase, True
    rec.stop.fire(Outcome.CLIENT_CLOSED)
    await answer_failure(send, rec, kind("too late"), False)
    assert sent == [] and rec.outcome is Outcome.CLIENT_CLOSED
