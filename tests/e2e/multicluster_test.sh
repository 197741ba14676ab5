#!/usr/bin/env bash
# Runs multicluster_test.py with Debian's python3 (design.md §8) on the binaries in this test's
# runfiles.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/multicluster_test.py" --bin-dir "${TEST_SRCDIR}/${TEST_WORKSPACE}" "$@"
