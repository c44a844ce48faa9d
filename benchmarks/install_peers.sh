#!/usr/bin/env bash
# Installs what the benchmarks measure besides trioproxy: nginx and wrk from
# Debian's packages, matplotlib, and LiteLLM 1.100.5 in its own venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh test bench
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
venv=build/litellm-venv
if [ ! -x "$venv/bin/litellm" ]; then
  "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'litellm[proxy]==1.100.5'
fi
