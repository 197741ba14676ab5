#!/bin/sh
# Fails when the floor_leaks query (BUILD.bazel) found a guarded library visible to a sidecar
# package that must not use it. Usage: floors_test.sh QUERY_OUTPUT
if [ -s "$1" ]; then
  echo "visible to sidecar packages that must not use them (docs/adr/0039):"
  cat "$1"
  exit 1
fi
echo "no guarded library is visible below its floor"
