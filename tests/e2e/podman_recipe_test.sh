#!/usr/bin/env bash
# Runs podman_recipe_test.py with Debian's python3 (design.md §8) on the binaries in this test's
# runfiles and the recipe of docs/kubernetes.md.
set -euo pipefail
root="${TEST_SRCDIR}/${TEST_WORKSPACE}"
exec /usr/bin/python3 "$(dirname "$0")/podman_recipe_test.py" --bin-dir "$root" \
  --doc "$root/docs/kubernetes.md" "$@"
