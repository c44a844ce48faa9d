#!/usr/bin/env bash
# Installs what the benchmarks measure besides trioproxy: nginx, HAProxy,
# Caddy, Apache httpd (its binary and modules only) and wrk from Debian's
# packages, matplotlib, and LiteLLM 1.100.5 in its own venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh test bench
bash scripts/ensure_debian.sh nginx=nginx-light wrk=wrk haproxy=haproxy caddy=caddy \
  /usr/sbin/apache2=apache2-bin
venv=build/litellm-venv
if [ ! -x "$venv/bin/litellm" ]; then
  "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'litellm[proxy]==1.100.5'
fi
