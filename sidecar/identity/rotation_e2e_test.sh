#!/usr/bin/env bash
# Runs rotation_e2e_test.py with Debian's python3 (see design.md §8).
# Args: the control-plane binary, fetch_certificate.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/rotation_e2e_test.py" "$@"
