"""The proxy as its own process, and what is checked after every case.

The proxy runs as users run it (``python -m trioproxy serve``), its stderr
going to a file, so "alive" is its process and "its log" is what it wrote.
After a case: the process is running, the lines the case added are each one
well-formed log line (a timestamp, a level, a logger, no raw control byte,
no traceback, nothing at ERROR), and another client's ``/health`` answered.
"""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import trio

from tests.helpers.client import Client

__all__ = ["ADMIN_KEY", "LiveProxy", "health_ms", "wait_settled"]

ADMIN_KEY = "fuzz-admin-key"
STALL_MS = 1000.0
"""A /health slower than this is a stall the case caused, never scheduling noise."""
MAX_LINE = 16 * 1024
"""Every outside value is cut before it is logged; no line gets near this."""

_LINE = re.compile(
    rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\] (DEBUG|INFO|WARNING) [\w.]+: [^\r\n]*\Z"
)  # the time, the worker's pid, the level, the logger
# C0 but for the line's own end, DEL, and C1 (as UTF-8, how the log is written).
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]")


class LiveProxy:
    """One ``trioproxy serve`` process; restarted when a case has ended it."""

    def __init__(self, workdir: pathlib.Path, args: list[str], env: dict[str, str]) -> None:
        self._workdir, self._args, self._env = workdir, args, env
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "proxy-0.log"
        self._offset = 0
        self._starts = 0
        self.port = 0

    def start(self) -> None:
        self._starts += 1
        self._log = self._workdir / f"proxy-{self._starts}.log"
        self._offset = 0
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "trioproxy", "serve", "--port", "0", *self._args],
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=os.environ | self._env | {"PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not (found := re.search(rb"Running on http://127\.0\.0\.1:(\d+)", self._read())):
            assert self._process.poll() is None, self._read().decode(errors="replace")
            assert time.monotonic() < deadline, "the proxy did not start within 30 s"
            time.sleep(0.05)  # a starting process: nothing to wait on but its log
        self.port = int(found[1])
        self._offset = len(self._read())

    def ensure_running(self) -> None:
        """A case that ended the process failed already; the next gets a fresh one."""
        if self._process is None or self._process.poll() is not None:
            self.start()

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)

    def _read(self) -> bytes:
        return self._log.read_bytes()

    def check(self) -> None:
        """The process lives and the case's log lines keep the rule (one assert each)."""
        assert self._process is not None
        log = self._read()
        end = log.rfind(b"\n") + 1  # a line still being written is the next check's
        added, self._offset = log[self._offset : end], max(end, self._offset)
        lines = added.split(b"\n")[:-1]
        code = self._process.poll()
        assert code is None, f"the proxy ended with {code}: {_tail(lines)}"
        assert b"Traceback" not in added, f"a traceback in the log: {_tail(lines)}"
        long = [line[:200] for line in lines if len(line) > MAX_LINE]
        assert not long, f"log lines over {MAX_LINE} bytes: {long}"
        raw = [line for line in lines if _CONTROL.search(line)]
        assert not raw, f"raw control bytes in log lines: {raw[:3]}"
        odd = [line for line in lines if not _LINE.match(line)]
        assert not odd, f"not one log line each (or at ERROR): {odd[:5]}"


def _tail(lines: list[bytes]) -> str:
    return b"\n".join(lines[-30:]).decode(errors="replace")


async def health_ms(port: int) -> float:
    """Another client's ``GET /health`` on a fresh connection, in ms (STALL_MS*2 if none)."""
    started = trio.current_time()
    with trio.move_on_after(STALL_MS * 2 / 1000):
        client = await Client.open(port)
        try:
            status, answer = await client.request("GET", "/health")
        finally:
            client.close()
        assert status == 200, answer[:200]
        return (trio.current_time() - started) * 1000
    return STALL_MS * 2


async def wait_settled(port: int) -> None:
    """Wait until the proxy lists no request in flight: the case's lines are written.

    Every case's clients have left when this is called; the proxy's promise is
    that their requests end at once, so a request still listed after 5 s is a
    failure of its own. Polling: nothing else says when hypercorn is done.
    """
    answer = b""
    with trio.move_on_after(5):
        client = await Client.open(port)  # one keep-alive connection for every ask
        try:
            while True:
                _, answer = await client.request("GET", "/admin/requests", ADMIN_KEY)
                if b'"requests":[]' in answer.replace(b" ", b""):
                    return
                await trio.sleep(0.02)
        finally:
            client.close()
    raise AssertionError(
        f"requests still in flight 5 s after their clients left: {answer[-500:]!r}"
    )
