"""nginx (Debian's) with ``proxy_buffering off``: the floor every run measures against.

Writes a config for UPSTREAM and PORT into a temporary prefix and runs nginx
in the foreground. Run: ``python -m benchmarks.peers.nginx_proxy UPSTREAM PORT [default]``.
The settings are those ``docs/deploy.md`` gives; ``default`` grades a bare
``proxy_pass`` instead (buffered, HTTP/1.0 to the upstream).
"""

from benchmarks.peers._configured import run_peer

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
{settings}
        }}
    }}
{tls}
}}
"""

TLS = """
    server {{
        listen 127.0.0.1:{tls_port} ssl http2;
        ssl_certificate {certfile};
        ssl_certificate_key {keyfile};
        location /v1/ {{
            proxy_pass http://model{path}/;
{settings}
        }}
    }}
"""


DEPLOY_SETTINGS = """
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;"""


SETTINGS = {"": DEPLOY_SETTINGS, "deploy": DEPLOY_SETTINGS, "default": ""}

if __name__ == "__main__":
    run_peer(
        "nginx",
        CONFIG,
        TLS,
        SETTINGS,
        ["nginx", "-p", "{prefix}", "-c", "{config}", "-e", "stderr"],
    )
