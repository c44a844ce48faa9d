"""The server is built from hypercorn's parts and changes nothing of them.

- after a proxy and a simulated upstream served (the whole package
  imported, a request relayed and stopped), every attribute of every class
  and module of hypercorn, h11, h2, hpack and hyperframe is the very object
  it was before, the GIL switch interval is given back and no hang-up
  watcher's thread is left;
- stock hypercorn (``serve_plain``) still behaves as stock while the
  guarded server runs in the same process;
- every hypercorn method the server's classes override is still the
  release's, with the same parameters: a release that renames one (which
  would turn a guard off without a word) fails here;
- an installed hypercorn, h11 or h2 outside the versions the server was
  built for stops ``trioproxy`` at start-up with one line, no traceback.
"""

import inspect
import subprocess
import sys
import textwrap
from functools import partial

import pytest
import trio

from tests.helpers import TLSFiles, live_tasks, open_fds, start_sim, wait_for_baseline
from trioproxy.asgi import CLIENT_HANGUP, Receive, Scope, Send
from trioproxy.conformance import RawClient
from trioproxy.server import (
    IncompatibleVersions,
    check_versions,
    hypercorn_config,
    serve_app,
    serve_plain,
)
from trioproxy.server.guards.http1 import GuardedH11Protocol
from trioproxy.server.guards.http2 import FlowControlledBuffer, GuardedH2Protocol
from trioproxy.server.tcp import GuardedTCPServer
from trioproxy.server.versions import BUILT_FOR
from trioproxy.sim import SimServer, SimUpstream, serve_sim

