"""``--log-format json``, run as operators run it: every line the process writes
is one JSON object, the access lines with their values as fields."""

import json
import logging
import os
import pathlib
import re
import signal
import sys
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import run_cli
from trioproxy.conformance import RawClient, StopKind, chat_body, request_bytes
from trioproxy.proxy.core.bounded import escape_controls
from trioproxy.proxy.core.lines import JsonLineFormatter
from trioproxy.proxy.gateway.settings import load

_SETTINGS = """
[[upstream]]
name = "sim"
url = "{upstream}/v1"
models = ["sim-small"]

[[key]]
name = "alice"
key_env = "LOG_TEST_ALICE"
per_minute = 2

[[key]]
name = "bob"
key_env = "LOG_TEST_BOB"
"""


def _parsed(stderr: bytes) -> list[dict[str, Any]]:
    lines = stderr.decode().splitlines()
    assert lines, "no line at all"
    objects = [json.loads(line) for line in lines]  # each line, whole, is one object
    for obj in objects:
        assert isinstance(obj, dict)
        assert {"time", "level", "logger", "pid", "message"} <= obj.keys(), obj
        assert obj["time"].endswith("Z") and obj["level"] in {"INFO", "WARNING"}, obj
    return objects


async def _stopped_stream(host: str, port: int) -> None:
    """A stream the client resets after its third event: 499 at INFO."""
    stopped = await RawClient.connect(host, port)
    head = {"x-sim-tokens": "100000", "authorization": "Bearer sk-alice", "x-request-id": "stop"}
    await stopped.send(request_bytes("POST", "/v1/chat/completions", chat_body(True), head))
    await stopped.read_until(b"data: ", count=3)
    stopped.stop(StopKind.RST)


def _dot_segment(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Request:
    """A request for ``/v1/%2e%2e/x``, sent as written: 400."""
    request = client.build_request("GET", "/v1/x", headers=headers)
    request.url = request.url.copy_with(raw_path=b"/v1/%2e%2e/x")
    return request


async def test_every_line_of_a_run_is_one_json_object_with_the_access_fields(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_TEST_ALICE", "sk-alice")
    monkeypatch.setenv("LOG_TEST_BOB", "sk-bob")
    alice, bob = {"authorization": "Bearer sk-alice"}, {"authorization": "Bearer sk-bob"}
    chat = {"model": "sim-small", "messages": []}
    with trio.fail_after(60):
        async with run_cli("sim", "--port", "0") as sim:
            settings = tmp_path / "trioproxy.toml"
            settings.write_text(_SETTINGS.format(upstream=await sim.origin()))
            args = ["serve", "--config", str(settings), "--port", "0", "--admin-key", "adm"]
            async with run_cli(*args, "--log-format", "json") as proxy:
                origin = await proxy.origin()
                host, port = origin.removeprefix("http://").rsplit(":", 1)
                await _stopped_stream(host, int(port))
                await proxy.wait_for(b'"status":499')
                async with httpx.AsyncClient(base_url=origin) as client:
                    post = "/v1/chat/completions"
                    statuses = [
                        (await client.post(post, json=chat, headers=alice)).status_code,
                        (await client.post(post, json=chat, headers=alice)).status_code,  # 429
                        (await client.post(post, json=chat)).status_code,  # 401
                        (
                            await client.post(post, json=chat | {"model": "x"}, headers=bob)
                        ).status_code,
                        (await client.get("/favicon.ico")).status_code,
                        (await client.send(_dot_segment(client, bob))).status_code,
                    ]
                await proxy.wait_for(b'"status":400')
                proxy.process.send_signal(signal.SIGINT)
                output = await proxy.drain()
    assert statuses == [200, 429, 401, 404, 404, 400]
    objects = _parsed(output)
    access = [o for o in objects if o["logger"] == "trioproxy.access"]
    # A line is written as its request ends, which can be after the client has its
    # answer and sent the next request: the lines after the stop in any order.
    assert access[0]["status"] == 499
    assert sorted(o["status"] for o in access[1:]) == [200, 400, 401, 404, 404, 429]
    stop = access[0]
    assert stop["level"] == "INFO" and stop["outcome"] == "client_closed"
    assert stop["phase"] == "streaming" and stop["request_id"] == "stop"
    assert stop["model"] == "sim-small" and stop["upstream"] == "sim" and stop["key"] == "alice"
    assert stop["pid"] == proxy.process.pid and stop["bytes"] > 0
    assert isinstance(stop["duration_ms"], float) and isinstance(stop["ttfb_ms"], float)
    assert stop["method"] == "POST" and stop["path"] == "/v1/chat/completions"
    outcomes = {200: "completed", 429: "limited", 401: "refused", 404: "not_found"}
    outcomes[400] = "bad_request"
    assert all(o["outcome"] == outcomes[o["status"]] for o in access[1:]), access
    (whole,) = (o for o in access if o["status"] == 200)
    assert whole["phase"] == "body" and isinstance(whole["usage"], dict)
    assert all(len(o["request_id"]) == 32 for o in access[1:])
    others = {o["logger"] for o in objects} - {"trioproxy.access"}
    assert {"trioproxy", "trioproxy.server"} <= others, others
    warned = [o for o in objects if o["level"] == "WARNING"]
    assert any("--admin-key" in o["message"] for o in warned), warned
    assert any("shutting down" in o["message"] for o in objects)


async def test_text_lines_carry_the_pid() -> None:
    with trio.fail_after(30):
        async with run_cli("sim", "--port", "0") as sim:
            upstream = await sim.origin()
            async with run_cli("serve", "--upstream", f"{upstream}/v1", "--port", "0") as proxy:
                line = await proxy.wait_for(b"Running on http")
    assert f" [{proxy.process.pid}] INFO trioproxy.server: ".encode() in line


def test_the_log_format_comes_from_the_option_the_variable_or_the_file(
    tmp_path: pathlib.Path,
) -> None:
    settings = tmp_path / "trioproxy.toml"
    settings.write_text('[server]\nlog_format = "json"\n')
    assert load(None, {}, {}).log_format == "text"
    assert load(str(settings), {}, {}).log_format == "json"
    assert load(None, {}, {"TRIOPROXY_LOG_FORMAT": "json"}).log_format == "json"
    assert load(str(settings), {"log_format": "text"}, {}).log_format == "text"
    assert os.environ.get("TRIOPROXY_LOG_FORMAT") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(max_size=50))
def test_a_json_line_is_one_line_of_json_whatever_a_value_holds(message: str, model: str) -> None:
    record = logging.LogRecord("trioproxy.access", logging.INFO, __file__, 1, message, None, None)
    record.fields = lambda: {"model": model, "nested": {model: [model]}, "level": "forged"}
    try:
        raise ValueError(f"boom\n{model}")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = JsonLineFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", line)
    parsed = json.loads(line)
    assert parsed["message"] == escape_controls(message)  # read as a text line reads it
    assert parsed["model"] == escape_controls(model) and parsed["level"] == "INFO"
    assert "Traceback" in parsed["exception"]
