"""Reloading the settings file, as nginx does on SIGHUP, and the stop signals.

A stream that spans a reload is held by a raw upstream written here, which
sends its first event, waits for the test to let it go on, and then sends the
rest: the reload happens while the stream is in flight, by construction, not
by timing. The server runs as operators run it (``trioproxy serve``, a
process of its own) where a signal is what is tested; ``POST /admin/reload``
and what a reload keeps (a key's slots, an upstream's connections) are tested
on the proxy in this test's run.
"""

import dataclasses
import json
import pathlib
import re
import signal
from functools import partial
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import (
    ADMIN,
    Client,
    Received,
    ScriptedUpstream,
    Server,
    admin,
    only_worker,
    plain_answer,
    run_cli,
    two_workers,
)
from trioproxy.conformance import RawClient, chat_body, free_port, request_bytes
from trioproxy.proxy.app import serve_proxy
from trioproxy.proxy.gateway.config import ClientKey
from trioproxy.proxy.gateway.keys import KeyLimiter, Slot
from trioproxy.proxy.gateway.reload import SettingsFile
from trioproxy.proxy.gateway.settings import load
from trioproxy.server import hypercorn_config

KEYS = {"TP_ALICE": "sk-alice", "TP_BOB": "sk-bob", "TP_CAROL": "sk-carol", "TP_ADMIN": ADMIN}
EVENTS = 5


@pytest.fixture(autouse=True)
def keys_in_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, key in KEYS.items():
        monkeypatch.setenv(name, key)


def settings_text(url: str, *keys: str, extra: str = "", alice_limit: int = 0) -> str:
    """A settings file: one upstream at ``url``, the admin key, and client keys by name."""
    text = f'[auth]\nadmin_key_env = "TP_ADMIN"\n{extra}\n[[upstream]]\nname = "main"\n'
    text += f'url = "{url}"\n'
    for name in keys:
        text += f'[[key]]\nname = "{name}"\nkey_env = "TP_{name.upper()}"\n'
        if name == "alice" and alice_limit:
            text += f"max_concurrent = {alice_limit}\n"
    return text


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(n: int) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"%d"}}]}\n\n' % n


