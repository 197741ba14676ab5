#!/usr/bin/env bash
# Runs mtls_bench.py in smoke mode (about a second per part; fails if any request or handshake
# fails) with Debian's python3 (see design.md §8). Args: the sidecar binary.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$(dirname "$0")/mtls_bench.py" --smoke --sidecar "$1"
