#!/usr/bin/env bash
# Runs the xDS load benchmark: one xds-file-server, N simulated sidecars (xds_load).
# Args: XDS_FILE_SERVER XDS_LOAD [CLIENTS=1000] [ROUNDS=20] [extra xds_load flags...]
# For numbers worth reporting build with --config=opt:
#   bazel build --config=opt //control-plane/xds:xds-file-server //tests/bench/xds_load
#   tests/bench/xds_load/xds_load.sh bazel-bin/control-plane/xds/xds-file-server \
#       bazel-bin/tests/bench/xds_load/xds_load 1000 20
set -euo pipefail
server="$1"; load="$2"; clients="${3:-1000}"; rounds="${4:-20}"; shift $(( $# < 4 ? $# : 4 ))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT
printf 'static_resources: {}\n' > "$work/resources.yaml"
# Port 0: the server logs what it bound (no port picked and released beforehand). The log exists
# before the background process opens it, so the first look at it cannot fail.
: > "$work/server.log"
"$server" --resources "$work/resources.yaml" --plaintext --address 127.0.0.1:0 \
  --status-address 127.0.0.1:0 --max-concurrent-pushes 200 --log-level info 2> "$work/server.log" &
pid=$!
ads=""
for _ in $(seq 200); do
  ads="$(sed -n 's/.*ADS on \([0-9.]*:[0-9]*\).*/\1/p' "$work/server.log" | head -1)"
  [ -n "$ads" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.05
done
if [ -z "$ads" ]; then cat "$work/server.log" >&2; exit 1; fi
"$load" --server-pid "$pid" --address "$ads" --resources "$work/resources.yaml" \
  --clients "$clients" --rounds "$rounds" "$@"
