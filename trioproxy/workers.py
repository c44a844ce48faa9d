"""Several worker processes on one port: ``--workers N``.

The parent binds the listening socket once and starts N copies of
``trioproxy serve`` that inherit it (hypercorn's ``fd://`` bind); the kernel
spreads connections among them. Each worker is a whole proxy: a request
lives and dies in one worker, and no state is shared. SIGTERM and SIGINT
reach every worker, each drains for its grace period, and the parent exits
when they have.

A worker that exits while the server is not stopping is logged and replaced,
after a delay that doubles with each quick failure (0.5 s up to 30 s) and
resets once a worker has lived a minute. The parent keeps the listening
socket for that; connections queue in the kernel meanwhile.
"""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

__all__ = ["LISTEN_FD", "run_workers"]

LISTEN_FD = "TRIOPROXY_LISTEN_FD"

log = logging.getLogger("trioproxy.workers")

_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 30.0
_HEALTHY_AFTER_S = 60.0


class _Supervisor:
    def __init__(self, argv: list[str], env: dict[str, str], listen_fd: int) -> None:
        self._argv = argv
        self._env = env
        self._fd = listen_fd
        self.workers: dict[int, float] = {}  # pid -> when it started
        self.stopping = False
        self._delay_s = _FIRST_DELAY_S

    def start(self) -> int:
        worker = subprocess.Popen(self._argv, env=self._env, pass_fds=(self._fd,))
        self.workers[worker.pid] = time.monotonic()
        return worker.pid

    def forward(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for pid in self.workers:
            # One that exited already is still to be collected by os.wait().
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def replace(self, pid: int, code: int) -> None:
        lived_s = time.monotonic() - self.workers.pop(pid)
        if lived_s >= _HEALTHY_AFTER_S:
            self._delay_s = _FIRST_DELAY_S
        log.warning(
            "worker %d exited (%s) after %.1f s; starting another in %.1f s",
            pid,
            _describe(code),
            lived_s,
            self._delay_s,
        )
        deadline = time.monotonic() + self._delay_s
        self._delay_s = min(self._delay_s * 2, _MAX_DELAY_S)
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))  # a signal meanwhile stops the replacing
        if not self.stopping:
            log.info("worker %d started in place of worker %d", self.start(), pid)


def _describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"


def run_workers(count: int, host: str, port: int) -> None:
    listener = socket.create_server((host, port), backlog=4096, reuse_port=False)
    listener.set_inheritable(True)
    env = os.environ | {LISTEN_FD: str(listener.fileno())}
    argv = [sys.executable, "-m", "trioproxy", *sys.argv[1:]]
    # Each worker would start workers of its own without this.
    argv += ["--workers", "1"]
    supervisor = _Supervisor(argv, env, listener.fileno())
    signal.signal(signal.SIGTERM, supervisor.forward)
    signal.signal(signal.SIGINT, supervisor.forward)
    for _ in range(count):
        supervisor.start()
    codes = []
    while supervisor.workers:
        pid, status = os.wait()
        code = os.waitstatus_to_exitcode(status)
        if pid not in supervisor.workers:
            continue
        if supervisor.stopping:
            supervisor.workers.pop(pid)
            codes.append(code)
        else:
            supervisor.replace(pid, code)
    listener.close()
    sys.exit(max(codes, default=0))
