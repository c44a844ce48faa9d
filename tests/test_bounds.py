"""Every outside value is bounded where it enters; every log line is one line; only
GET, POST and DELETE reach an upstream. On real sockets, through the real proxy."""

import io
import json
import logging
import pathlib
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import AccessLog, run_cli, start_proxy, start_sim
from trioproxy.conformance import H2Client, RawClient, free_port, request_bytes
from trioproxy.proxy.admin.cluster import Cluster, socket_path
from trioproxy.proxy.admin.inflight import LISTED_MAX, LISTING_MAX_BYTES, RECENT_MAX, Inflight
from trioproxy.proxy.core import bounded
from trioproxy.proxy.core.bounded import CUT, MODEL_MAX, OneLineFormatter, kept
from trioproxy.proxy.core.record import RequestRecord
from trioproxy.proxy.gateway.config import ClientKey, ProxyConfig
from trioproxy.proxy.upstream.routing import Upstream
from trioproxy.sim import SimUpstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
HUGE = 1024 * 1024
"""Characters of each hostile model name here (the measurement in docs/security.md used 16 MiB)."""
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@given(value=st.text(st.characters(exclude_categories=())), cap=st.integers(len(CUT), 300))
def test_a_kept_value_is_bounded_escaped_and_marked_when_cut(value: str, cap: int) -> None:
    copy = kept(value, cap)
    assert len(copy) <= cap and CONTROL.search(copy) is None
    if CONTROL.search(value) is None and len(value) <= cap:
        assert copy == value
    elif len(value) > cap:
        assert copy.endswith(CUT)


def test_a_configured_model_over_the_cap_stops_start_up() -> None:
    with pytest.raises(ValueError, match="model name over 200"):
        Upstream("a", "http://127.0.0.1:1/v1", None, ("m" * (MODEL_MAX + 1),))


@pytest.mark.parametrize("routing", [True, False], ids=["routing-by-model", "one-upstream"])
async def test_huge_models_are_kept_cut_in_the_log_the_listing_and_the_metrics(
    nursery: trio.Nursery, access_log: AccessLog, routing: bool
) -> None:
    sim = SimUpstream()
    url = f"{await start_sim(nursery, sim)}/v1"
    models = ("alpha", "a-*") if routing else ("*",)
    upstreams = (Upstream("a", url, None, models),)
    proxy = await start_proxy(
        nursery, ProxyConfig(upstream="", upstreams=upstreams, admin_key="adm")
    )
    admin = {"authorization": "Bearer adm"}
    count = 5
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=proxy, timeout=20) as client:
            before = len((await client.get("/metrics")).content)
            answers = [
                await client.post(
                    "/v1/chat/completions", json=CHAT | {"model": f"a-{n}" + "x" * HUGE}
                )
                for n in range(count)
            ]
            # A name at the cap is whole, and a glob still matches it.
            at_cap = await client.post(
                "/v1/chat/completions", json=CHAT | {"model": "a-" + "y" * 198}
            )
            metrics = (await client.get("/metrics")).content
            listing = await client.get("/admin/requests", headers=admin)
        lines = await access_log.wait_for(count + 1)
    assert at_cap.status_code == 200
    if routing:  # an over-long name is no configured name: not even the glob "a-*"
        assert {a.status_code for a in answers} == {404}
        assert len(sim.fates) == 1
        message = answers[0].json()["error"]["message"]
        assert len(message) < 300 and CUT in message
    else:  # the proxy routes on no model: the upstream gets the body as it was
        assert {a.status_code for a in answers} == {200}
    assert len(metrics) - before < count * 4096
    assert len(listing.content) < (count + 1) * 1024
    (cut,) = {r["model"] for r in listing.json()["recent"] if r["model"].startswith("a-0")}
    assert len(cut) == MODEL_MAX and cut.endswith(CUT)
    assert all(len(line) < 1024 for line in lines)


def test_a_workers_listing_at_its_worst_fits_the_control_socket() -> None:
    """Every kept value at its cap, in the costliest characters JSON has (12 bytes each)."""
    worst = "\U0001f600" * 5000
    inflight = Inflight()
    records = []
    for _ in range(LISTED_MAX + RECENT_MAX + 7):
        rec = RequestRecord(worst, worst)
        rec.model = kept(worst, bounded.MODEL_MAX)
        rec.key_name = kept(worst, bounded.KEY_NAME_MAX)
        rec.client = kept(worst, bounded.ADDRESS_MAX)
        rec.upstream = "u" * bounded.UPSTREAM_NAME_MAX
        rec.usage = {"x": worst}
        inflight.add(rec)
        records.append(rec)
    for rec in records[:RECENT_MAX]:
        inflight.remove(rec)
    listing = trio.run(Cluster(inflight).listing)
    size = len(json.dumps(listing).encode())
    assert len(listing["requests"]) == LISTED_MAX and listing["unlisted"] == 7
    assert len(listing["recent"]) == RECENT_MAX
    assert size <= LISTING_MAX_BYTES <= 32 * 1024 * 1024, size


