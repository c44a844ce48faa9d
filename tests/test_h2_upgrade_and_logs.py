"""h2c Upgrade is refused (answered over HTTP/1.1), and no header value
reaches the log through hpack or h2, at any level."""

import logging

import pytest
import trio

from tests.helpers import BODY, proxied
from trioproxy.conformance import H2Client, RawClient

# A valid HTTP2-Settings (SETTINGS_MAX_CONCURRENT_STREAMS = 100), and one that is not base64url.
SETTINGS = {"valid": "AAMAAABk", "none": None, "invalid": "*not-base64*"}


@pytest.mark.parametrize("path", ["/health", "/admin/requests"])
@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
async def test_an_h2c_upgrade_is_answered_over_http1(
    nursery: trio.Nursery, path: str, settings: str | None
) -> None:
    proxy = await proxied(nursery, admin_key="adm")
    head = (
        f"GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer adm\r\n"
        "connection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n"
    )
    if settings is not None:
        head += f"http2-settings: {settings}\r\n"
    request = (head + "\r\n").encode()
    with trio.fail_after(10):
        client = await RawClient.connect(proxy.host, proxy.port)
        await client.send(request)
        await client.read_response()
        first = client.received
        client.received = b""
        await client.send(request)  # still HTTP/1.1: the same request, the same answer
        await client.read_response()
        client.close()
    for answer in (first, client.received):
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert b"upgrade" not in answer.split(b"\r\n\r\n")[0].lower()


async def test_prior_knowledge_h2c_still_works_beside_the_refused_upgrade(
    nursery: trio.Nursery,
) -> None:
    proxy = await proxied(nursery)
    with trio.fail_after(10):
        client = await H2Client.connect(proxy.host, proxy.port)
        stream = await client.request("/health", {}, method="GET")
        await client.pump_until(lambda: stream in client.ended)
        client.close()
    assert client.headers[stream][b":status"] == b"200"


async def test_no_header_value_is_logged_at_debug(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """hpack logged each decoded header block, keys and all, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    proxy = await proxied(nursery, admin_key="adm-secret-4e1f", api_keys=frozenset({"sk-c-9a7b"}))
    with trio.fail_after(10):
        client = await H2Client.connect(proxy.host, proxy.port)
        admin = await client.request(
            "/admin/requests", {"authorization": "Bearer adm-secret-4e1f"}, method="GET"
        )
        relayed = await client.request(
            "/v1/chat/completions",
            {"authorization": "Bearer sk-c-9a7b", "x-sim-id": "secret", "x-note": "note-5d2c"},
            BODY,
        )
        await client.pump_until(lambda: {admin, relayed} <= client.ended)
        client.close()
    assert client.headers[admin][b":status"] == b"200"
    assert client.headers[relayed][b":status"] == b"200"
    assert caplog.records  # DEBUG was on: something was logged
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    for secret in ("adm-secret-4e1f", "sk-c-9a7b", "note-5d2c"):
        assert secret not in logged
