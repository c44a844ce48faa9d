"""No client path may reach another host or leave the upstream's base path.

Property tests over generated paths, first on the pure functions that build
the upstream URL, then end to end through the proxy on real sockets, with a
recording upstream and a second server that must never hear from it.
"""

import posixpath
import re
from urllib.parse import unquote_to_bytes

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.helpers import ScriptedUpstream, start_proxy
from trioproxy.conformance import RawClient
from trioproxy.proxy.gateway.config import ProxyConfig
from trioproxy.proxy.relay.paths import client_query_ok, client_tail
from trioproxy.proxy.upstream.routing import Upstream

BASES = ["", "/", "/v1", "/v1/", "/tenant/a/v1", "/a%2Fb/v1"]
# Bytes that take part in every trick: separators, dots, escapes, userinfo, ports.
TRICKY = st.sampled_from(
    [
        *(b"/", b".", b"..", b"%2e", b"%2E", b"%2f", b"%2F", b"%25", b"%5c", b"\\", b"@", b":"),
        *(b"a", b"v1", b"chat", b"127.0.0.1", b"?", b"#", b"%", b"2", b"e", b"f", b"%00", b";"),
    ]
)
VCHAR = st.binary(min_size=1, max_size=3).filter(lambda b: all(0x21 <= c <= 0x7E for c in b))
PATHS = st.lists(st.one_of(TRICKY, VCHAR), max_size=12).map(lambda parts: b"/v1/" + b"".join(parts))


def resolved(raw: bytes) -> str:
    """What a lenient server could make of a path: decoded again and again,
    backslashes as slashes, dot segments removed."""
    path = raw
    for _ in range(4):
        path = unquote_to_bytes(path)
    text = path.decode("latin-1").replace("\\", "/")
    return posixpath.normpath("/" + text)


def within(path: str, base: str) -> bool:
    base = base.rstrip("/")
    return path == base or path.startswith(base + "/") or base == ""


@settings(max_examples=600, deadline=None)
@given(base=st.sampled_from(BASES), raw=PATHS)
@example(base="", raw=b"/v1%2F@127.0.0.1:9/v1/chat/completions")
@example(base="/tenant/a/v1", raw=b"/v1/../../b/v1/chat/completions")
@example(base="/v1", raw=b"/v1/%2e%2e/admin/requests")
@example(base="/v1", raw=b"/v1/%252e%252e/admin")
@example(base="/v1", raw=b"/v1/chat/..%2F..%2Fx")
def test_accepted_paths_stay_on_the_configured_origin_and_under_its_base(
    base: str, raw: bytes
) -> None:
    upstream = Upstream("u", f"http://10.0.0.7:8080{base}")
    path, _, query = raw.partition(b"?")
    tail = client_tail(path)
    if tail is None or not client_query_ok(query):
        return
    target = upstream.target_for(tail, query)
    assert upstream.origin == ("http", "10.0.0.7", 8080)  # from the configuration alone
    assert target.startswith(b"/")  # origin-form: never a URL or an authority of its own
    assert b"#" not in target and all(0x21 <= c <= 0x7E for c in target)
    assert within(resolved(target.split(b"?")[0]), resolved(base.encode()))


@given(segments=st.lists(st.from_regex(re.compile(r"[A-Za-z0-9_\-]{1,8}"), fullmatch=True)))
def test_plain_paths_are_accepted_unchanged(segments: list[str]) -> None:
    raw = ("/v1/" + "/".join(segments)).encode()
    assert client_tail(raw) == raw[3:]


def test_encoded_slash_in_a_model_name_is_kept() -> None:
    assert client_tail(b"/v1/models/meta-llama%2FLlama-3-8B") == b"/models/meta-llama%2FLlama-3-8B"


ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def recorder() -> ScriptedUpstream:
    """An upstream that answers ``{}`` to every request and records its target."""
    return ScriptedUpstream([_ANSWER], then="next")


async def serve(nursery: trio.Nursery, upstream: ScriptedUpstream) -> int:
    await upstream.start(nursery)
    return upstream.port


def targets(upstream: ScriptedUpstream) -> list[bytes]:
    return [r.target for r in upstream.received]


async def send(port: int, target: bytes) -> RawClient:
    client = await RawClient.connect("127.0.0.1", port)
    await client.send(b"GET " + target + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    await client.read_all()
    client.close()
    return client


async def check_end_to_end(base: str, target: bytes) -> RawClient:
    """``target`` through a proxy whose upstream has ``base``; a server beside
    the upstream must never hear of it, and the upstream only under its base."""
    upstream, other = recorder(), recorder()
    async with trio.open_nursery() as nursery:
        port, other_port = await serve(nursery, upstream), await serve(nursery, other)
        proxy = await start_proxy(nursery, ProxyConfig(upstream=f"http://127.0.0.1:{port}{base}"))
        target = target.replace(b"{other}", str(other_port).encode())
        with trio.fail_after(10):
            client = await send(int(proxy.rsplit(":", 1)[1]), target)
        nursery.cancel_scope.cancel()
    assert client.status in (200, 400, 404), client.received
    assert targets(other) == []
    if client.status == 200:
        (seen,) = targets(upstream)
        assert within(resolved(seen.split(b"?")[0]), resolved(base.encode()))
    else:
        assert targets(upstream) == []
    return client


@pytest.mark.parametrize("base", ["", "/", "/tenant/a/v1"])
@pytest.mark.parametrize(
    "attack",
    [
        b"/v1%2F@127.0.0.1:{other}/v1/chat/completions",
        b"/v1/../admin/requests",
        b"/v1/../../b/v1/chat/completions",
        b"/v1/%2e%2e/%2e%2e/b/v1/chat/completions",
        b"/v1/%252e%252e/x",
        b"/v1/x/..%2F..%2F..%2Fb",
        b"/v1/x/..%5C..%5Cb",
        b"/v1/x#@127.0.0.1:{other}/",
    ],
)
async def test_path_attacks_are_refused_end_to_end(base: str, attack: bytes) -> None:
    client = await check_end_to_end(base, attack)
    assert client.status in (400, 404)


async def test_an_encoded_slash_reaches_the_configured_host_only() -> None:
    client = await check_end_to_end("/v1", b"/v1/%2F@127.0.0.1:{other}/v1/chat/completions")
    assert client.status == 200


# pytest-trio runs each Hypothesis example in a trio run of its own, so every
# example starts its own servers (a few milliseconds).
@settings(max_examples=100, deadline=None)
@given(base=st.sampled_from(BASES), raw=PATHS.filter(lambda p: all(0x21 <= c <= 0x7E for c in p)))
async def test_generated_paths_never_leave_the_base_end_to_end(base: str, raw: bytes) -> None:
    await check_end_to_end(base, raw)