@pytest.mark.parametrize("answer", [b"not json", b" " * (LISTING_MAX_BYTES + 1)])
async def test_a_worker_whose_listing_cannot_be_read_is_named_not_dropped(
    nursery: trio.Nursery, tmp_path: pathlib.Path, answer: bytes
) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(socket_path(tmp_path, 4242)))
    sock.listen(4)

    async def broken(stream: trio.SocketStream) -> None:
        with suppress(trio.BrokenResourceError):
            await stream.receive_some()
            await stream.send_all(answer)

    nursery.start_soon(trio.serve_listeners, broken, [trio.SocketListener(sock)])
    with trio.fail_after(10):
        listing = await Cluster(Inflight(), str(tmp_path)).listing()
    assert listing["unanswered"] == ["worker-4242"]


# Hypothesis runs each example in a trio run of its own: a proxy per example,
# so the key's name can be generated too.
@settings(max_examples=30, deadline=None)
@given(
    method=st.sampled_from(["POST", "GET", "DELETE", "TRACE", "PROPFIND"]),
    path=st.binary(max_size=60),
    model=st.text(st.characters(exclude_categories=()), max_size=60),
    key_name=st.text(st.characters(exclude_categories=()), min_size=1, max_size=30),
    admin=st.booleans(),  # with an admin key the model is parsed, escapes and all
)
async def test_every_request_writes_one_line_with_no_control_character(
    method: str, path: bytes, model: str, key_name: str, admin: bool
) -> None:
    target = "/v1/" + "".join(f"%{b:02x}" for b in path)
    body = json.dumps(CHAT | {"model": model}).encode()
    headers = {"authorization": "Bearer sk-t", "connection": "close", "x-sim-tokens": "2"}
    with one_line_log() as log, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            upstream = await start_sim(nursery, SimUpstream())
            key = ClientKey(key_name, "sk-t", per_minute=1)  # the second request: a 429 line
            config = ProxyConfig(
                upstream=f"{upstream}/v1", client_keys=(key,), admin_key="adm" if admin else None
            )
            host, port = (await start_proxy(nursery, config)).rsplit("//")[1].rsplit(":", 1)
            started = log.getvalue()
            for _ in range(2):
                client = await RawClient.connect(host, int(port))
                await client.send(request_bytes(method, target, body, headers))
                await client.read_all()
                client.close()
            while log.getvalue().count("\n") - started.count("\n") < 2:  # noqa: ASYNC110
                await trio.sleep(0.005)
            nursery.cancel_scope.cancel()
        written = log.getvalue()[len(started) :]
    lines = written.split("\n")[:-1]
    assert len(lines) == 2, written
    assert all(CONTROL.search(line) is None and len(line) < 2048 for line in lines), lines
    assert " 429 outcome=limited " in lines[1]


