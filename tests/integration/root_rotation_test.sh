#!/usr/bin/env bash
# Runs root_rotation_test.py with Debian's python3 (see design.md §8).
# Args: the control-plane binary, the sidecar binary, certs/make-ca.sh.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/root_rotation_test.py" "$@"
