"""``[[upstream]] ca = ...``: that upstream's TLS is verified with that bundle, and no other's;
a bundle that cannot be read stops start-up with one clear line."""

import pathlib
import sys

import httpx
import pytest
import trio

from tests.helpers import TLSFiles, start_proxy, start_sim
from trioproxy.proxy.gateway.settings import SettingsError, load
from trioproxy.sim import SimUpstream

TWO = """
[[upstream]]
name = "own-ca"
url = "{own}/v1"
models = ["m-own"]
ca = "{cafile}"

[[upstream]]
name = "no-ca"
url = "{other}/v1"
models = ["m-other"]
"""


def write(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "trioproxy.toml"
    path.write_text(text)
    return str(path)


async def test_an_upstream_is_verified_with_its_own_ca_and_no_other_is(
    nursery: trio.Nursery, tmp_path: pathlib.Path, tls: TLSFiles
) -> None:
    own, other = SimUpstream(), SimUpstream()
    own_url = await start_sim(nursery, own, tls.certfile, tls.keyfile)
    other_url = await start_sim(nursery, other, tls.certfile, tls.keyfile)
    text = TWO.format(own=own_url, other=other_url, cafile=tls.cafile)
    settings = load(write(tmp_path, text), {}, env={})
    with trio.fail_after(20):
        proxy = await start_proxy(nursery, settings.proxy)
        async with httpx.AsyncClient(base_url=proxy) as client:
            trusted = await client.post(
                "/v1/chat/completions", json={"model": "m-own", "messages": []}
            )
            # Same certificate, but this upstream trusts only certifi's CAs.
            refused = await client.post(
                "/v1/chat/completions", json={"model": "m-other", "messages": []}
            )
    assert trusted.status_code == 200, trusted.text
    assert refused.status_code == 502, refused.text
    assert "certificate verify failed" in refused.json()["error"]["message"]
    assert len(own.fates) == 1 and other.fates == []


@pytest.mark.parametrize(
    ("ca", "error"),
    [
        ('"/nonexistent/ca.pem"', "upstream 'own-ca' ca: cannot read /nonexistent/ca.pem: No such"),
        ("{not_pem}", "holds no PEM certificate"),
        ("{directory}", "cannot read"),
        ("7", "upstream 'own-ca' ca: must be the path of a PEM file"),
    ],
)
def test_a_ca_that_cannot_verify_stops_start_up(
    tmp_path: pathlib.Path, ca: str, error: str
) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    ca = ca.format(not_pem=f'"{not_pem}"', directory=f'"{tmp_path}"')
    text = TWO.replace('"{cafile}"', ca).format(
        own="https://127.0.0.1:1", other="https://127.0.0.1:2"
    )
    with pytest.raises(SettingsError, match=error):
        load(write(tmp_path, text), {}, env={})


def test_upstream_ca_option_is_checked_at_start_up(tmp_path: pathlib.Path) -> None:
    given = {"upstream": "https://127.0.0.1:1/v1", "upstream_ca": str(tmp_path / "none.pem")}
    with pytest.raises(SettingsError, match="--upstream-ca: cannot read"):
        load(None, given, env={})


def test_two_cas_for_one_host_and_port_are_refused(tmp_path: pathlib.Path, tls: TLSFiles) -> None:
    # The pool keeps idle connections by host and port: they would be shared.
    text = TWO.format(own="https://127.0.0.1:1", other="https://127.0.0.1:1", cafile=tls.cafile)
    with pytest.raises(SettingsError, match="'own-ca' and 'no-ca' are at the same host"):
        load(write(tmp_path, text), {}, env={})


async def test_a_missing_ca_stops_the_command_with_no_traceback(tmp_path: pathlib.Path) -> None:
    text = TWO.format(own="https://127.0.0.1:1", other="https://127.0.0.1:2", cafile="/no/ca.pem")
    path = write(tmp_path, text)
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "trioproxy", "serve", "--config", path],
            capture_stderr=True,
            check=False,
        )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        b"trioproxy: configuration error: upstream 'own-ca' ca: cannot read /no/ca.pem: "
        b"No such file or directory"
    ]
