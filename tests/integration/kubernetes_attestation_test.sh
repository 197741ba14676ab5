#!/usr/bin/env bash
# Runs kubernetes_attestation_test.py with Debian's python3 (see design.md §8).
# Args: the control-plane binary, the sidecar binary, xds/ca.proto.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/kubernetes_attestation_test.py" "$@"
