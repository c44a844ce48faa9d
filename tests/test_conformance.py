"""The conformance command passes trioproxy and fails a proxy that never cancels.

(The verdict's correct-but-slow and outlier cases: tests/test_verdict.py.)"""

import json
import pathlib
import subprocess
import sys

import trio

from tests.helpers.conformance import CONFORMANCE
from tests.helpers.conformance import run_conformance_cli as run
from trioproxy.conformance import free_port


async def test_trioproxy_passes(tmp_path: pathlib.Path) -> None:
    """Also over TLS: a second trioproxy with a certificate the run makes, h2 by ALPN;
    with the speed bounds applied too (``--strict``)."""
    code, table, report = await run(
        f"{sys.executable} -m benchmarks.peers.trioproxy_tls {{upstream}} {{port}} "
        "--tls {tls_port} {certfile} {keyfile} {certkey}",
        tmp_path / "r.json",
        "--strict",
    )
    assert code == 0, table
    assert report["correct"] is True and report["fast"] is True
    scenarios = {s["name"]: s for s in report["scenarios"]}  # type: ignore[attr-defined]
    assert scenarios["waiting_headers RST"]["never_closed"] == 0
    assert scenarios["streaming h2-reset"]["skipped"] == ""  # trioproxy speaks h2c
    tls = scenarios["streaming h2-reset TLS"]
    assert tls["skipped"] == "" and len(tls["samples_ms"]) == 2 and tls["passed"]
    assert scenarios["storm 20 streams"]["passed"] is True
    assert table.rstrip().endswith("PASS")


async def test_a_proxy_that_never_cancels_fails(tmp_path: pathlib.Path) -> None:
    code, table, report = await run(
        f"{sys.executable} -m benchmarks.peers.starlette_proxy {{upstream}} {{port}}",
        tmp_path / "r.json",
    )
    assert code == 1, table
    failed = {s["name"] for s in report["scenarios"] if not s["passed"]}  # type: ignore[attr-defined]
    assert {
        "waiting_headers FIN",
        "waiting_headers RST",
        "non_streaming FIN",
        "non_streaming RST",
    } <= failed
    by_name = {s["name"]: s for s in report["scenarios"]}  # type: ignore[attr-defined]
    never = by_name["waiting_headers FIN"]
    # A stop never passed on is not correct, and is no outlier to look at again.
    assert never["correct"] is False and never["second_look"] is None
    assert report["correct"] is False
    skipped = {s["name"]: s["skipped"] for s in report["scenarios"]}  # type: ignore[attr-defined]
    assert skipped["streaming h2-reset TLS"] == "no TLS listener"
    assert table.rstrip().endswith("FAIL")


async def test_proxy_url_mode_runs_against_a_proxy_started_by_hand(tmp_path: pathlib.Path) -> None:
    port = free_port()
    out = tmp_path / "r.json"
    with trio.fail_after(240):
        conformance = await trio.lowlevel.open_process(
            [*CONFORMANCE, "--proxy-url", f"http://127.0.0.1:{port}", "--json", str(out)],
            stdout=subprocess.PIPE,
        )
        assert conformance.stdout is not None
        printed = b""
        while b"waiting for the proxy" not in printed:
            printed += await conformance.stdout.receive_some(4096)
        upstream = printed.split(b"simulated upstream: ")[1].split()[0].decode()
        proxy = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "trioproxy",
                "serve",
                "--upstream",
                upstream,
                "--port",
                str(port),
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            while chunk := await conformance.stdout.receive_some(65536):
                printed += chunk
            assert await conformance.wait() == 0, printed.decode()
        finally:
            proxy.terminate()
            await proxy.wait()
    report = json.loads(await trio.Path(out).read_text())
    assert report["passed"] is True and report["proxy"] == f"http://127.0.0.1:{port}"