ALL_EVENTS = b"".join(_event(n) for n in range(EVENTS)) + b"data: [DONE]\n\n"
_LAST_CHUNK = b"\r\n0\r\n\r\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def held_upstream(release: trio.Event) -> ScriptedUpstream:
    """An upstream that holds a stream asked with ``x-test-hold`` after its first event,
    until ``release``; any other request gets a plain answer."""

    async def play(stream: trio.SocketStream, received: Received) -> None:
        if received.header(b"x-test-hold") != b"yes":
            for piece in plain_answer(received):
                await stream.send_all(piece)
            return
        await stream.send_all(_SSE_HEAD + _chunk(_event(0)))
        await release.wait()
        for n in range(1, EVENTS):
            await stream.send_all(_chunk(_event(n)))
        await stream.send_all(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    return ScriptedUpstream(play=play)


async def open_held_stream(port: int, key: str) -> RawClient:
    client = await RawClient.connect("127.0.0.1", port)
    headers = {"authorization": f"Bearer {key}", "x-test-hold": "yes"}
    await client.send(request_bytes("POST", "/v1/chat/completions", chat_body(True), headers))
    await client.read_until(b"data: ")
    return client


async def status_with(port: int, key: str) -> int:
    """The status of one chat request with ``key``, on a connection of its own."""
    client = await RawClient.connect("127.0.0.1", port)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        await client.send(request_bytes("POST", "/v1/chat/completions", chat_body(False), headers))
        await client.read_response()
    finally:
        client.close()
    return int(client.received.split(b" ", 2)[1])


def _unchunked(raw: bytes) -> bytes:
    _, _, body = raw.partition(b"\r\n\r\n")
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            break
        out, body = out + rest[:length], rest[length + 2 :]
    return out


async def test_a_stream_spans_a_sighup_reload_whole_and_the_new_keys_apply_at_once(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    release = trio.Event()
    upstream = held_upstream(release)
    url = await upstream.start(nursery)
    path = tmp_path / "trioproxy.toml"
    path.write_text(settings_text(url, "alice", "bob"))
    port = free_port()
    with trio.fail_after(60):
        async with run_cli("serve", "--config", str(path), "--port", str(port)) as proxy:
            await proxy.wait_for(b"Running on")
            held = await open_held_stream(port, KEYS["TP_ALICE"])
            # alice goes, carol comes; alice's stream in flight goes on on the old keys.
            path.write_text(settings_text(url, "bob", "carol"))
            proxy.process.send_signal(signal.SIGHUP)
            line = await proxy.wait_for(b"SIGHUP: settings reloaded")
            assert b'2 keys (added "carol"; removed "alice")' in line, line
            assert await status_with(port, KEYS["TP_CAROL"]) == 200
            assert await status_with(port, KEYS["TP_ALICE"]) == 401
            assert await status_with(port, KEYS["TP_BOB"]) == 200
            release.set()
            await held.read_until(_LAST_CHUNK)
            assert _unchunked(held.received) == ALL_EVENTS, held.received
            proxy.process.send_signal(signal.SIGTERM)
            assert await proxy.process.wait() == 0
            log = (await proxy.drain()).decode()
    # Logged whole, on the key it started with (which the reload removed).
    assert re.search(rf"200 outcome=completed .* events={EVENTS + 1} .* key=alice ", log), log
    assert "Traceback" not in log, log


async def test_a_file_that_does_not_load_keeps_the_settings_in_use_and_says_why(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    url = await ScriptedUpstream().start(nursery)
    path = tmp_path / "trioproxy.toml"
    path.write_text(settings_text(url, "alice"))
    port = free_port()
    broken = {
        "[[upstream]\nname =": b"invalid TOML",
        settings_text(url, "alice", extra="[timeouts]\nconnect_s = 'ten'\n"): b"connect_s",
        settings_text(url, "alice", "dave"): b"TP_DAVE is not set",
    }
    with trio.fail_after(60):
        async with run_cli("serve", "--config", str(path), "--port", str(port)) as proxy:
            await proxy.wait_for(b"Running on")
            needle = b"WARNING trioproxy: SIGHUP: settings not reloaded, the ones in use stay: "
            for count, (text, reason) in enumerate(broken.items(), 1):
                path.write_text(text)
                proxy.process.send_signal(signal.SIGHUP)
                await proxy.wait_for(needle, count)
                lines = [line for line in proxy.output.splitlines() if needle in line]
                assert reason in lines[count - 1], lines
                assert await status_with(port, KEYS["TP_ALICE"]) == 200
            path.unlink()  # a file that cannot be read: the same
            proxy.process.send_signal(signal.SIGHUP)
            await proxy.wait_for(b"cannot read: No such file or directory")
            assert await status_with(port, KEYS["TP_ALICE"]) == 200
            proxy.process.send_signal(signal.SIGTERM)
            assert await proxy.process.wait() == 0
            log = await proxy.drain()
    assert b"settings reloaded" not in log and b"Traceback" not in log, log.decode()


async def test_sighup_without_a_settings_file_is_logged_and_ignored(nursery: trio.Nursery) -> None:
    url = await ScriptedUpstream().start(nursery)
    port = free_port()
    with trio.fail_after(60):
        async with run_cli("serve", "--upstream", url, "--port", str(port)) as proxy:
            await proxy.wait_for(b"Running on")
            proxy.process.send_signal(signal.SIGHUP)
            await proxy.wait_for(b"SIGHUP: no settings file to reload")
            assert await status_with(port, "") == 200
            proxy.process.send_signal(signal.SIGTERM)
            assert await proxy.process.wait() == 0


@pytest.mark.parametrize("then", [signal.SIGTERM, signal.SIGQUIT])
async def test_a_second_sigterm_or_a_sigquit_stops_now(
    nursery: trio.Nursery, then: signal.Signals
) -> None:
    release = trio.Event()
    url = await held_upstream(release).start(nursery)
    port = free_port()
    args = ("serve", "--upstream", url, "--port", str(port), "--grace-period", "600")
    with trio.fail_after(60):
        async with run_cli(*args) as proxy:
            await proxy.wait_for(b"Running on")
            held = await open_held_stream(port, "")
            proxy.process.send_signal(signal.SIGTERM)
            await proxy.wait_for(b"SIGTERM: shutting down")
            assert proxy.process.returncode is None  # draining: the stream goes on
            proxy.process.send_signal(then)
            # Cut now, not in 600 s: the bound above would fail first.
            assert await proxy.process.wait() == 0
            await held.read_all()
            log = (await proxy.drain()).decode()
    assert "requests in flight have 600 s" in log, log
    assert f"{then.name}: stopping now" in log, log
    assert "outcome=shutdown" in log and "Traceback" not in log, log
    assert b"[DONE]" not in held.received


async def start_in_process(
    nursery: trio.Nursery, path: pathlib.Path, file: bool = True, **options: Any
) -> int:
    """The proxy in this run, on the settings at ``path`` and the command line's
    ``options``, reloadable if ``file``."""
    given = {"config": str(path)} | options
    started = load(None, given)
    reloads = SettingsFile(given, started) if file else None
    serve = partial(serve_proxy, started.proxy, hypercorn_config("127.0.0.1", 0))
    (bound,) = await nursery.start(partial(serve, settings_file=reloads))
    return int(bound.rsplit(":", 1)[1])


async def reload(port: int, key: str = ADMIN) -> tuple[int, Any]:
    conn = await Client.open(port)
    try:
        status, body = await conn.request("POST", "/admin/reload", key)
    finally:
        await conn.aclose()
    return status, json.loads(body)


async def test_post_admin_reload_keeps_a_staying_keys_slot_and_refuses_a_removed_key(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    release = trio.Event()
    url = await held_upstream(release).start(nursery)
    path = tmp_path / "trioproxy.toml"
    path.write_text(settings_text(url, "alice", "bob", alice_limit=1))
    with trio.fail_after(30):
        port = await start_in_process(nursery, path)
        held = await open_held_stream(port, KEYS["TP_ALICE"])
        assert await status_with(port, KEYS["TP_ALICE"]) == 429
        path.write_text(
            settings_text(url, "alice", "carol", alice_limit=1, extra="[server]\nport = 1")
        )
        assert (await reload(port, "wrong"))[0] == 401
        status, answer = await reload(port)
        assert status == 200, answer
        assert answer["reloaded"] is True
        (worker,) = answer["workers"]
        assert worker["message"].startswith('1 upstream, 2 keys (added "carol"; removed "bob")')
        assert worker["needs_restart"] == ["server.port"]
        # The slot alice's stream took before the reload is still hers: not reset...
        assert await status_with(port, KEYS["TP_ALICE"]) == 429
        assert await status_with(port, KEYS["TP_BOB"]) == 401
        assert await status_with(port, KEYS["TP_CAROL"]) == 200
        release.set()
        await held.read_all()
        # ...and not leaked: her stream's end frees it.
        assert await status_with(port, KEYS["TP_ALICE"]) == 200


async def test_post_admin_reload_answers_why_not(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    url = await ScriptedUpstream().start(nursery)
    path = tmp_path / "trioproxy.toml"
    path.write_text(settings_text(url, "alice"))
    with trio.fail_after(30):
        port = await start_in_process(nursery, path)
        path.write_text(settings_text(url, "alice", extra="[cors]\norigins = 'x'\n"))
        status, answer = await reload(port)
        assert status == 500, answer
        error = answer["error"]
        assert error["code"] == "reload_failed"
        assert "cors.origins" in error["message"]
        assert await status_with(port, KEYS["TP_ALICE"]) == 200


async def test_post_admin_reload_without_a_settings_file_is_409(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    url = await ScriptedUpstream().start(nursery)
    path = tmp_path / "trioproxy.toml"
    path.write_text(settings_text(url))
    with trio.fail_after(30):
        port = await start_in_process(nursery, path, file=False)
        status, answer = await reload(port)
    assert status == 409
    assert answer["error"]["code"] == "no_settings_file"


async def test_a_reload_closes_a_removed_upstreams_idle_connections_and_routes_anew(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    # "drain": each holds its connection until the proxy closes it; the pool's own
    # expiry is checked only when a connection is taken again, which none will be.
    old, new = (ScriptedUpstream(_keep_alive_answer, then="drain") for _ in range(2))
    old_url, new_url = await old.start(nursery), await new.start(nursery)
    path = tmp_path / "trioproxy.toml"
    path.write_text(settings_text(old_url, "alice"))
    with trio.fail_after(30):
        port = await start_in_process(nursery, path)
        assert await status_with(port, KEYS["TP_ALICE"]) == 200
        assert len(old.received) == 1 and not old.closed.is_set()  # idle in the pool
        path.write_text(settings_text(new_url, "alice"))
        assert (await reload(port))[0] == 200
        await old.closed.wait()  # closed by the reload
        assert await status_with(port, KEYS["TP_ALICE"]) == 200
    assert len(new.received) == 1 and len(old.received) == 1


async def test_an_option_given_on_the_command_line_keeps_winning_after_a_reload(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    given, in_file, later = (ScriptedUpstream() for _ in range(3))
    urls = [await upstream.start(nursery) for upstream in (given, in_file, later)]
    path = tmp_path / "trioproxy.toml"
    path.write_text(settings_text(urls[1], "alice"))
    with trio.fail_after(30):
        port = await start_in_process(nursery, path, upstream=urls[0])
        path.write_text(settings_text(urls[2], "carol"))
        assert (await reload(port))[0] == 200
        assert await status_with(port, KEYS["TP_CAROL"]) == 200  # the file's keys: reloaded
    assert (len(given.received), len(in_file.received), len(later.received)) == (1, 0, 0)


def test_a_reload_that_makes_an_open_relay_says_so(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TP_UPSTREAM_KEY", "sk-upstream")
    path = tmp_path / "trioproxy.toml"
    path.write_text(settings_text("http://127.0.0.1:9/v1", "alice"))
    started = dataclasses.replace(load(str(path), {}), host="0.0.0.0")
    keyed = 'url = "http://127.0.0.1:9/v1"\napi_key_env = "TP_UPSTREAM_KEY"\n'
    path.write_text(
        settings_text("http://127.0.0.1:9/v1").replace('url = "http://127.0.0.1:9/v1"\n', keyed)
    )
    SettingsFile({"config": str(path)}, started).read()
    (warning,) = [r.getMessage() for r in caplog.records if "open relay" in r.getMessage()]
    assert "0.0.0.0:8000" in warning


def _keep_alive_answer(received: Received) -> list[bytes]:
    body = b'{"object":"chat.completion","choices":[]}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return [head % len(body) + body]


async def test_with_two_workers_sighup_and_post_admin_reload_reload_both(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    carol = '[[key]]\nname = "carol"\nkey_env = "TP_CAROL"\n'
    async with two_workers(nursery, tmp_path) as server:
        path = tmp_path / "trioproxy.toml"
        with trio.fail_after(60):
            workers = server.workers()
            assert await on_each(server, KEYS["TP_CAROL"]) == {401}
            path.write_text(path.read_text() + carol)
            server.proxy.process.send_signal(signal.SIGHUP)
            for pid in workers:
                line = await server.proxy.wait_for(b"worker %d reloaded" % pid)
                assert b'3 keys (added "carol")' in line, line
            assert await on_each(server, KEYS["TP_CAROL"]) == {200}
            path.write_text(path.read_text().replace(carol, ""))
            answer = await admin(server, "POST", "/admin/reload")
            assert {w["pid"] for w in answer["workers"]} == workers, answer
            assert all(w["reloaded"] for w in answer["workers"]), answer
            assert await on_each(server, KEYS["TP_CAROL"]) == {401}


async def on_each(server: Server, key: str) -> set[int]:
    """The status a request with ``key`` gets from each worker."""
    statuses = set()
    for worker in sorted(server.workers()):
        async with only_worker(server.workers(), worker):
            statuses.add(await status_with(server.port, key))
    return statuses


_NAMES = st.sampled_from(["a", "b", "c", "d"])


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.frozensets(_NAMES), st.booleans()), min_size=1, max_size=12))
def test_a_key_that_stays_through_reloads_keeps_its_count_and_frees_its_slots(
    steps: list[tuple[frozenset[str], bool]],
) -> None:
    """Whatever keys come and go, each key's count is its slots held, wherever taken."""
    limiter: KeyLimiter | None = None
    held: dict[str, list[Slot]] = {}
    for names, release in steps:
        keys = tuple(ClientKey(n, f"sk-{n}", max_concurrent=3) for n in sorted(names))
        limiter = KeyLimiter(keys, after=limiter)
        for key in keys:
            if release and held.get(key.name):
                held[key.name].pop().release()
            grant = limiter.acquire(key)
            expect_room = len(held.get(key.name, [])) < 3
            assert isinstance(grant, Slot) == expect_room, (key.name, held)
            if isinstance(grant, Slot):
                held.setdefault(key.name, []).append(grant)
    for slots in held.values():
        for slot in slots:
            slot.release()
    assert limiter is not None
    everyone = tuple(ClientKey(n, f"sk-{n}", max_concurrent=3) for n in "abcd")
    final = KeyLimiter(everyone, after=limiter)
    assert all(isinstance(final.acquire(k), Slot) for k in everyone for _ in range(3))
