#!/usr/bin/env bash
# Runs xds_test.py with Debian's python3 (design.md §8). Args: xds-file-server, sidecar, control-plane,
# meshctl.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/xds_test.py" "$@"
