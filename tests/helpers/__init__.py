"""What tests share, in one place: the proxy and simulator on port 0
(:mod:`.proxy`), a scripted raw upstream (:mod:`.upstream`), one raw client
(:mod:`.client`), the command run as a process (:mod:`.cli`, :mod:`.workers`)
and sample data (:mod:`.samples`). A test module imports from here, never from
another test module (``tests/test_layout.py`` checks it); fixtures built on
these live in ``tests/conftest.py``."""

from tests.helpers.cli import CLI, Running, children, run_cli
from tests.helpers.client import Answer, Client
from tests.helpers.proxy import (
    BODY,
    CHAT,
    TRANSPORTS,
    AccessLog,
    H2Target,
    Proxied,
    Stack,
    TLSFiles,
    assert_no_tracebacks,
    h2_target,
    live_tasks,
    open_fds,
    proxied,
    split_origin,
    stack_on,
    start_proxy,
    start_sim,
    wait_for_baseline,
)
from tests.helpers.upstream import Received, ScriptedUpstream, Then, plain_answer
from tests.helpers.workers import (
    ADMIN,
    KEYS,
    Server,
    admin,
    only_worker,
    open_stream,
    streams_on_both_workers,
    two_workers,
    worker_of,
)

__all__ = [
    "ADMIN",
    "BODY",
    "CHAT",
    "CLI",
    "KEYS",
    "TRANSPORTS",
    "AccessLog",
    "Answer",
    "Client",
    "H2Target",
    "Proxied",
    "Received",
    "Running",
    "ScriptedUpstream",
    "Server",
    "Stack",
    "TLSFiles",
    "Then",
    "admin",
    "assert_no_tracebacks",
    "children",
    "h2_target",
    "live_tasks",
    "only_worker",
    "open_fds",
    "open_stream",
    "plain_answer",
    "proxied",
    "run_cli",
    "split_origin",
    "stack_on",
    "start_proxy",
    "start_sim",
    "streams_on_both_workers",
    "two_workers",
    "wait_for_baseline",
    "worker_of",
]
