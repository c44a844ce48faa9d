"""The ``trioproxy`` command run as users run it: a separate process (with its
workers, in a session of its own) whose stderr the test reads."""

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["CLI", "Running", "children", "run_cli"]

CLI = [sys.executable, "-m", "trioproxy"]


class Running:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = b""

    async def wait_for(self, needle: bytes, count: int = 1) -> bytes:
        """Read the process's stderr until ``needle`` (``count`` times); return its first line."""
        assert self.process.stderr is not None
        while self.output.count(needle) < count:
            chunk = await self.process.stderr.receive_some(65536)
            if not chunk:
                raise AssertionError(f"process ended before {needle!r}: {self.output.decode()}")
            self.output += chunk
        start = self.output.rfind(b"\n", 0, self.output.index(needle)) + 1
        return self.output[start : self.output.index(b"\n", self.output.index(needle))]

    async def origin(self) -> str:
        line = await self.wait_for(b"Running on http")
        return line.split(b"Running on ")[1].split()[0].decode()

    async def drain(self) -> bytes:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some(65536):
            self.output += chunk
        return self.output


@asynccontextmanager
async def run_cli(*args: str) -> AsyncIterator[Running]:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        [*CLI, *args], stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        yield Running(process)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)  # with its workers, if any
        with trio.CancelScope(shield=True):
            await process.wait()


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        return [int(child) for child in file.read().split()]
