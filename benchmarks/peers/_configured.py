"""Running a Debian-packaged proxy with a config written for one benchmark run.

A peer script fills its template with the upstream's host and port, the port
to listen on, a temporary prefix for pid and temp files, and the settings
being graded (empty: the package's defaults), then execs the server in the
foreground, so the benchmark's signals reach it directly.
"""

import os
import tempfile
from urllib.parse import urlsplit

__all__ = ["exec_with_config"]


def exec_with_config(
    name: str, template: str, upstream: str, listen: str, settings: str, argv: list[str]
) -> None:
    """``argv`` may hold ``{config}`` and ``{prefix}``; the template also ``{host}``,
    ``{port}``, ``{path}``, ``{listen}`` and ``{settings}``."""
    url = urlsplit(upstream)
    prefix = tempfile.mkdtemp(prefix=f"{name}-peer-")
    os.chmod(prefix, 0o755)  # servers that drop root (Apache) still read their files
    config = f"{prefix}/{name}.conf"
    with open(config, "w") as out:
        out.write(
            template.format(
                prefix=prefix,
                host=url.hostname,
                port=url.port,
                path=url.path.rstrip("/"),
                listen=listen,
                settings=settings,
            )
        )
    filled = [a.format(config=config, prefix=prefix) for a in argv]
    os.environ.setdefault("HOME", prefix)
    os.environ["XDG_DATA_HOME"] = os.environ["XDG_CONFIG_HOME"] = prefix
    os.execvp(filled[0], filled)
