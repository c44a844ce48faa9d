"""Apache httpd (Debian's) with ``mod_proxy_http`` in front of the simulated upstream.

Run: ``python -m benchmarks.peers.apache_proxy UPSTREAM PORT [flush]``.
``flush`` adds ``flushpackets=on`` to the ``ProxyPass``, which streaming
needs (without it Apache holds small chunks back).
"""

from benchmarks.peers._configured import run_peer

TEMPLATE = """
ServerRoot "{prefix}"
ServerName localhost
Listen 127.0.0.1:{listen}
PidFile {prefix}/httpd.pid
DefaultRuntimeDir {prefix}
ErrorLog /dev/stderr
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_http_module /usr/lib/apache2/modules/mod_proxy_http.so
ServerLimit 48
ThreadsPerChild 25
MaxRequestWorkers 1200
ProxyTimeout 600
ProxyPass "/v1/" "http://{host}:{port}{path}/" {settings}
{tls}
"""

TLS = """
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
LoadModule http2_module /usr/lib/apache2/modules/mod_http2.so
Listen 127.0.0.1:{tls_port}
<VirtualHost 127.0.0.1:{tls_port}>
    SSLEngine on
    SSLCertificateFile {certfile}
    SSLCertificateKeyFile {keyfile}
    Protocols h2 http/1.1
    ProxyPass "/v1/" "http://{host}:{port}{path}/" {settings}
</VirtualHost>
"""

SETTINGS = {"": "", "flush": "flushpackets=on"}

if __name__ == "__main__":
    run_peer("apache", TEMPLATE, TLS, SETTINGS, ["apache2", "-f", "{config}", "-DFOREGROUND"])
