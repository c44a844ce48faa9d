"""HAProxy (Debian's) in front of the simulated upstream, in HTTP mode.

Run: ``python -m benchmarks.peers.haproxy_proxy UPSTREAM PORT [abortonclose]``.
Without ``abortonclose`` HAProxy keeps an upstream request it has sent even
after its client left, until the upstream answers (which for a model that
thinks may be minutes); ``option abortonclose`` closes it at once.
"""

from benchmarks.peers._configured import run_peer

TEMPLATE = """
global
    maxconn 8000  # two fds each, under this machine's limit of 20,000
    pidfile {prefix}/haproxy.pid
defaults
    mode http
    timeout connect 10s
    timeout client 600s
    timeout server 600s
    {settings}
frontend proxy
    bind 127.0.0.1:{listen}
    default_backend model
{tls}
backend model
    server model {host}:{port}
"""

TLS = """
frontend proxy_tls
    bind 127.0.0.1:{tls_port} ssl crt {certkey} alpn h2,http/1.1
    default_backend model
"""

SETTINGS = {"": "", "abortonclose": "option abortonclose"}

if __name__ == "__main__":
    run_peer("haproxy", TEMPLATE, TLS, SETTINGS, ["haproxy", "-db", "-f", "{config}"])
