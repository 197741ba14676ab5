#!/usr/bin/env bash
# Checks the Prometheus exposition with the real promtool (Debian package `prometheus`, installed
# by `./dev deps`). A missing promtool is a failure, never a skip.
set -euo pipefail

sample="$1"

if ! command -v promtool >/dev/null 2>&1; then
  echo "FAIL: promtool not found on PATH (${PATH}). Install the Debian package 'prometheus'" \
       "(./dev deps) so the exposition can be validated." >&2
  exit 1
fi

tmp="${TEST_TMPDIR:-$(mktemp -d)}"
"${sample}" >"${tmp}/metrics.txt"
if [[ ! -s "${tmp}/metrics.txt" ]]; then
  echo "FAIL: ${sample} printed nothing" >&2
  exit 1
fi

# promtool exits 0 with no output when the text parses and passes every lint.
status=0
problems="$(promtool check metrics <"${tmp}/metrics.txt" 2>&1)" || status=$?
if [[ ${status} -ne 0 || -n "${problems}" ]]; then
  echo "FAIL: promtool check metrics (exit ${status}):" >&2
  echo "${problems}" >&2
  echo "--- exposition ---" >&2
  cat "${tmp}/metrics.txt" >&2
  exit 1
fi

# Make sure this promtool really checks: a counter without _total and a duplicate TYPE must fail.
printf '# HELP meshlet_bad Bad.\n# TYPE meshlet_bad counter\nmeshlet_bad 1\n# TYPE meshlet_bad counter\n' \
  >"${tmp}/bad.txt"
if promtool check metrics <"${tmp}/bad.txt" >/dev/null 2>&1; then
  echo "FAIL: promtool accepted invalid exposition; it cannot be trusted to validate" >&2
  exit 1
fi

echo "PASS: promtool check metrics accepted $(grep -vc '^#' "${tmp}/metrics.txt") samples"
