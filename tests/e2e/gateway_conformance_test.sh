#!/usr/bin/env bash
# Runs gateway_conformance_test.py with Debian's python3 (python3-grpcio, python3-yaml) on the
# binaries in this test's runfiles; the report goes to $TEST_UNDECLARED_OUTPUTS_DIR.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/gateway_conformance_test.py" \
  --bin-dir "${TEST_SRCDIR}/${TEST_WORKSPACE}" "$@"
