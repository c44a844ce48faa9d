"""nginx (Debian's) with ``proxy_buffering off``: the floor every run measures against.

Writes a config for UPSTREAM and PORT into a temporary prefix and runs nginx
in the foreground. Run: ``python -m benchmarks.peers.nginx_proxy UPSTREAM PORT``.
"""

import os
import sys
import tempfile
from urllib.parse import urlsplit

CONFIG = """
worker_processes 1;
daemon off;
error_log stderr warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    upstream model {{ server {host}:{port}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{listen};
        location /v1/ {{
            proxy_pass http://model{path}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def main(upstream: str, listen: str) -> None:
    url = urlsplit(upstream)
    prefix = tempfile.mkdtemp(prefix="nginx-peer-")
    config = CONFIG.format(
        prefix=prefix, host=url.hostname, port=url.port, path=url.path.rstrip("/"), listen=listen
    )
    with open(f"{prefix}/nginx.conf", "w") as out:
        out.write(config)
    # exec: signals from the benchmark reach nginx itself.
    os.execvp("nginx", ["nginx", "-p", prefix, "-c", f"{prefix}/nginx.conf", "-e", "stderr"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
