"""Caddy (Debian's) ``reverse_proxy`` in front of the simulated upstream.

Run: ``python -m benchmarks.peers.caddy_proxy UPSTREAM PORT [flush]``.
``flush`` adds ``flush_interval -1`` (write every chunk at once), which the
guides for streaming APIs give.
"""

from benchmarks.peers._configured import run_peer

TEMPLATE = """
{{
    admin off
    auto_https off
}}
http://:{listen} {{
    bind 127.0.0.1
    reverse_proxy {host}:{port} {{
        {settings}
    }}
}}
{tls}
"""

TLS = """
https://:{tls_port} {{
    bind 127.0.0.1
    tls {certfile} {keyfile}
    reverse_proxy {host}:{port} {{
        {settings}
    }}
}}
"""

SETTINGS = {"": "", "flush": "flush_interval -1"}

if __name__ == "__main__":
    run_peer(
        "caddy",
        TEMPLATE,
        TLS,
        SETTINGS,
        ["caddy", "run", "--adapter", "caddyfile", "--config", "{config}"],
    )
