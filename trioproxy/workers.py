"""Several worker processes on one port: ``--workers N``.

The parent binds the listening socket once and starts N copies of
``trioproxy serve`` that inherit it (hypercorn's ``fd://`` bind); the kernel
spreads connections among them. Each worker is a whole proxy: a request
lives and dies in one worker, and no state is shared. SIGTERM and SIGINT
reach every worker, each drains for its grace period, and the parent exits
when they have.
"""

import os
import signal
import socket
import subprocess
import sys
from types import FrameType

__all__ = ["LISTEN_FD", "run_workers"]

LISTEN_FD = "TRIOPROXY_LISTEN_FD"


def run_workers(count: int, host: str, port: int) -> None:
    listener = socket.create_server((host, port), backlog=4096, reuse_port=False)
    listener.set_inheritable(True)
    env = os.environ | {LISTEN_FD: str(listener.fileno())}
    argv = [sys.executable, "-m", "trioproxy", *sys.argv[1:]]
    # Each worker would start workers of its own without this.
    argv += ["--workers", "1"]
    workers = [subprocess.Popen(argv, env=env, pass_fds=(listener.fileno(),)) for _ in range(count)]
    listener.close()

    def forward(signum: int, frame: FrameType | None) -> None:
        for worker in workers:
            worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [worker.wait() for worker in workers]
    sys.exit(max(codes, default=0))
