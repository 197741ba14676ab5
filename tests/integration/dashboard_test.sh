#!/usr/bin/env bash
# Runs dashboard_test.py with Debian's python3 (see design.md §8).
# Args: the control-plane, meshctl and sidecar binaries, tests/browser/dashboard_test.js.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$(dirname "$0")/dashboard_test.py" "$@"
