"""The control routes (``/admin``, ``/metrics``) are the operator's: the proxy's CORS never
applies to them, and their answers forbid framing, sniffing and referrers, with a page
that loads nothing inline (so ``default-src 'self'`` leaves it working)."""

from html.parser import HTMLParser

import httpx
import pytest
import trio

from tests.helpers import start_proxy
from trioproxy.proxy.gateway.config import ProxyConfig

ADMIN = "admin-key-for-tests"
CSP = "default-src 'self'; frame-ancestors 'none'"
ORIGIN = {"origin": "https://evil.example"}


@pytest.fixture
async def proxy(nursery: trio.Nursery) -> str:
    config = ProxyConfig("http://127.0.0.1:9/v1", admin_key=ADMIN, cors_origins=("*",))
    return await start_proxy(nursery, config)


def _assert_hardened(answer: httpx.Response) -> None:
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/admin/", 200),
        ("GET", "/admin/admin.js", 200),
        ("GET", "/admin/admin.css", 200),
        ("GET", "/admin/requests", 200),
        ("GET", "/admin/events", 401),  # the raw ASGI route: no key given here
        ("DELETE", "/admin/requests/1-1", 404),
        ("GET", "/metrics", 200),
    ],
)
async def test_control_routes_are_hardened_and_never_cors(
    proxy: str, method: str, path: str, status: int
) -> None:
    key = {} if path == "/admin/events" else {"authorization": f"Bearer {ADMIN}"}
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            answer = await client.request(method, path, headers=ORIGIN | key)
            preflight = await client.options(
                path, headers=ORIGIN | {"access-control-request-method": "DELETE"}
            )
            api = await client.get("/health", headers=ORIGIN)
    assert answer.status_code == status, answer.text
    _assert_hardened(answer)
    # A preflight is not answered for the proxy's browser origins: the route refuses it.
    assert preflight.status_code != 204
    _assert_hardened(preflight)
    assert api.headers["access-control-allow-origin"] == "*"  # CORS is on, elsewhere


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.loads: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.inline += [f"{tag} {n}" for n in names if n == "style" or n.startswith("on")]
        if tag == "style":
            self.inline.append("style element")
        if tag == "script":
            self._in_script = True
            if names.get("src"):
                self.loads.append(str(names["src"]))
        if tag == "link" and names.get("href"):
            self.loads.append(str(names["href"]))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script")


async def test_the_admin_page_has_nothing_the_csp_blocks(proxy: str) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            page = await client.get("/admin/")
            parsed = _Page()
            parsed.feed(page.text)
            loaded = {url: await client.get(url) for url in parsed.loads}
    assert parsed.inline == []  # default-src 'self' blocks inline scripts, styles, handlers
    assert set(loaded) == {"/admin/admin.js", "/admin/admin.css"}  # 'self': same origin
    assert loaded["/admin/admin.js"].headers["content-type"].startswith("text/javascript")
    assert loaded["/admin/admin.css"].headers["content-type"].startswith("text/css")
    assert "function follow()" in loaded["/admin/admin.js"].text
    assert all(answer.status_code == 200 for answer in loaded.values())


async def test_the_page_files_are_off_with_the_admin(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, ProxyConfig("http://127.0.0.1:9/v1"))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=proxy) as client:
            answers = [await client.get(p) for p in ("/admin/", "/admin/admin.js")]
    assert [a.status_code for a in answers] == [404, 404]
