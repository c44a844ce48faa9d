#!/usr/bin/env bash
# Installs everything the tests need, then runs the linters and the tests.
# Extra arguments go to pytest (e.g. -m clients).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages: Chromium for the browser clients, curl for the curl client.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Node packages for the JavaScript clients, exactly as locked.
command -v npm >/dev/null || { echo "npm is missing: install Node.js 20 or newer" >&2; exit 1; }
(cd tests/clients/js && npm ci --no-audit --no-fund --loglevel=error)

bash scripts/bootstrap.sh test bench
.venv/bin/ruff check trioproxy tests benchmarks
.venv/bin/ruff format --check trioproxy tests benchmarks
.venv/bin/mypy trioproxy tests benchmarks
exec .venv/bin/pytest "$@"