@contextmanager
def one_line_log() -> Iterator[io.StringIO]:
    """Every logger's lines, as the proxy's command writes them (``cli._setup_logging``)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_the_command_writes_a_forged_path_as_one_escaped_line() -> None:
    forged = "/v1/x%0d%0a2099-01-01%2000:00:00%20INFO%20trioproxy.access:%20FORGED%1b[2J"
    port = free_port()
    with trio.fail_after(60):
        async with run_cli("serve", "--port", str(port)) as proxy:
            await proxy.wait_for(b"Running on http://127.0.0.1:%d" % port)
            client = await RawClient.connect("127.0.0.1", port)
            await client.send(request_bytes("GET", forged, b"", {"connection": "close"}))
            await client.read_all()
            client.close()
            line = await proxy.wait_for(b"FORGED")
    assert client.status == 400
    assert line.startswith(b"20") and b" INFO trioproxy.access: " in line
    assert b"x\\x0d\\x0a2099-01-01" in line and b"\\x1b[2J" in line


REFUSED = ["TRACE", "TRACK", "CONNECT", "PROPFIND", "PUT", "PATCH", "OPTIONS", "HEAD"]


@pytest.mark.parametrize("method", REFUSED)
async def test_methods_the_apis_do_not_use_get_405_and_reach_no_upstream(
    nursery: trio.Nursery, access_log: AccessLog, method: str
) -> None:
    sim = SimUpstream()
    config = ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1", upstream_key="sk-up")
    host, port = (await start_proxy(nursery, config)).rsplit("//")[1].rsplit(":", 1)
    with trio.fail_after(10):
        client = await RawClient.connect(host, int(port))
        body = json.dumps(CHAT | {"model": "m"}).encode()
        await client.send(request_bytes(method, "/v1/chat/completions", body, {"x-sim-id": "m"}))
        await client.read_until(b"\r\n\r\n")
        if method != "HEAD":
            await client.read_response()
        client.close()
        line = await access_log.wait_for_line(" 405 ")
    head = client.received.partition(b"\r\n\r\n")[0].lower()
    assert client.status == 405 and b"\r\nallow: GET, POST, DELETE".lower() in head
    if method != "HEAD":
        assert json.loads(client.body)["error"]["code"] == "method_not_allowed"
    assert sim.fates == []
    assert line.startswith(f"{method} /v1/chat/completions 405 ") or f" {method} " in line


async def test_h2c_gets_the_same_405_and_the_three_methods_still_reach(
    nursery: trio.Nursery,
) -> None:
    sim = SimUpstream()
    config = ProxyConfig(upstream=f"{await start_sim(nursery, sim)}/v1")
    host, port = (await start_proxy(nursery, config)).rsplit("//")[1].rsplit(":", 1)
    body = json.dumps(CHAT | {"model": "m"}).encode()
    with trio.fail_after(10):
        client = await H2Client.connect(host, int(port))
        trace = await client.request("/v1/chat/completions", {}, body, method="TRACE")
        track = await client.request("/v1/models", {}, method="TRACK")
        await client.pump_until(lambda: {trace, track} <= client.ended)
        assert sim.fates == []
        sent = {
            method: await client.request("/v1/files/f", {"x-sim-id": method}, method=method)
            for method in ("GET", "DELETE")
        }
        post = await client.request("/v1/chat/completions", {"x-sim-id": "POST"}, body)
        await client.pump_until(lambda: {*sent.values(), post} <= client.ended)
        client.close()
    for stream in (trace, track):
        assert client.headers[stream][b":status"] == b"405"
        assert client.headers[stream][b"allow"] == b"GET, POST, DELETE"
        assert json.loads(client.data[stream])["error"]["code"] == "method_not_allowed"
    assert {f.sim_id for f in sim.fates} == {"GET", "DELETE", "POST"}


async def test_the_commands_log_setup_writes_any_logger_and_any_traceback_as_one_line() -> None:
    """Not only the access line: a library's warning and a traceback, through the
    handler ``trioproxy`` installs, each come out as one line."""
    script = (
        "import logging; from trioproxy.cli import _setup_logging; _setup_logging('INFO')\n"
        "logging.getLogger('hypercorn.error').warning('a\\nforged\\x1b[2J\\u2028\\x85\\ud800')\n"
        "try:\n    raise ValueError('x\\ny')\n"
        "except ValueError:\n    logging.getLogger('some.library').exception('failed')\n"
    )
    with trio.fail_after(30):
        done = await trio.run_process([sys.executable, "-c", script], capture_stderr=True)
    lines = done.stderr.decode().split("\n")[:-1]
    assert len(lines) == 2, lines
    assert lines[0].endswith("a\\x0aforged\\x1b[2J\\u2028\\x85\\ud800")
    assert "failed\\x0aTraceback (most recent call last):\\x0a" in lines[1]
    assert lines[1].endswith("ValueError: x\\x0ay")


async def test_the_control_routes_405_says_allow_and_a_cancels_404_echoes_its_id_bounded(
    nursery: trio.Nursery,
) -> None:
    config = ProxyConfig(upstream=f"{await start_sim(nursery, SimUpstream())}/v1", admin_key="a")
    proxy = await start_proxy(nursery, config)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy, timeout=5) as client:
            traced = await client.request("TRACE", "/health")
            hostile = "9-%1b[2J" + "z" * 5_000  # percent-encoded ESC: the route decodes it
            gone = await client.delete(
                f"/admin/requests/{hostile}", headers={"authorization": "Bearer a"}
            )
    assert traced.status_code == 405 and "GET" in traced.headers["allow"]
    assert traced.json()["error"]["code"] == "method_not_allowed"
    message = gone.json()["error"]["message"]
    assert gone.status_code == 404 and len(message) < 200
    assert CUT in message and "\x1b" not in message


async def test_a_fault_of_the_proxys_own_ends_the_request_with_an_outcome(
    nursery: trio.Nursery, access_log: AccessLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trioproxy.proxy.relay.forward import Forwarder

    async def broken(*args: object) -> None:
        raise RuntimeError("a fault inside the relay")

    monkeypatch.setattr(Forwarder, "forward", broken)
    sim = await start_sim(nursery, SimUpstream())
    proxy = await start_proxy(nursery, ProxyConfig(upstream=f"{sim}/v1"))
    with trio.fail_after(10), suppress(httpx.HTTPError):
        async with httpx.AsyncClient(base_url=proxy, timeout=5) as client:
            await client.post("/v1/chat/completions", json=CHAT | {"model": "m"})
        line = await access_log.wait_for_line("/v1/chat/completions")
    assert " outcome=upstream_error " in line and " 500 " in line
