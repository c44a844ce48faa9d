"""Several worker processes on one port: ``--workers N``.

The parent binds the listening socket once and starts N copies of
``trioproxy serve`` that inherit it (hypercorn's ``fd://`` bind); the kernel
spreads connections among them. Each worker is a whole proxy: a request
lives and dies in one worker, and no state is shared. SIGTERM, SIGINT and
SIGQUIT reach every worker, each drains for its grace period (a second
SIGTERM, or SIGQUIT, cuts it short: :mod:`trioproxy.server.signals`), and
the parent exits when they have. On SIGHUP the parent asks each worker, over
its control socket, to reload the settings file, and logs each one's answer
(:func:`trioproxy.proxy.admin.cluster.ask_to_reload`).

A worker that exits while the server is not stopping is logged and replaced,
after a delay that doubles with each quick failure (0.5 s up to 30 s) and
resets once a worker has lived a minute. The parent keeps the listening
socket for that; connections queue in the kernel meanwhile.

The parent also makes the server's run directory (removed when it exits):
each worker's control socket, through which any worker's admin sees and
cancels the others' requests (:mod:`trioproxy.proxy.admin.cluster`), and the metrics'
per-worker files, which any worker's ``/metrics`` sums (:mod:`trioproxy.proxy.admin.metrics`).
When a worker exits, its socket and its live gauges go; its counters stay.

A worker's command line holds no setting: ``/proc/PID/cmdline`` is readable
by every local user, and the options may hold keys. The parent writes the
options it was given as JSON into a sealed memory file that each worker
inherits (:data:`OPTIONS_FD` names it) and reads once; only the worker's
user can open it, as with ``/proc/PID/environ``.
"""

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from types import FrameType
from typing import Any

from prometheus_client.multiprocess import mark_process_dead

from trioproxy.proxy.admin.cluster import RUN_DIR, ask_to_reload, socket_path
from trioproxy.proxy.admin.metrics import MULTIPROC_DIR
from trioproxy.proxy.core.tally import forget_worker
from trioproxy.proxy.gateway.settings import SettingsError, load

__all__ = ["LISTEN_FD", "OPTIONS_FD", "run_workers", "worker_options"]

LISTEN_FD = "TRIOPROXY_LISTEN_FD"
OPTIONS_FD = "TRIOPROXY_OPTIONS_FD"

log = logging.getLogger("trioproxy.workers")

_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 30.0
_HEALTHY_AFTER_S = 60.0
_RELOAD_TIMEOUT_S = 10.0


