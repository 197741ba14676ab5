#!/usr/bin/env bash
# Runs the xDS load benchmark through the real control plane: one control-plane process, N
# simulated sidecars (xds_load) registering as workloads, each round a `meshctl apply`.
# Args: CONTROL_PLANE MESHCTL XDS_LOAD [CLIENTS=1000] [ROUNDS=20] [extra xds_load flags...]
# For numbers worth reporting build with -c opt:
#   bazel build -c opt //control-plane:control-plane //control-plane/cli:meshctl \
#       //tests/bench/xds_load
#   tests/bench/xds_load/xds_load_policy.sh bazel-bin/control-plane/control-plane \
#       bazel-bin/control-plane/cli/meshctl bazel-bin/tests/bench/xds_load/xds_load 1000 20
set -euo pipefail
cp_bin="$1"; meshctl="$2"; load="$3"; clients="${4:-1000}"; rounds="${5:-20}"
shift $(( $# < 5 ? $# : 5 ))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT
# Port 0 everywhere: the control plane logs the ports it bound (no port picked and released
# beforehand, which another process could take in between). The log exists before the
# background process opens it, so the first look at it cannot fail.
: > "$work/cp.log"
"$cp_bin" --data-dir "$work/data" --api-address 127.0.0.1:0 --xds-address 127.0.0.1:0 \
  --xds-plaintext --xds-max-concurrent-pushes 200 --log-level info 2> "$work/cp.log" &
pid=$!
api=""; ads=""
for _ in $(seq 200); do
  api="$(sed -n 's/.*API on \([0-9.]*:[0-9]*\).*/\1/p' "$work/cp.log" | head -1)"
  ads="$(sed -n 's/.*ADS on \([0-9.]*:[0-9]*\).*/\1/p' "$work/cp.log" | head -1)"
  [ -n "$api" ] && [ -n "$ads" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/cp.log" >&2; exit 1; }
  sleep 0.05
done
if [ -z "$api" ] || [ -z "$ads" ]; then cat "$work/cp.log" >&2; exit 1; fi
"$load" --server-pid "$pid" --address "$ads" --meshctl "$meshctl" --api "$api" \
  --token-file "$work/data/api-token" --ca-file "$work/data/ca/root-cert.pem" --work-dir "$work" --clients "$clients" --rounds "$rounds" "$@"
