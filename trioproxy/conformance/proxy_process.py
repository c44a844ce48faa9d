"""Running a proxy under test: start its command, wait until it accepts, stop it."""

import shlex
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["free_port", "running_proxy", "wait_accepting"]

type Target = tuple[str, int]
"""Where the proxy listens: host, port."""


@asynccontextmanager
async def running_proxy(
    command: str,
    upstream: str,
    wait_s: float = 20.0,
    pid: list[int] | None = None,
    tls: list[Target] | None = None,
) -> AsyncIterator[Target]:
    """Start ``command`` with ``{upstream}`` and ``{port}`` filled in; wait until it accepts.

    A command that also names ``{tls_port}`` listens there with TLS and HTTP/2 as
    well, with a fresh self-signed certificate: ``{certfile}`` and ``{keyfile}``,
    or both in one PEM, ``{certkey}``. That listener is appended to ``tls``."""
    port, tls_port = free_port(), free_port()
    certs = _self_signed() if "{tls_port}" in command else {}
    filled = command.format(upstream=upstream, port=port, tls_port=tls_port, **certs)
    argv = shlex.split(filled)
    # The proxy's own log would drown the table; a failing run says where it is.
    with tempfile.NamedTemporaryFile(
        prefix="conformance-proxy-", suffix=".log", delete=False
    ) as log:
        process = await trio.lowlevel.open_process(argv, stdout=log, stderr=log)
        if pid is not None:  # for a caller that measures the process
            pid.append(process.pid)
        try:
            await wait_accepting(("127.0.0.1", port), wait_s, process)
            if certs:
                await wait_accepting(("127.0.0.1", tls_port), wait_s, process)
                if tls is not None:
                    tls.append(("127.0.0.1", tls_port))
            yield ("127.0.0.1", port)
        finally:
            process.terminate()
            # Shield from an outer cancel, but not from our own deadline: a
            # peer may wait forever for the upstream calls it never cancelled.
            with trio.CancelScope(shield=True), trio.move_on_after(5) as waited:
                await process.wait()
            if waited.cancelled_caught:
                process.kill()
    print(f"proxy log: {log.name}")


def _self_signed() -> dict[str, str]:
    """A key and a certificate for localhost (openssl's command), valid two days."""
    where = tempfile.mkdtemp(prefix="conformance-tls-")
    files = {name: f"{where}/{name}.pem" for name in ("certfile", "keyfile", "certkey")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
    out = ["-keyout", files["keyfile"], "-out", files["certfile"]]
    subprocess.run(
        ["openssl", "req", "-x509", *ec, "-nodes", "-days", "2", *subject, *out],
        check=True,
        capture_output=True,
    )
    with open(files["certkey"], "w") as both:
        for part in ("certfile", "keyfile"):
            with open(files[part]) as pem:
                both.write(pem.read())
    return files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_accepting(target: Target, wait_s: float, process: trio.Process) -> None:
    with trio.fail_after(wait_s):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"proxy command exited with {process.returncode}")
            try:
                stream = await trio.open_tcp_stream(*target)
            except OSError:
                await trio.sleep(0.05)  # the proxy is still starting: nothing to wait on
                continue
            await stream.aclose()
            return
