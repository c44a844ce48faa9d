"""The proxy's own stops answer honestly: the admin's cancel in each phase, and the
end of a shutdown's grace period. Before the head, 503 JSON with a code; after it,
on an event stream, an SSE ``error`` event, then the end; any other body already
begun, the close. The access line logs the status the client got."""

import json
from typing import Any

import httpx
import pytest
import trio

from tests.helpers import AccessLog, ScriptedUpstream, assert_no_tracebacks, start_sim
from trioproxy.conformance import RawClient, chat_body, request_bytes
from trioproxy.proxy.app import serve_proxy
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.server import hypercorn_config
from trioproxy.sim import SimUpstream

ADMIN = {"authorization": "Bearer adm"}
ENDLESS = {"x-sim-tokens": "100000", "x-sim-interval": "0.01"}


async def _proxy(nursery: trio.Nursery, upstream: str, **config: Any) -> tuple[str, int]:
    hypercorn = hypercorn_config("127.0.0.1", 0)
    proxy = ProxyConfig(upstream=upstream, admin_key="adm", **config)
    (bound,) = await nursery.start(serve_proxy, proxy, hypercorn)
    host, port = str(bound).removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def _cancel_the_one_in(origin: str, phase: str) -> None:
    """The admin's way: wait for the request to be listed in ``phase``, and cancel it.
    The listing is all an admin has to wait on, so this polls it."""
    async with httpx.AsyncClient(base_url=origin, headers=ADMIN) as admin:
        found: list[dict[str, Any]] = []
        while not found:
            listed = (await admin.get("/admin/requests")).json()["requests"]
            assert len(listed) == 1, listed
            found = [r for r in listed if r["phase"] == phase]
            await trio.sleep(0 if found else 0.01)
        (entry,) = found
        answer = await admin.delete(f"/admin/requests/{entry['id']}")
    assert answer.json() == {"id": entry["id"], "outcome": "cancelled_by_admin"}


def _error_json(client: RawClient, code: str) -> None:
    assert client.status == 503, client.received[:200]
    head = client.received.partition(b"\r\n\r\n")[0].lower()
    assert b"content-type: application/json" in head
    error = json.loads(client.body)["error"]
    assert error["code"] == code and error["type"] == "server_error" and error["message"]


def _last_event_is_error(client: RawClient, code: str) -> None:
    """The stream ended properly (chunked: the last chunk came) on an error event."""
    assert client.status == 200 and client.received.endswith(b"0\r\n\r\n"), client.received[-200:]
    *_, last = [e for e in client.body.split(b"\n\n") if e.strip()]
    name, data = last.split(b"\n", 1)
    assert name == b"event: error" and data.startswith(b"data: "), last
    assert json.loads(data.removeprefix(b"data: "))["error"]["code"] == code


