"""trioproxy on a plain port and, in a second process, with TLS (h2 by ALPN) on
another: the form the conformance run's ``{tls_port}`` asks for.

Run: ``python -m benchmarks.peers.trioproxy_tls UPSTREAM PORT --tls TLS_PORT CERT KEY CERTKEY``.
SIGTERM and SIGINT reach both; it exits when both have.
"""

import signal
import subprocess
import sys
from types import FrameType

from benchmarks.peers._configured import peer_args


def main(argv: list[str]) -> None:
    upstream, listen, _, tls = peer_args(argv)
    serve = [sys.executable, "-m", "trioproxy", "serve", "--upstream", upstream]
    commands = [[*serve, "--port", listen]]
    if tls:
        cert = ["--certfile", tls["certfile"], "--keyfile", tls["keyfile"]]
        commands.append([*serve, "--port", tls["tls_port"], *cert])
    servers = [subprocess.Popen(command) for command in commands]

    def forward(signum: int, frame: FrameType | None) -> None:
        for server in servers:
            server.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    sys.exit(max(server.wait() for server in servers))


if __name__ == "__main__":
    main(sys.argv[1:])
