"""Each provider's way of taking a key, headers and a query, with that provider's own
SDK pointed at the proxy, and what the upstream (a raw recording one) received.

The proxy holds the upstream's key in every test and checks client keys, as a
deployment does: the client's own credentials must never reach the upstream,
in whichever header the SDK put them.
"""

import logging
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import CLI, Received, ScriptedUpstream, assert_no_tracebacks, start_proxy
from trioproxy.proxy.gateway.settings import SettingsError, load
from trioproxy.proxy.upstream.conventions import Conventions
from trioproxy.proxy.upstream.http11 import ProtocolError, request_head
from trioproxy.sim.render import Render

UPSTREAM_KEY = "sk-upstream-held-by-the-proxy"
CLIENT_KEY = "sk-client-of-the-proxy"
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY, "CLIENT_KEY": CLIENT_KEY}


def answering(kind: str) -> Any:
    """A raw upstream's answer: the simulator's rendering of ``kind``, streamed if asked."""

    def answer(received: Received) -> Sequence[bytes]:
        streamed = re.search(rb'"stream": ?true', received.raw) is not None
        render = Render(kind, "m", "r1")
        body, ctype = (
            (render.stream(3), b"text/event-stream")
            if streamed
            else (render.whole(3), b"application/json")
        )
        head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (ctype, len(body))
        return [head + b"connection: close\r\n\r\n" + body]

    return answer


def values(received: Received, name: bytes) -> list[bytes]:
    """Every value of header ``name`` in the request as it came: duplicates show."""
    pattern = rb"(?im)^" + re.escape(name) + rb":[ \t]*(.*?)[ \t]*\r?$"
    return re.findall(pattern, received.raw.partition(b"\r\n\r\n")[0])


def settings_file(tmp_path: pathlib.Path, upstream: str) -> str:
    path = tmp_path / "trioproxy.toml"
    path.write_text(f'[auth]\napi_keys_env = ["CLIENT_KEY"]\n\n{upstream}')
    return str(path)


async def proxy_for(nursery: trio.Nursery, path: str | None, **cli: Any) -> str:
    return await start_proxy(nursery, load(path, cli, ENV).proxy)


async def test_the_anthropic_sdk_through_a_proxy_that_holds_the_key(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    upstream = ScriptedUpstream(answering("messages"))
    await upstream.start(nursery)
    path = settings_file(
        tmp_path,
        f"""[[upstream]]
name = "anthropic"
url = "http://127.0.0.1:{upstream.port}/v1"
api_key_env = "UPSTREAM_KEY"
key_header = "x-api-key"
headers = {{ "anthropic-version" = "2023-06-01" }}
""",
    )
    proxy = await proxy_for(nursery, path)
    client = anthropic.Anthropic(base_url=proxy, api_key=CLIENT_KEY, max_retries=0)

    def stream() -> str:
        with client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            # The SDK's own version, which the upstream's pinned one replaces.
            extra_headers={"anthropic-version": "2099-01-01"},
        ) as events:
            return "".join(events.text_stream)

    with trio.fail_after(30):
        text = await trio.to_thread.run_sync(stream)
    assert text
    (got,) = upstream.received
    assert (got.method, got.target) == (b"POST", b"/v1/messages")
    assert values(got, b"x-api-key") == [UPSTREAM_KEY.encode()]
    assert values(got, b"anthropic-version") == [b"2023-06-01"]
    assert values(got, b"authorization") == []
    assert CLIENT_KEY.encode() not in got.raw


AZURE = """[[upstream]]
name = "azure-gpt-4o"
url = "http://127.0.0.1:{port}/openai/deployments/gpt-4o-prod"
api_key_env = "UPSTREAM_KEY"
key_header = "api-key"
query = {{ "api-version" = "2024-10-21" }}
models = ["gpt-4o"]
"""