async def test_an_admin_cancel_during_the_upload_answers_503(
    nursery: trio.Nursery, access_log: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the cancel was refused (404, "no request in flight") while the body came."""
    sim = SimUpstream()
    host, port = await _proxy(nursery, f"{await start_sim(nursery, sim)}/v1")
    origin = f"http://{host}:{port}"
    with trio.fail_after(10):
        client = await RawClient.connect(host, port)
        whole = request_bytes("POST", "/v1/chat/completions", chat_body(False), {})
        await client.send(whole[:-5])  # the body's last bytes never come
        await _cancel_the_one_in(origin, "upload")
        await client.read_all()
        line = await access_log.wait_for_line("outcome=")
    _error_json(client, "cancelled")
    assert b"connection: close" in client.received.lower()  # its body was left unread
    assert " 503 outcome=cancelled_by_admin phase=upload " in line, line
    assert sim.fates == []  # nothing was opened upstream
    assert_no_tracebacks(caplog)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_admin_cancel_before_the_head_answers_503_json_never_an_empty_500(
    nursery: trio.Nursery, access_log: AccessLog, stream: bool
) -> None:
    sim = SimUpstream()
    host, port = await _proxy(nursery, f"{await start_sim(nursery, sim)}/v1")
    headers = {"x-sim-id": "w", "x-sim-headers-delay": "60"}
    with trio.fail_after(10):
        client = await RawClient.connect(host, port)
        await client.send(request_bytes("POST", "/v1/chat/completions", chat_body(stream), headers))
        await sim.wait_started("w")
        await _cancel_the_one_in(f"http://{host}:{port}", "waiting_headers")
        await client.read_response()
        fate = await sim.wait_ended("w")
        line = await access_log.wait_for_line("outcome=")
    _error_json(client, "cancelled")
    assert fate.outcome == "disconnected"
    assert " 503 outcome=cancelled_by_admin phase=waiting_headers " in line, line


async def test_an_admin_cancel_after_early_headers_ends_the_stream_on_an_error_event(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    sim = SimUpstream()
    upstream = f"{await start_sim(nursery, sim)}/v1"
    host, port = await _proxy(nursery, upstream, early_headers=True)
    headers = {"x-sim-id": "e", "x-sim-headers-delay": "60"}
    with trio.fail_after(10):
        client = await RawClient.connect(host, port)
        await client.send(request_bytes("POST", "/v1/chat/completions", chat_body(True), headers))
        await client.read_until(b"\r\n\r\n")  # the early 200 head
        await sim.wait_started("e")
        await _cancel_the_one_in(f"http://{host}:{port}", "waiting_headers")
        await client.read_until(b"\r\n0\r\n\r\n")
        line = await access_log.wait_for_line("outcome=")
    _last_event_is_error(client, "cancelled")
    assert " 200 outcome=cancelled_by_admin phase=waiting_headers " in line, line


async def test_an_admin_cancel_mid_stream_ends_it_on_an_error_event(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    sim = SimUpstream()
    host, port = await _proxy(nursery, f"{await start_sim(nursery, sim)}/v1")
    with trio.fail_after(10):
        client = await RawClient.connect(host, port)
        headers = ENDLESS | {"x-sim-id": "s"}
        await client.send(request_bytes("POST", "/v1/chat/completions", chat_body(True), headers))
        await client.read_until(b"data: ", 3)
        await _cancel_the_one_in(f"http://{host}:{port}", "streaming")
        await client.read_until(b"\r\n0\r\n\r\n")
        fate = await sim.wait_ended("s")
        line = await access_log.wait_for_line("outcome=")
    _last_event_is_error(client, "cancelled")
    assert b"[DONE]" not in client.body and fate.outcome == "disconnected"
    assert " 200 outcome=cancelled_by_admin phase=streaming " in line, line


async def test_an_admin_cancel_of_a_json_body_under_way_just_closes(
    nursery: trio.Nursery, access_log: AccessLog
) -> None:
    """Nothing can be added to a JSON body half sent: it is left short of its length."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    upstream = ScriptedUpstream([head + b'{"id": "x"'], then="hold")
    host, port = await _proxy(nursery, await upstream.start(nursery))
    with trio.fail_after(10):
        client = await RawClient.connect(host, port)
        await client.send(request_bytes("POST", "/v1/chat/completions", chat_body(False), {}))
        await client.read_until(b'{"id": "x"')
        await _cancel_the_one_in(f"http://{host}:{port}", "body")
        await client.read_all()  # the proxy closes the connection
        line = await access_log.wait_for_line("outcome=")
    assert client.status == 200 and client.body == b'{"id": "x"'  # 10 of its 1000 bytes
    assert " 200 outcome=cancelled_by_admin phase=body " in line, line


async def test_the_end_of_a_shutdowns_grace_period_answers_each_request_left(
    nursery: trio.Nursery, access_log: AccessLog, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream that ends within the grace period is whole; one still running when it
    ends gets an SSE error event; one still waiting for its head gets 503 JSON."""
    sim = SimUpstream()
    hypercorn = hypercorn_config("127.0.0.1", 0)
    hypercorn.graceful_timeout = 0.5
    shutdown = trio.Event()
    config = ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1")
    served = trio.Event()

    async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
        await serve_proxy(
            config, hypercorn, shutdown_trigger=shutdown.wait, task_status=task_status
        )
        served.set()

    (bound,) = await nursery.start(serve)
    host, port = str(bound).removeprefix("http://").rsplit(":", 1)
    cases = {
        "short": (True, {"x-sim-tokens": "10", "x-sim-interval": "0.01"}),
        "long": (True, ENDLESS),
        "waiting": (False, {"x-sim-headers-delay": "60"}),
    }
    with trio.fail_after(15):
        clients = {}
        for sim_id, (stream, headers) in cases.items():
            clients[sim_id] = client = await RawClient.connect(host, int(port))
            body = chat_body(stream)
            headers = headers | {"x-sim-id": sim_id}
            await client.send(request_bytes("POST", "/v1/chat/completions", body, headers))
            await sim.wait_started(sim_id)
        shutdown.set()
        for client in clients.values():
            await client.read_all()
        await served.wait()  # the server stopped, nothing left behind
        lines = await access_log.wait_for(3)
    assert clients["short"].body.endswith(b"data: [DONE]\n\n")
    _last_event_is_error(clients["long"], "shutting_down")
    _error_json(clients["waiting"], "shutting_down")
    # "<id> POST /v1/chat/completions <status> outcome=<outcome> ...": one line each
    assert sorted(" ".join(line.split(" ")[3:5]) for line in lines) == [
        "200 outcome=completed",
        "200 outcome=shutdown",
        "503 outcome=shutdown",
    ]
    (warning,) = [r.getMessage() for r in caplog.records if "grace period over" in r.getMessage()]
    assert "2 requests stopped" in warning
    assert_no_tracebacks(caplog)
