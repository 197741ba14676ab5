#!/usr/bin/env bash
# Runs the xDS load benchmark through the real control plane: one control-plane process, N
# simulated sidecars (xds_load) registering as workloads, each round a `meshctl apply`.
# Args: CONTROL_PLANE MESHCTL XDS_LOAD [CLIENTS=1000] [ROUNDS=20] [--tls] [extra xds_load flags...]
# --tls: the discovery port as deployed, authenticated (no --xds-plaintext): TLS with the
# certificate the control plane's CA issues to itself, and every stream authenticated by its
# client certificate. The clients verify the control plane against <data-dir>/ca/root-cert.pem
# and its SPIFFE id, and all present one workload certificate, ns default / sa load, signed here
# with openssl by the control plane's generated root key (as its CA issues them: the SPIFFE id
# the only SAN, clientAuth); each keeps its own node id. Without it: plaintext h2c.
# For numbers worth reporting build with --config=opt:
#   bazel build --config=opt //control-plane:control-plane //control-plane/cli:meshctl \
#       //tests/bench/xds_load
#   tests/bench/xds_load/xds_load_policy.sh bazel-bin/control-plane/control-plane \
#       bazel-bin/control-plane/cli/meshctl bazel-bin/tests/bench/xds_load/xds_load 1000 20
set -euo pipefail
cp_bin="$1"; meshctl="$2"; load="$3"; clients="${4:-1000}"; rounds="${5:-20}"
shift $(( $# < 5 ? $# : 5 ))
tls=0
extra=()
for arg in "$@"; do
  if [ "$arg" = --tls ]; then tls=1; else extra+=("$arg"); fi
done
transport=(--xds-plaintext)
[ "$tls" = 1 ] && transport=()
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT
# Port 0 everywhere: the control plane logs the ports it bound (no port picked and released
# beforehand, which another process could take in between). The log exists before the
# background process opens it, so the first look at it cannot fail.
: > "$work/cp.log"
"$cp_bin" --data-dir "$work/data" --api-address 127.0.0.1:0 --xds-address 127.0.0.1:0 \
  "${transport[@]}" --xds-max-concurrent-pushes 200 --log-level info 2> "$work/cp.log" &
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
client_tls=()
if [ "$tls" = 1 ]; then
  ca="$work/data/ca"
  printf '%s\n' "subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/load" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" \
    "basicConstraints=critical,CA:FALSE" > "$work/load.ext"
  { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj / \
      -keyout "$work/load-key.pem" -out "$work/load.csr" &&
    openssl x509 -req -in "$work/load.csr" -CA "$ca/root-cert.pem" -CAkey "$ca/root-key.pem" \
      -set_serial "0x$(openssl rand -hex 16)" -days 1 -extfile "$work/load.ext" \
      -out "$work/load-cert.pem"; } > "$work/openssl.log" 2>&1 ||
    { echo "signing the clients' certificate failed:" >&2; cat "$work/openssl.log" >&2; exit 1; }
  client_tls=(--tls-ca "$ca/root-cert.pem" --tls-cert "$work/load-cert.pem"
    --tls-key "$work/load-key.pem" --service-account load
    --server-identity spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane)
fi
"$load" --server-pid "$pid" --address "$ads" --meshctl "$meshctl" --api "$api" \
  --token-file "$work/data/api-token" --ca-file "$work/data/ca/root-cert.pem" --work-dir "$work" \
  --clients "$clients" --rounds "$rounds" "${client_tls[@]}" "${extra[@]}"
