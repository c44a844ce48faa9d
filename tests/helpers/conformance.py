"""``trioproxy conformance`` run as a process against a proxy command, as a user runs it."""

import json
import pathlib
import shlex
import sys

import trio

__all__ = ["CONFORMANCE", "LATE_RELAY", "run_conformance_cli"]

CONFORMANCE = [
    sys.executable,
    "-m",
    "trioproxy",
    "conformance",
    "--repeats",
    "2",
    "--storm",
    "20",
    "--wait-s",
    "1",
    # Generous on purpose: a test only catches a stop that is not passed on at
    # all; the speed goals (5 ms, 50 ms) are the benchmarks'.
    "--bound-ms",
    "250",
    "--storm-bound-ms",
    "1000",
]

LATE_RELAY = " ".join(
    [
        shlex.quote(sys.executable),
        shlex.quote(str(pathlib.Path(__file__).with_name("late_relay.py"))),
        "{upstream} {port}",
    ]
)
"""The stand-in proxy that passes stops on late (:mod:`tests.helpers.late_relay`);
its options follow."""


async def run_conformance_cli(
    proxy_cmd: str, out: pathlib.Path, *options: str
) -> tuple[int, str, dict[str, object]]:
    """Exit status, printed table and JSON report of one run (which also writes a page)."""
    page = out.with_suffix(".html")
    files = ["--json", str(out), "--html", str(page)]
    with trio.fail_after(240):
        done = await trio.run_process(
            [*CONFORMANCE, *options, "--proxy-cmd", proxy_cmd, *files],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    html = await trio.Path(page).read_text()
    assert html.startswith("<!doctype html>") and "Cancellation conformance" in html
    return done.returncode, done.stdout.decode(), json.loads(await trio.Path(out).read_text())
