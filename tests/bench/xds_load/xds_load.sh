#!/usr/bin/env bash
# Runs the xDS load benchmark: one xds-file-server, N simulated sidecars (xds_load).
# Args: XDS_FILE_SERVER XDS_LOAD [CLIENTS=1000] [ROUNDS=20] [extra xds_load flags...]
# For numbers worth reporting build with -c opt:
#   bazel build -c opt //control-plane/xds:xds-file-server //tests/bench/xds_load
#   tests/bench/xds_load/xds_load.sh bazel-bin/control-plane/xds/xds-file-server \
#       bazel-bin/tests/bench/xds_load/xds_load 1000 20
set -euo pipefail
server="$1"; load="$2"; clients="${3:-1000}"; rounds="${4:-20}"; shift $(( $# < 4 ? $# : 4 ))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port="$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
status_port="$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
printf 'static_resources: {}\n' > "$work/resources.yaml"
"$server" --resources "$work/resources.yaml" --plaintext --address "127.0.0.1:$port" \
  --status-address "127.0.0.1:$status_port" --max-concurrent-pushes 200 --log-level error &
pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
"$load" --server-pid "$pid" --address "127.0.0.1:$port" --resources "$work/resources.yaml" \
  --clients "$clients" --rounds "$rounds" "$@"