async def test_an_azure_openai_client_and_a_v1_client_reach_the_same_deployment(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    upstream = ScriptedUpstream(answering("chat"))
    await upstream.start(nursery)
    proxy = await proxy_for(nursery, settings_file(tmp_path, AZURE.format(port=upstream.port)))
    azure = openai.AzureOpenAI(
        azure_endpoint=proxy, api_version="2024-02-01", api_key=CLIENT_KEY, max_retries=0
    )
    v1 = openai.OpenAI(base_url=f"{proxy}/v1", api_key=CLIENT_KEY, max_retries=0)

    def ask(client: openai.OpenAI) -> str:
        answer = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        return answer.choices[0].message.content or ""

    with trio.fail_after(30):
        assert await trio.to_thread.run_sync(ask, azure)
        assert await trio.to_thread.run_sync(ask, v1)
    assert len(upstream.received) == 2
    for got in upstream.received:
        # The client's api-version (the Azure SDK sends its own) gives way to the upstream's.
        target = b"/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        assert got.target == target
        assert values(got, b"api-key") == [UPSTREAM_KEY.encode()]
        assert values(got, b"authorization") == []
        assert CLIENT_KEY.encode() not in got.raw


async def test_an_azure_path_names_the_model_it_is_routed_by(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    upstream = ScriptedUpstream(answering("chat"))
    await upstream.start(nursery)
    proxy = await proxy_for(nursery, settings_file(tmp_path, AZURE.format(port=upstream.port)))
    headers = {"api-key": CLIENT_KEY}
    body: dict[str, Any] = {"messages": []}  # no model: the path names it
    async with httpx.AsyncClient(base_url=proxy, headers=headers) as client:
        with trio.fail_after(10):
            served = await client.post("/openai/deployments/gpt-4o/chat/completions", json=body)
            unknown = await client.post("/openai/deployments/gpt-5/chat/completions", json=body)
            bad = [
                await client.post(f"/openai/deployments/{name}", json=body)
                for name in ("gpt-4o", "..%2Fx/chat/completions", "a%2Fb/chat/completions")
            ]
    assert served.status_code == 200, served.text
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert [r.status_code for r in bad] == [400, 400, 400]
    assert len(upstream.received) == 1


async def test_extra_headers_reach_the_upstream_in_place_of_the_clients(
    nursery: trio.Nursery, tmp_path: pathlib.Path
) -> None:
    upstream = ScriptedUpstream(answering("chat"))
    await upstream.start(nursery)
    # The single upstream's options, as `trioproxy serve --upstream ...` takes them.
    proxy = await proxy_for(
        nursery,
        settings_file(tmp_path, ""),
        upstream=upstream.url,
        upstream_key=UPSTREAM_KEY,
        upstream_header=[
            "OpenAI-Organization: org-of-the-operator",
            "HTTP-Referer:https://chat.example.com",
            "X-Title: Example Chat",
        ],
    )
    client = openai.OpenAI(
        base_url=f"{proxy}/v1",
        api_key=CLIENT_KEY,
        organization="org-of-the-client",
        max_retries=0,
        default_headers={"x-api-key": CLIENT_KEY, "api-key": CLIENT_KEY, "x-kept": "yes"},
    )

    def ask() -> str:
        answer = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        return answer.choices[0].message.content or ""

    with trio.fail_after(30):
        assert await trio.to_thread.run_sync(ask)
    (got,) = upstream.received
    assert values(got, b"openai-organization") == [b"org-of-the-operator"]
    assert values(got, b"http-referer") == [b"https://chat.example.com"]
    assert values(got, b"x-title") == [b"Example Chat"]
    assert values(got, b"authorization") == [f"Bearer {UPSTREAM_KEY}".encode()]
    assert values(got, b"x-api-key") == values(got, b"api-key") == []
    assert values(got, b"x-kept") == [b"yes"]
    assert CLIENT_KEY.encode() not in got.raw


async def test_header_values_from_variables_stay_out_of_logs_listings_metrics_and_errors(
    nursery: trio.Nursery, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    gateway_key = "gw-secret-in-a-header"
    upstream = ScriptedUpstream(answering("chat"))
    await upstream.start(nursery)
    dead = ScriptedUpstream()
    dead.close()  # nothing listens there: a 502
    tables = "".join(
        f"""[[upstream]]
name = "{name}"
url = "{url}"
api_key_env = "UPSTREAM_KEY"
key_header = "x-goog-api-key"
headers_env = {{ "cf-aig-authorization" = "GATEWAY_KEY" }}
models = ["{model}"]
"""
        for name, url, model in (("live", upstream.url, "m"), ("dead", dead.url, "d"))
    )
    path = settings_file(tmp_path, tables)
    config = load(path, {"admin_key": "adm"}, ENV | {"GATEWAY_KEY": gateway_key}).proxy
    assert gateway_key not in repr(config) and UPSTREAM_KEY not in repr(config)
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy(nursery, config)
    seen = []
    async with httpx.AsyncClient(base_url=proxy) as client:
        with trio.fail_after(10):
            for model in ("m", "d"):
                answer = await client.post(
                    "/v1/chat/completions",
                    json={"model": model, "messages": []},
                    headers={"authorization": f"Bearer {CLIENT_KEY}"},
                )
                seen.append(answer)
            for route in ("/admin/requests", "/metrics"):
                seen.append(await client.get(route, headers={"authorization": "Bearer adm"}))
    assert [a.status_code for a in seen] == [200, 502, 200, 200]
    (got,) = upstream.received
    assert values(got, b"cf-aig-authorization") == [gateway_key.encode()]
    assert values(got, b"x-goog-api-key") == [UPSTREAM_KEY.encode()]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (gateway_key, UPSTREAM_KEY):
        assert secret not in logged
        assert not any(secret.encode() in a.content for a in seen)
    assert_no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('key_header = "host"', "key_header 'host' is a hop-by-hop or framing header"),
        ('key_header = "x api key"', "key_header 'x api key' is not a header name"),
        ('headers = { "content-length" = "5" }', "header 'content-length' is a hop-by-hop"),
        ('headers = { "Transfer-Encoding" = "chunked" }', "'Transfer-Encoding' is a hop-by-hop"),
        ('headers = { "connection" = "close" }', "header 'connection' is a hop-by-hop"),
        ('headers = { "x-a" = "1\\r\\nx-b: 2" }', "header 'x-a': value empty, or not visible"),
        ('headers = { "x-a" = "nul\\u0000" }', "header 'x-a': value empty, or not visible"),
        ('headers = { "x-a" = "caf\\u00e9" }', "header 'x-a': value empty, or not visible"),
        ('headers = { "x-a" = " padded" }', "header 'x-a': value empty, or not visible"),
        ('headers = { "x-a" = "" }', "headers = {"),  # empty: refused as the file's type
        ('headers = { "x-a" = 1 }', "not a table of strings"),
        ('headers = "x-a: 1"', "not a table of strings"),
        ('headers = { "Authorization" = "Bearer k" }', "header 'Authorization' carries a key"),
        ('headers = { "x-a" = "1", "X-A" = "2" }', "header 'X-A' is given twice"),
        (f'headers = {{ "x-a" = "{"v" * 4097}" }}', "header 'x-a': value over 4096 characters"),
        (
            "headers = { " + ", ".join(f'"x-{i}" = "v"' for i in range(33)) + " }",
            "more than 32 headers",
        ),
        ('headers_env = { "x-a" = "NOT_SET" }', "headers_env.x-a: environment variable NOT_SET"),
        ('query = { "api-version" = "" }', "query = {"),
        ('query = { "api-version" = "a\\nb" }', "query parameter 'api-version': empty"),
        ('query = { "a" = "1", "A" = "2" }', "a query parameter is given twice"),
    ],
)
def test_bad_names_and_values_are_refused_at_start(
    tmp_path: pathlib.Path, table: str, message: str
) -> None:
    path = settings_file(tmp_path, f'[[upstream]]\nurl = "http://127.0.0.1:1/v1"\n{table}\n')
    with pytest.raises(SettingsError) as refused:
        load(path, {}, ENV)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"upstream_header": ["Host: evil.example"]}, "--upstream-header 'Host' is a hop-by-hop"),
        ({"upstream_header": ["sk-no-name-only-a-secret"]}, "--upstream-header number 1: not"),
        ({"upstream_header": [": sk-secret"]}, "--upstream-header number 1: not NAME:VALUE"),
        ({"upstream_key_header": "te"}, "--upstream-key-header 'te' is a hop-by-hop"),
        ({"upstream_query": ["api-version"]}, "--upstream-query number 1: not NAME=VALUE"),
        ({"upstream_key": "sk-with\nnewline"}, "the upstream key: value empty, or not visible"),
    ],
)
def test_bad_options_are_refused_without_quoting_a_value(cli: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load(None, {"upstream": "http://127.0.0.1:1/v1", **cli}, {})
    assert message in str(refused.value)
    assert "sk-" not in str(refused.value)  # a value may be a key


async def test_the_command_refuses_a_bad_header_in_one_line() -> None:
    args = ["serve", "--port", "0", "--upstream", "http://127.0.0.1:1/v1"]
    cases = [
        [*args, "--upstream-header", "Content-Length: 0"],
        ["serve", "--port", "0", "--upstream-header", "x-a: 1"],  # and no --upstream
    ]
    for argv in cases:
        with trio.fail_after(30):
            done = await trio.run_process(
                [*CLI, *argv], capture_stderr=True, capture_stdout=True, check=False
            )
        assert done.returncode == 1
        (line,) = done.stderr.decode().splitlines()
        assert line.startswith("trioproxy: configuration error: ")
        assert "--upstream-header" in line


def test_the_upstreams_query_wins_over_the_clients_of_the_same_name() -> None:
    azure = Conventions.of(query=[("api-version", "2024-10-21"), ("x y", "a&b")])
    assert azure.merged_query(b"") == b"api-version=2024-10-21&x%20y=a%26b"
    # Spelled any way a server would read as the same name, the client's goes.
    for client in (b"api-version=1", b"API-Version=1", b"api%2Dversion=1", b"api-version"):
        assert azure.merged_query(client + b"&keep=1") == azure.query + b"&keep=1"
    assert Conventions.of().merged_query(b"api-version=1") == b"api-version=1"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_an_accepted_value_never_splits_the_request_head(value: str) -> None:
    """Whatever text a header's value is, it is refused at start or it makes one
    header line: never a CR, LF or NUL that the upstream's head would split on."""
    try:
        conventions = Conventions.of(headers=[("x-a", value)], key="k")
    except ValueError:
        assert not value.isascii() or value != value.strip() or not value.isprintable() or not value
        return
    try:
        head = request_head(b"POST", b"/v1/x", list(conventions.added))
    except ProtocolError:
        raise AssertionError(f"accepted {value!r} but it splits the head") from None
    assert head.count(b"\r\n") == 2 + len(conventions.added)


def test_the_settings_show_no_header_value() -> None:
    settings = load(None, {"upstream": "http://x/v1", "upstream_header": ["x-a: sk-v"]}, {})
    (upstream,) = settings.proxy.router().upstreams
    assert "sk-v" not in repr(settings.proxy)
    assert "sk-v" not in repr(upstream.conventions)
    assert "x-a" in repr(upstream.conventions)  # names may show
