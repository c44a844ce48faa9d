"""A fast upstream for the overhead benchmark: nginx answering every POST with a static file.

Python's simulated upstream would be the bottleneck under load; nginx serving
one file is not. ``error_page 405 =200 $uri`` makes nginx's static handler
answer POST too.
"""

import json
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from trioproxy.sim import Render

__all__ = ["fast_upstream"]

CONFIG = """
worker_processes 1;
daemon off;
error_log stderr warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            root {prefix};
            default_type {content_type};
            try_files /answer =404;
            error_page 405 =200 /answer;
        }}
        location = /answer {{ root {prefix}; default_type {content_type}; }}
    }}
}}
"""


@contextmanager
def fast_upstream(kind: str, port: int) -> Iterator[str]:
    """nginx on ``port`` answering a small JSON (``kind="json"``) or a 200-event stream."""
    prefix = pathlib.Path(tempfile.mkdtemp(prefix="fastup-"))
    prefix.chmod(0o755)  # nginx's workers run as nobody
    render = Render("chat", "sim-small", "bench")
    answer = render.whole(20) if kind == "json" else render.stream(197)  # 200 events in all
    (prefix / "answer").write_bytes(answer)
    content_type = "application/json" if kind == "json" else "text/event-stream"
    (prefix / "nginx.conf").write_text(
        CONFIG.format(prefix=prefix, port=port, content_type=content_type)
    )
    process = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")])
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(prefix, ignore_errors=True)


def request_body(kind: str) -> str:
    return json.dumps(
        {
            "model": "sim-small",
            "stream": kind == "sse",
            "messages": [{"role": "user", "content": "hello"}],
        }
    )
