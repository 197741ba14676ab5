#!/usr/bin/env bash
# Runs a Python test (the first argument) with Debian's python3, which has python3-grpcio,
# python3-h2 and python3-protobuf; the remaining arguments go to the script. Used by
# meshlet_py_test (bazel/python_test.bzl).
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1
script="$1"
shift
exec /usr/bin/python3 "$script" "$@"
