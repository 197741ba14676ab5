#!/usr/bin/env bash
# Runs registry_crash_test.py with Debian's python3 (see design.md §8).
# Args: the control-plane binary, the sidecar binary.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/registry_crash_test.py" "$@"
