#!/usr/bin/env bash
# Runs demo_test.py with Debian's python3 (see design.md §8).
# Args: the demo script, the control-plane binary, meshctl, the sidecar binary.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/demo_test.py" "$@"
