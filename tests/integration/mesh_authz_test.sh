#!/usr/bin/env bash
# Runs mesh_authz_test.py with Debian's python3 (see design.md §8).
# Args: the control-plane binary, meshctl, the sidecar binary.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/mesh_authz_test.py" "$@"
