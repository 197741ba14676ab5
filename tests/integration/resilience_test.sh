#!/usr/bin/env bash
# Runs resilience_test.py with Debian's python3 (see design.md §8).
# Args: the sidecar binary, tests/testdata/echo.proto.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$(dirname "$0")/resilience_test.py" "$@"
