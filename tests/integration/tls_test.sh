#!/usr/bin/env bash
# Runs tls_test.py with Debian's python3 (see design.md §8). Args: the sidecar binary.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/tls_test.py" "$@"
