#!/usr/bin/env bash
# Runs control_plane_ca_test.py with Debian's python3 (see design.md §8).
# Args: the control-plane binary, meshctl, xds/ca.proto.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/control_plane_ca_test.py" "$@"
