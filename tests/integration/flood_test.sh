#!/usr/bin/env bash
# Runs flood_test.py with Debian's python3 (see design.md §8). Arg: the sidecar binary.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$(dirname "$0")/flood_test.py" "$@"
