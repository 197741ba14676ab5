#!/usr/bin/env bash
# Runs proxy_compare.py in smoke mode (about a second per case, every proxy installed) with
# Debian's python3 (see design.md §8). Args: the sidecar binary.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$(dirname "$0")/proxy_compare.py" --smoke --sidecar "$1"
