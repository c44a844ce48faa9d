#!/usr/bin/env bash
# Creates .venv with Python 3.13 and installs trioproxy into it, with the
# extras given as arguments (e.g. "test"). Sourced by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 2>/dev/null | sort -rV); do
    [ -n "$candidate" ] || continue
    # A pyenv shim exists even when its version is not selected: run it to be sure.
    if "$candidate" -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "trioproxy needs Python 3.13 or newer: install python3.13 or set PYTHON=/path/to/python3.13" >&2
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null; then
  rm -rf .venv
  "$(find_python)" -m venv .venv
fi
extras=""
if [ $# -gt 0 ]; then extras="[$(IFS=,; echo "$*")]"; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
