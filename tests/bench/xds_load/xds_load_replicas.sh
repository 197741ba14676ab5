#!/usr/bin/env bash
# The xDS load benchmark through several control-plane replicas on etcd: a 3-member etcd cluster
# and REPLICAS control planes on it (all on 127.0.0.1, started here, removed at exit), N simulated
# sidecars (xds_load) spread over the replicas and registering as workloads, each round a
# `meshctl apply` through the first replica. Prints what xds_load_policy.sh does, per replica,
# plus the etcd members' CPU and RSS and etcd's database size.
# Args: CONTROL_PLANE MESHCTL XDS_LOAD [CLIENTS=1000] [ROUNDS=20] [REPLICAS=3]
#       [extra xds_load flags...]
# Needs Debian's etcd-server and etcd-client. For numbers worth reporting build with --config=opt (see
# xds_load_policy.sh).
set -euo pipefail
cp_bin="$1"; meshctl="$2"; load="$3"; clients="${4:-1000}"; rounds="${5:-20}"; replicas="${6:-3}"
shift $(( $# < 6 ? $# : 6 ))
command -v etcd >/dev/null || { echo "SKIP: etcd is not installed (Debian package etcd-server)"; exit 0; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# etcd: three members over TLS with client certificates required, as k8s/etcd runs them; the
# certificates made here (a CA, one member certificate for 127.0.0.1, the replicas' client one).
tls="$work/tls"; mkdir -p "$tls"
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/ca-key.pem" \
  -out "$tls/ca.pem" -subj /CN=etcd-ca -days 1 -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign
leaf() {  # NAME EXTENSIONS
  ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/$1-key.pem" \
    -out "$tls/$1.csr" -subj "/CN=$1"
  printf '%b' "$2" > "$tls/$1.ext"
  ossl x509 -req -in "$tls/$1.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -CAcreateserial \
    -days 1 -extfile "$tls/$1.ext" -out "$tls/$1.pem"
}
leaf member 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n'
leaf client 'extendedKeyUsage=clientAuth\n'
# The key that encrypts the secrets the replicas share through etcd.
(umask 077; head -c 32 /dev/urandom | base64 > "$tls/store-key")
members=(m0 m1 m2)
declare -A client_port peer_port
for m in "${members[@]}"; do client_port[$m]=$(free_port); peer_port[$m]=$(free_port); done
cluster=""
for m in "${members[@]}"; do cluster+="${cluster:+,}$m=https://127.0.0.1:${peer_port[$m]}"; done
etcd_pids=()
for m in "${members[@]}"; do
  etcd --name "$m" --data-dir "$work/etcd-$m" \
    --listen-client-urls "https://127.0.0.1:${client_port[$m]}" \
    --advertise-client-urls "https://127.0.0.1:${client_port[$m]}" \
    --listen-peer-urls "https://127.0.0.1:${peer_port[$m]}" \
    --initial-advertise-peer-urls "https://127.0.0.1:${peer_port[$m]}" \
    --initial-cluster "$cluster" --initial-cluster-state new --log-level warn \
    --cert-file "$tls/member.pem" --key-file "$tls/member-key.pem" \
    --trusted-ca-file "$tls/ca.pem" --client-cert-auth \
    --peer-cert-file "$tls/member.pem" --peer-key-file "$tls/member-key.pem" \
    --peer-trusted-ca-file "$tls/ca.pem" --peer-client-cert-auth \
    > "$work/etcd-$m.log" 2>&1 &
  pids+=($!); etcd_pids+=($!)
done
endpoints=""
for m in "${members[@]}"; do endpoints+="${endpoints:+,}https://127.0.0.1:${client_port[$m]}"; done
etcdctl_tls=(--cacert "$tls/ca.pem" --cert "$tls/client.pem" --key "$tls/client-key.pem")
for _ in $(seq 100); do
  ETCDCTL_API=3 etcdctl --endpoints "$endpoints" "${etcdctl_tls[@]}" endpoint health \
    >/dev/null 2>&1 && break
  sleep 0.1
done

# The replicas, port 0 everywhere (see xds_load_policy.sh).
ads_list=""; cp_pids=""; api=""; token_file=""
for r in $(seq 0 $((replicas - 1))); do
  : > "$work/cp-$r.log"
  "$cp_bin" --data-dir "$work/cp-$r" --store "$endpoints" --replica-name "r$r" \
    --etcd-cacert "$tls/ca.pem" --etcd-cert "$tls/client.pem" --etcd-key "$tls/client-key.pem" \
    --store-encryption-key-file "$tls/store-key" \
    --api-address 127.0.0.1:0 --xds-address 127.0.0.1:0 --xds-plaintext \
    --xds-max-concurrent-pushes 200 --log-level info 2> "$work/cp-$r.log" &
  pid=$!; pids+=($pid)
  a=""; x=""
  for _ in $(seq 200); do
    a="$(sed -n 's/.*API on \([0-9.]*:[0-9]*\).*/\1/p' "$work/cp-$r.log" | head -1)"
    x="$(sed -n 's/.*ADS on \([0-9.]*:[0-9]*\).*/\1/p' "$work/cp-$r.log" | head -1)"
    [ -n "$a" ] && [ -n "$x" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/cp-$r.log" >&2; exit 1; }
    sleep 0.05
  done
  if [ -z "$a" ] || [ -z "$x" ]; then cat "$work/cp-$r.log" >&2; exit 1; fi
  ads_list+="${ads_list:+,}$x"; cp_pids+="${cp_pids:+,}$pid"
  if [ "$r" = 0 ]; then api="$a"; token_file="$work/cp-0/api-token"; fi
done

# The replicas share a CA root kept in etcd: meshctl pins it by the fingerprint replica 0 logged
# and writes it out for the load's meshctl calls.
fingerprint="$(sed -n 's/.*--ca-fingerprint \(sha256:[0-9a-f]*\).*/\1/p' "$work/cp-0.log" | head -1)"
"$meshctl" --context-file "$work/meshctl.yaml" context set --server "$api" \
  --token-file "$token_file" --ca-fingerprint "$fingerprint" > /dev/null
"$meshctl" --context-file "$work/meshctl.yaml" trust-bundle > "$work/ca.pem"

"$load" --server-pid "$cp_pids" --address "$ads_list" \
  --etcd-pids "$(IFS=,; echo "${etcd_pids[*]}")" --meshctl "$meshctl" --api "$api" \
  --token-file "$token_file" --ca-file "$work/ca.pem" --work-dir "$work" --clients "$clients" --rounds "$rounds" "$@"
echo "etcd after the run:"
ETCDCTL_API=3 etcdctl --endpoints "$endpoints" "${etcdctl_tls[@]}" endpoint status -w table
