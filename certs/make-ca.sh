#!/usr/bin/env bash
# Creates the mesh's CA material offline with the openssl CLI (see certs/README.md).
#
#   make-ca.sh root         --out DIR [--trust-domain cluster.local] [--days 3650]
#   make-ca.sh intermediate --root DIR --out DIR [--name NAME] [--days 365]
#
# root:          DIR/root-cert.pem, DIR/root-key.pem (mode 0600). Self-signed ECDSA P-256 CA,
#                pathlen 1 (it may sign intermediates, which sign only workload certificates).
# intermediate:  DIR/ca-cert.pem, DIR/ca-key.pem (0600), DIR/ca-chain.pem (intermediate then
#                root) and DIR/root-cert.pem (a copy of the root, for the trust bundle).
#                ECDSA P-256, pathlen 0, signed by the root in --root.
#
# Keep the root key offline; give the control plane only the intermediate's files. Refuses to
# overwrite existing keys.
set -euo pipefail

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

die() {
  echo "make-ca.sh: $*" >&2
  exit 1
}

[[ $# -ge 1 ]] || usage
command -v openssl >/dev/null || die "openssl is not installed"
mode="$1"
shift
out=""
root_dir=""
trust_domain="cluster.local"
name=""
days=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --root) root_dir="$2"; shift 2 ;;
    --trust-domain) trust_domain="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ -n "$out" ]] || die "--out DIR is required"
[[ "$trust_domain" =~ ^[a-z0-9._-]+$ ]] || die "--trust-domain: lowercase letters, digits, '.', '-', '_' only"
[[ -z "$days" || "$days" =~ ^[0-9]+$ ]] || die "--days must be a whole number"

umask 077
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

new_key() {  # $1: output file
  [[ ! -e "$1" ]] || die "$1 exists; refusing to overwrite a key"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

case "$mode" in
  root)
    days="${days:-3650}"
    new_key "$out/root-key.pem"
    cat >"$tmp/root.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_root
[dn]
O = ${trust_domain}
CN = meshlet root CA ${trust_domain}
[v3_root]
basicConstraints = critical, CA:TRUE, pathlen:1
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
    openssl req -new -x509 -sha256 -days "$days" -key "$out/root-key.pem" \
      -config "$tmp/root.cnf" -out "$out/root-cert.pem"
    chmod 644 "$out/root-cert.pem"
    echo "root CA: $out/root-cert.pem (key $out/root-key.pem, valid $days days)"
    ;;
  intermediate)
    days="${days:-365}"
    [[ -n "$root_dir" ]] || die "--root DIR (holding root-cert.pem and root-key.pem) is required"
    [[ -r "$root_dir/root-cert.pem" && -r "$root_dir/root-key.pem" ]] ||
      die "$root_dir must hold root-cert.pem and root-key.pem"
    name="${name:-meshlet intermediate CA}"
    new_key "$out/ca-key.pem"
    openssl req -new -sha256 -key "$out/ca-key.pem" -subj "/O=meshlet/CN=${name}" \
      -out "$tmp/ca.csr"
    cat >"$tmp/ext.cnf" <<CNF
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF
    openssl x509 -req -sha256 -days "$days" -in "$tmp/ca.csr" \
      -CA "$root_dir/root-cert.pem" -CAkey "$root_dir/root-key.pem" -CAcreateserial \
      -CAserial "$tmp/serial" -extfile "$tmp/ext.cnf" -out "$out/ca-cert.pem" 2>/dev/null
    cat "$out/ca-cert.pem" "$root_dir/root-cert.pem" >"$out/ca-chain.pem"
    cp "$root_dir/root-cert.pem" "$out/root-cert.pem"
    chmod 644 "$out/ca-cert.pem" "$out/ca-chain.pem" "$out/root-cert.pem"
    openssl verify -CAfile "$root_dir/root-cert.pem" "$out/ca-cert.pem" >/dev/null ||
      die "the new intermediate does not verify against the root"
    echo "intermediate CA: $out/ca-cert.pem (key $out/ca-key.pem, chain $out/ca-chain.pem, valid $days days)"
    ;;
  *)
    usage
    ;;
esac