class _Supervisor:
    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        fds: tuple[int, ...],
        options: dict[str, Any],
        count: int,
    ) -> None:
        self._argv = argv
        self._options = options
        self.count = count
        self._env = env
        self._fds = fds
        self._run_dir = env[RUN_DIR]
        self.workers: dict[int, float] = {}  # pid -> when it started
        self.stopping = False
        self._delay_s = _FIRST_DELAY_S

    def start(self) -> int:
        worker = subprocess.Popen(
            self._argv, env=self._env, pass_fds=self._fds, preexec_fn=_end_with_parent
        )
        self.workers[worker.pid] = time.monotonic()
        return worker.pid

    def forward(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for pid in self.workers:
            # One that exited already is still to be collected by os.wait().
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def reload(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: every worker asked to reload, in a thread (the handler must not
        block the supervising loop), one line per worker with its answer."""
        workers = sorted(self.workers)
        threading.Thread(target=self._reload, args=(workers,), daemon=True).start()

    def _reload(self, workers: list[int]) -> None:
        log.info("SIGHUP: asking %d workers to reload the settings file", len(workers))
        for pid in workers:
            answer = ask_to_reload(self._run_dir, pid, "SIGHUP to the server", _RELOAD_TIMEOUT_S)
            if isinstance(answer, str):
                log.warning("worker %d did not reload: %s", pid, answer)
            elif answer["reloaded"]:
                log.info("worker %d reloaded: %s", pid, answer["message"])
            else:
                log.warning("worker %d did not reload: %s", pid, answer["message"])
        try:  # what only a new parent can change: the workers themselves read it as 1
            count = load(None, self._options).workers
        except SettingsError:
            return  # each worker said why already
        if count != self.count:
            log.warning("server.workers = %d: needs a restart to apply", count)

    def exited(self, pid: int) -> None:
        """Forget a worker: its control socket, its tallies and live gauges; its counters stay."""
        self.workers.pop(pid)
        socket_path(self._run_dir, pid).unlink(missing_ok=True)
        forget_worker(self._run_dir, pid)
        mark_process_dead(pid, self._env[MULTIPROC_DIR])  # type: ignore[no-untyped-call]

    def replace(self, pid: int, code: int) -> None:
        lived_s = time.monotonic() - self.workers[pid]
        self.exited(pid)
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


def _end_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies, even by SIGKILL, so no
    orphaned worker keeps serving (and holding upstream streams) with no supervisor.
    SIGHUP ignored until the worker catches it itself: one sent to the whole group
    while it starts must not end it."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"


def _share(options: dict[str, Any]) -> int:
    """A sealed memory file holding ``options``: no worker can change what the next one reads."""
    fd = os.memfd_create("trioproxy-options", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, json.dumps(options).encode())
    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def worker_options() -> dict[str, Any] | None:
    """In a worker, the options the parent was given; None in any other process."""
    if (name := os.environ.pop(OPTIONS_FD, None)) is None:
        return None
    try:
        fd = int(name)
        try:
            # pread: the file's offset is shared with every other worker.
            size, data = os.fstat(fd).st_size, b""
            while len(data) < size and (chunk := os.pread(fd, size - len(data), len(data))):
                data += chunk
        finally:
            os.close(fd)
        options = json.loads(data)
        if not isinstance(options, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:  # set by hand, not by a parent
        sys.exit(f"trioproxy: {OPTIONS_FD} names no options a parent passed: {exc}")
    return options


def run_workers(count: int, host: str, port: int, options: dict[str, Any], log_level: str) -> None:
    """Serve with ``count`` workers, each given ``options`` (by name, as the command line's)."""
    run_dir = _make_run_dir(count)
    try:
        listener = socket.create_server((host, port), backlog=4096, reuse_port=False)
    except OSError:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    listener.set_inheritable(True)
    # Each worker would start workers of its own without workers=1.
    shared = _share(options | {"workers": 1})
    metrics_dir = pathlib.Path(run_dir) / "metrics"
    metrics_dir.mkdir()
    env = os.environ | {
        LISTEN_FD: str(listener.fileno()),
        RUN_DIR: run_dir,
        MULTIPROC_DIR: str(metrics_dir),
        OPTIONS_FD: str(shared),
    }
    argv = [sys.executable, "-m", "trioproxy", "--log-level", log_level, "serve"]
    supervisor = _Supervisor(argv, env, (listener.fileno(), shared), options, count)
    for stop in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(stop, supervisor.forward)
    signal.signal(signal.SIGHUP, supervisor.reload)
    try:
        codes = _supervise(supervisor)
    finally:
        listener.close()
        os.close(shared)
        shutil.rmtree(run_dir, ignore_errors=True)
    sys.exit(max(codes, default=0))


def _make_run_dir(count: int) -> str:
    """The run directory, in ``$TMPDIR`` or else ``/tmp``, mode 0700: only this user
    reaches the sockets. Under a read-only root there is none: start-up ends in one
    line saying what to mount, not a traceback."""
    try:
        return tempfile.mkdtemp(prefix="trioproxy-")
    except OSError as exc:
        sys.exit(
            f"trioproxy: --workers {count} needs a writable directory for its run directory "
            f"({exc.strerror or exc}): mount one at /tmp (in Kubernetes an emptyDir) or set "
            "TMPDIR to one"
        )


def _supervise(supervisor: _Supervisor) -> list[int]:
    """Start the workers, replace those that die, and return the exit codes at the end."""
    for _ in range(supervisor.count):
        supervisor.start()
    codes = []
    while supervisor.workers:
        pid, status = os.wait()
        code = os.waitstatus_to_exitcode(status)
        if pid not in supervisor.workers:
            continue
        if supervisor.stopping:
            supervisor.exited(pid)
            codes.append(code)
        else:
            supervisor.replace(pid, code)
    return codes
