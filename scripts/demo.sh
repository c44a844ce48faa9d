#!/usr/bin/env bash
# Installs trioproxy and runs its demo: stops in every phase, timed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/trioproxy demo
