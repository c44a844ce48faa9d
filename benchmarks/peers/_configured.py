"""Running a Debian-packaged proxy with a config written for one benchmark run.

A peer script fills its template with the upstream's host and port, the port
to listen on, a temporary prefix for pid and temp files, and the settings
being graded (empty: the package's defaults), then execs the server in the
foreground, so the benchmark's signals reach it directly.
"""

import os
import sys
import tempfile
from urllib.parse import urlsplit

__all__ = ["TLS_ARGS", "exec_with_config", "peer_args", "run_peer"]

TLS_ARGS = "--tls {tls_port} {certfile} {keyfile} {certkey}"
"""What a peer command adds for the conformance run's listener with TLS and HTTP/2."""


def peer_args(argv: list[str]) -> tuple[str, str, str, dict[str, str] | None]:
    """``UPSTREAM PORT [VARIANT] [--tls PORT CERTFILE KEYFILE CERTKEY]``."""
    tls = None
    if "--tls" in argv:
        at = argv.index("--tls")
        names = ("tls_port", "certfile", "keyfile", "certkey")
        tls = dict(zip(names, argv[at + 1 : at + 5], strict=True))
        argv = argv[:at] + argv[at + 5 :]
    upstream, listen, *variant = argv
    return upstream, listen, variant[0] if variant else "", tls


def exec_with_config(
    name: str,
    template: str,
    upstream: str,
    listen: str,
    settings: str,
    argv: list[str],
    tls: tuple[str, dict[str, str]] | None = None,
) -> None:
    """``argv`` may hold ``{config}`` and ``{prefix}``; the template also ``{host}``,
    ``{port}``, ``{path}``, ``{listen}``, ``{settings}`` and ``{tls}``, which is
    ``tls``'s template (with ``{tls_port}``, ``{certfile}``, ``{keyfile}`` and
    ``{certkey}`` besides) filled in, or nothing."""
    url = urlsplit(upstream)
    prefix = tempfile.mkdtemp(prefix=f"{name}-peer-")
    os.chmod(prefix, 0o755)  # servers that drop root (Apache) still read their files
    config = f"{prefix}/{name}.conf"
    values = {
        "prefix": prefix,
        "host": url.hostname,
        "port": url.port,
        "path": url.path.rstrip("/"),
        "listen": listen,
        "settings": settings,
    }
    block = tls[0].format(**values, **tls[1]) if tls else ""
    with open(config, "w") as out:
        out.write(template.format(**values, tls=block))
    filled = [a.format(config=config, prefix=prefix) for a in argv]
    os.environ.setdefault("HOME", prefix)
    os.environ["XDG_DATA_HOME"] = os.environ["XDG_CONFIG_HOME"] = prefix
    os.execvp(filled[0], filled)


def run_peer(
    name: str, template: str, tls_template: str, settings: dict[str, str], argv: list[str]
) -> None:
    """A peer script's main: its command line read, its config written, the server run.
    ``settings`` maps the variant named on the command line to the settings it grades."""
    upstream, listen, variant, tls = peer_args(sys.argv[1:])
    block = (tls_template, tls) if tls else None
    exec_with_config(name, template, upstream, listen, settings[variant], argv, block)