_SERVE_AND_COMPARE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import trio

    LIBRARIES = ("hypercorn", "h11", "h2", "hpack", "hyperframe")

    def import_all(name):
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except ImportError:  # optional extras (aioquic, uvloop)
                pass

    def snapshot():
        seen = {}
        for name, module in list(sys.modules.items()):
            if name.split(".")[0] not in LIBRARIES or module is None:
                continue
            seen[name] = dict(vars(module))
            for attr, value in vars(module).items():
                if isinstance(value, type) and value.__module__ == name:
                    seen[f"{name}.{attr}"] = dict(vars(value))
        return seen

    for library in LIBRARIES:
        import_all(library)
    interval = sys.getswitchinterval()
    before = snapshot()

    import_all("trioproxy")
    from trioproxy.conformance import RawClient, chat_body, request_bytes
    from trioproxy.proxy.app import serve_proxy
    from trioproxy.proxy.gateway.config import ProxyConfig
    from trioproxy.server import hypercorn_config, serve_app
    from trioproxy.sim import SimUpstream

    during = {}

    async def main():
        async with trio.open_nursery() as nursery:
            sim = SimUpstream()
            (upstream,) = await nursery.start(serve_app, sim, hypercorn_config("127.0.0.1", 0))
            config = ProxyConfig(upstream=f"{upstream}/v1")
            (proxy,) = await nursery.start(serve_proxy, config, hypercorn_config("127.0.0.1", 0))
            host, port = proxy.removeprefix("http://").rsplit(":", 1)
            with trio.fail_after(20):
                for stream in (False, True):
                    client = await RawClient.connect(host, int(port))
                    body = chat_body(stream)
                    await client.send(request_bytes("POST", "/v1/chat/completions", body, {}))
                    await client.read_until(b"chat.completion")
                    client.close()  # a stop, for the streaming one
                during.update(snapshot())
            nursery.cancel_scope.cancel()

    trio.run(main)
    after = snapshot()
    changed = sorted(
        f"{where}: {owner}.{attr}"
        for where, now in (("while serving", during), ("after", after))
        for owner, attrs in before.items()
        for attr in set(attrs) | set(now.get(owner, {}))
        if now.get(owner, {}).get(attr, None) is not attrs.get(attr, None)
    )
    print("\\n".join(changed) or "unchanged")
    print("switch interval", "kept" if sys.getswitchinterval() == interval else "changed")
    import threading
    print("threads", [t.name for t in threading.enumerate() if t is not threading.main_thread()])
    """
)


def test_nothing_of_hypercorn_h11_or_h2_changes_when_the_server_serves() -> None:
    # A fresh interpreter: an import of the tests' own could have changed
    # something before the first snapshot.
    run = subprocess.run(
        [sys.executable, "-c", _SERVE_AND_COMPARE], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines == ["unchanged", "switch interval kept", "threads []"], run.stdout[-3000:]


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    hangup = "yes" if CLIENT_HANGUP in scope["extensions"] else "no"
    headers = [(b"content-length", b"2"), (b"x-hangup", hangup.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


_H2C_UPGRADE = (
    b"GET / HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\n"
    b"upgrade: h2c\r\nhttp2-settings: AAMAAABk\r\n\r\n"
)


async def _first_line(origin: str, request: bytes) -> bytes:
    host, port = origin.removeprefix("http://").rsplit(":", 1)
    client = await RawClient.connect(host, int(port))
    await client.send(request)
    await client.read_until(b"\r\n\r\n")
    client.close()
    return client.received


async def test_stock_hypercorn_is_stock_beside_the_guarded_server(nursery: trio.Nursery) -> None:
    """The h2c refusal is a method of the guarded server's own class: stock
    hypercorn in the same process still switches (101), the guarded one answers 200."""
    plain = str((await nursery.start(serve_plain, _hello, hypercorn_config("127.0.0.1", 0)))[0])
    guarded = str((await nursery.start(serve_app, _hello, hypercorn_config("127.0.0.1", 0)))[0])
    with trio.fail_after(10):
        stock = await _first_line(plain, _H2C_UPGRADE)
        ours = await _first_line(guarded, _H2C_UPGRADE)
        ours_plain_request = await _first_line(guarded, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        stock_plain_request = await _first_line(plain, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert stock.startswith(b"HTTP/1.1 101 "), stock[:200]
    assert ours.startswith(b"HTTP/1.1 200 "), ours[:200]
    # The hang-up travels in the scope's extensions, from the guarded server only.
    assert b"x-hangup: yes" in ours_plain_request
    assert b"x-hangup: no" in stock_plain_request


async def test_the_simulator_runs_on_the_server_it_names(nursery: trio.Nursery) -> None:
    """Plain or guarded, the simulated upstream answers; only the guarded one
    hands it the hang-up watcher (``Fate`` timing from the kernel's report)."""
    servers: tuple[SimServer, ...] = ("plain", "guarded")
    for server in servers:
        (origin,) = await nursery.start(partial(serve_sim, SimUpstream(), server=server))
        with trio.fail_after(10):
            answer = await _first_line(str(origin), b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 "), (server, answer[:200])


_OVERRIDES: dict[type, tuple[str, ...]] = {
    GuardedTCPServer: ("__init__", "run", "protocol_send"),
    GuardedH11Protocol: (
        "__init__",
        "stream_send",
        "_check_protocol",
        "_create_stream",
        "_close_stream",
        "_maybe_recycle",
    ),
    GuardedH2Protocol: (
        "__init__",
        "handle",
        "_priority_updated",
        "_handle_events",
        "_create_stream",
        "_close_stream",
    ),
    FlowControlledBuffer: ("__init__", "drain", "set_complete", "close", "complete", "push", "pop"),
}
"""What each class of the server overrides of hypercorn's, by name."""


def _parameters(member: object) -> list[str]:
    function = member.fget if isinstance(member, property) else member
    assert callable(function), member
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize("ours", _OVERRIDES, ids=lambda cls: cls.__name__)
def test_every_override_is_of_a_method_the_release_has(ours: type) -> None:
    base = ours.__mro__[1]
    assert base.__module__.startswith("hypercorn."), base
    overridden = {
        name
        for name, value in vars(ours).items()
        if (callable(value) or isinstance(value, property)) and hasattr(base, name)
        if name == "__init__" or not name.startswith("__")
    }
    assert overridden == set(_OVERRIDES[ours])  # a new override is listed here too
    for name in _OVERRIDES[ours]:
        assert name in vars(base), f"{base.__qualname__}.{name} is gone"
        if name == "__init__":
            continue  # the server's own constructors take keyword extras
        ours_args = _parameters(vars(ours)[name])
        theirs_args = _parameters(vars(base)[name])
        assert ours_args == theirs_args, f"{base.__qualname__}.{name}"


def test_versions_out_of_range_are_named_in_one_message() -> None:
    installed = {"hypercorn": "0.19.1", "h11": "0.16.0", "h2": "4.2.0"}
    with pytest.raises(IncompatibleVersions) as raised:
        check_versions(installed.__getitem__)
    assert str(raised.value) == (
        "the server was built for other versions than installed: "
        "hypercorn 0.19.1 (needs >=0.18,<0.19)"
    )
    check_versions({"hypercorn": "0.18.0", "h11": "0.16.0", "h2": "4.1.2"}.__getitem__)


def test_the_versions_installed_here_are_the_ones_built_for() -> None:
    check_versions()  # the test environment itself
    assert set(BUILT_FOR) == {"hypercorn", "h11", "h2"}


def test_trioproxy_refuses_to_start_on_other_versions_without_a_traceback() -> None:
    fake = (
        "import importlib.metadata as m, sys\n"
        "real = m.version\n"
        "m.version = lambda name: '0.17.3' if name == 'h11' else real(name)\n"
        "import trioproxy.server.versions as v\n"
        "v.check_versions.__defaults__ = (m.version,)\n"
        "from trioproxy.cli import main\n"
        "main(['serve', '--port', '0'])\n"
    )
    run = subprocess.run([sys.executable, "-c", fake], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "trioproxy: the server was built for other versions than installed: "
        "h11 0.17.3 (needs >=0.16,<0.17)"
    )


async def test_a_failed_tls_handshake_leaves_no_socket_open(
    nursery: trio.Nursery, tls: TLSFiles
) -> None:
    """The accept loop is the server's own: the connection closes its socket
    itself, whichever way it ends (trio.serve_listeners used to)."""
    origin = await start_sim(nursery, SimUpstream(), tls.certfile, tls.keyfile)
    host, port = origin.removeprefix("https://").rsplit(":", 1)
    tasks, fds = live_tasks(), open_fds()
    with trio.fail_after(10):
        for _ in range(3):
            client = await RawClient.connect(host, int(port))
            await client.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")  # no TLS: the handshake fails
            while await client.read_more():
                pass  # until the server closes
            client.close()
        await wait_for_baseline(tasks, fds)
