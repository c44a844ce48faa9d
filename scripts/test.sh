#!/usr/bin/env bash
# Installs everything the tests need, then runs the linters and the tests.
# Extra arguments go to pytest (e.g. -m clients).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh test
.venv/bin/ruff check trioproxy tests benchmarks
.venv/bin/ruff format --check trioproxy tests benchmarks
.venv/bin/mypy trioproxy tests
exec .venv/bin/pytest "$@"
