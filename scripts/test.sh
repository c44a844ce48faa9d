#!/usr/bin/env bash
# Installs everything the tests need, then runs the linters and the tests.
# Extra arguments go to pytest (e.g. -m clients).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages: Chromium for the browser clients, curl for the curl client,
# openssl for the certificate of the conformance run's TLS listener; unshare and
# mount for the manifest's start under a read-only root (tests/test_manifests.py).
bash scripts/ensure_debian.sh /usr/bin/chromium=chromium curl=curl openssl=openssl \
  unshare=util-linux mount=mount

# Node packages for the JavaScript clients, exactly as locked.
command -v npm >/dev/null || { echo "npm is missing: install Node.js 20 or newer" >&2; exit 1; }
(cd tests/clients/js && npm ci --no-audit --no-fund --loglevel=error)

bash scripts/bootstrap.sh test bench otel
# The real engines tests/test_engines.py drives (vLLM, llama-server, a tiny model),
# installed into a cache outside the checkout: some 20 min the first time on 2 cores
# (llama.cpp's build is most of it), seconds after. TRIOPROXY_SKIP_ENGINES=1 skips
# the install, and those tests then skip.
if [ "${TRIOPROXY_SKIP_ENGINES:-0}" != 1 ]; then bash scripts/engines/install.sh; fi
.venv/bin/ruff check trioproxy tests benchmarks
.venv/bin/ruff format --check trioproxy tests benchmarks
.venv/bin/mypy trioproxy tests benchmarks
exec .venv/bin/pytest "$@"
