#!/usr/bin/env bash
# What the CA issues, as the openssl CLI sees it: `openssl verify` of the chain against the trust
# bundle, and `openssl x509 -text` for the URI SAN, lifetime, key usage and basic constraints.
# Runs against the generated root and against an operator root + intermediate made by
# certs/make-ca.sh. CSRs come from `openssl req` and ask for names the CA must ignore.
set -euo pipefail

sign_csr="$1"
make_ca="$2"
work="$(mktemp -d "${TEST_TMPDIR:-/tmp}/openssl_test.XXXXXX")"
trap 'rm -rf "$work"' EXIT
id="spiffe://cluster.local/ns/default/sa/frontend"
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# A P-256 CSR asking for a subject and SANs of its own choosing.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/leaf-key.pem" 2>/dev/null
openssl req -new -key "$work/leaf-key.pem" -subj "/CN=admin/O=system:masters" \
  -addext "subjectAltName=DNS:evil.example,URI:spiffe://cluster.local/ns/kube-system/sa/admin" \
  -out "$work/leaf.csr"

# check_issued NAME CHAIN BUNDLE TTL: the assertions every issued certificate must pass.
check_issued() {
  local name="$1" chain="$2" bundle="$3" ttl="$4"
  openssl x509 -in "$chain" -out "$work/$name-leaf.pem"
  # The rest of the chain (intermediates) for -untrusted; may be empty.
  awk 'BEGIN{n=0} /BEGIN CERTIFICATE/{n++} n>1' "$chain" >"$work/$name-rest.pem"
  local untrusted=()
  [[ -s "$work/$name-rest.pem" ]] && untrusted=(-untrusted "$work/$name-rest.pem")

  openssl verify -CAfile "$bundle" "${untrusted[@]}" -purpose sslserver "$work/$name-leaf.pem" \
    >/dev/null || fail "$name: openssl verify (sslserver)"
  openssl verify -CAfile "$bundle" "${untrusted[@]}" -purpose sslclient "$work/$name-leaf.pem" \
    >/dev/null || fail "$name: openssl verify (sslclient)"

  local text
  text="$(openssl x509 -in "$work/$name-leaf.pem" -noout -text)"
  grep -q "URI:${id}\$" <<<"$text" || fail "$name: URI SAN ${id} missing"
  [[ "$(grep -c 'URI:' <<<"$text")" == 1 ]] || fail "$name: more than one URI SAN"
  grep -q "DNS:" <<<"$text" && fail "$name: a DNS SAN from the CSR was copied"
  grep -q "kube-system" <<<"$text" && fail "$name: the CSR's URI SAN was copied"
  grep -q "CN *= *admin\|system:masters" <<<"$text" && fail "$name: the CSR's subject was copied"
  grep -A1 "X509v3 Subject Alternative Name: critical" <<<"$text" >/dev/null ||
    fail "$name: SAN extension not critical (subject is empty)"
  grep -A1 "X509v3 Basic Constraints: critical" <<<"$text" | grep -q "CA:FALSE" ||
    fail "$name: basicConstraints CA:FALSE (critical) missing"
  [[ "$(grep -A1 'X509v3 Key Usage: critical' <<<"$text" | tail -1 | xargs)" == "Digital Signature" ]] ||
    fail "$name: key usage is not exactly digitalSignature"
  grep -A1 "X509v3 Extended Key Usage" <<<"$text" | grep -q "TLS Web Server Authentication, TLS Web Client Authentication" ||
    fail "$name: extended key usage serverAuth + clientAuth missing"
  grep -q "ASN1 OID: prime256v1" <<<"$text" || fail "$name: key is not P-256"

  # Lifetime: ttl from issuance, with notBefore backdated 5 minutes: notAfter - notBefore is
  # exactly ttl + 300 s. Issued a moment ago: how long a moment depends on the machine's load,
  # so only a bound (60 s) is put on it.
  local not_before not_after now
  not_before="$(date -d "$(openssl x509 -in "$work/$name-leaf.pem" -noout -startdate | cut -d= -f2)" +%s)"
  not_after="$(date -d "$(openssl x509 -in "$work/$name-leaf.pem" -noout -enddate | cut -d= -f2)" +%s)"
  now="$(date +%s)"
  (( not_after - not_before == ttl + 300 )) ||
    fail "$name: notBefore to notAfter $((not_after - not_before)) s, expected $ttl s + 300 s"
  (( now - not_before >= 300 && now - not_before <= 360 )) ||
    fail "$name: notBefore $((now - not_before)) s ago, expected 300 s before issuance"
  # Serial: 128 random bits.
  local serial
  serial="$(openssl x509 -in "$work/$name-leaf.pem" -noout -serial | cut -d= -f2)"
  (( ${#serial} >= 30 && ${#serial} <= 34 )) || fail "$name: serial $serial is not ~128 bits"
  # The certificate's key is the CSR's key.
  [[ "$(openssl x509 -in "$work/$name-leaf.pem" -noout -pubkey)" == \
     "$(openssl pkey -in "$work/leaf-key.pem" -pubout)" ]] || fail "$name: public key differs from the CSR's"
  # An unrelated root does not verify it.
  openssl verify -CAfile "$work/other/root-cert.pem" "${untrusted[@]}" "$work/$name-leaf.pem" \
    >/dev/null 2>&1 && fail "$name: verified against an unrelated root"
  return 0
}

"$make_ca" root --out "$work/other" >/dev/null

# 1. The root the CA generates on first start.
"$sign_csr" --ca-dir "$work/generated" --csr "$work/leaf.csr" --spiffe-id "$id" \
  --ttl-seconds 3600 --out-chain "$work/g-chain.pem" --out-bundle "$work/g-bundle.pem" >/dev/null
[[ "$(stat -c %a "$work/generated/root-key.pem")" == 600 ]] || fail "generated root key is not mode 0600"
openssl x509 -in "$work/generated/root-cert.pem" -noout -text | grep -q "CA:TRUE" ||
  fail "generated root is not a CA"
check_issued generated "$work/g-chain.pem" "$work/g-bundle.pem" 3600
[[ "$(grep -c 'BEGIN CERTIFICATE' "$work/g-chain.pem")" == 1 ]] || fail "generated: chain should be the leaf alone"

# 2. An operator root + intermediate from certs/make-ca.sh; default lifetime (24 h).
"$make_ca" root --out "$work/op-root" >/dev/null
"$make_ca" intermediate --root "$work/op-root" --out "$work/op-int" >/dev/null
[[ "$(stat -c %a "$work/op-int/ca-key.pem")" == 600 ]] || fail "make-ca.sh: intermediate key is not mode 0600"
"$sign_csr" --ca-cert "$work/op-int/ca-chain.pem" --ca-key "$work/op-int/ca-key.pem" \
  --csr "$work/leaf.csr" --spiffe-id "$id" --out-chain "$work/i-chain.pem" \
  --out-bundle "$work/i-bundle.pem" >/dev/null
check_issued intermediate "$work/i-chain.pem" "$work/i-bundle.pem" 86400
[[ "$(grep -c 'BEGIN CERTIFICATE' "$work/i-chain.pem")" == 2 ]] || fail "intermediate: chain should be leaf + intermediate"
cmp -s "$work/i-bundle.pem" "$work/op-root/root-cert.pem" || fail "intermediate: bundle is not the operator root"
# Without the intermediate the leaf does not verify.
openssl x509 -in "$work/i-chain.pem" -out "$work/i-leaf-only.pem"
openssl verify -CAfile "$work/i-bundle.pem" "$work/i-leaf-only.pem" >/dev/null 2>&1 &&
  fail "intermediate: leaf verified without its intermediate"

# 3. Root rotation, step 1: old root signs, the bundle carries both roots.
"$sign_csr" --ca-cert "$work/op-int/ca-chain.pem" --ca-key "$work/op-int/ca-key.pem" \
  --ca-roots "$work/other/root-cert.pem" --csr "$work/leaf.csr" --spiffe-id "$id" \
  --out-chain "$work/r-chain.pem" --out-bundle "$work/r-bundle.pem" >/dev/null
[[ "$(grep -c 'BEGIN CERTIFICATE' "$work/r-bundle.pem")" == 2 ]] || fail "rotation: bundle should hold two roots"

# 4. Refusals: an RSA CSR, and a CA that is missing its root.
openssl req -new -newkey rsa:2048 -nodes -keyout "$work/rsa-key.pem" -subj "/CN=x" \
  -out "$work/rsa.csr" 2>/dev/null
if "$sign_csr" --ca-dir "$work/generated" --csr "$work/rsa.csr" --spiffe-id "$id" \
  --out-chain "$work/x" --out-bundle "$work/y" 2>"$work/err"; then
  fail "an RSA CSR was signed"
fi
grep -q "P-256" "$work/err" || fail "RSA refusal does not say why: $(cat "$work/err")"
if "$sign_csr" --ca-cert "$work/op-int/ca-cert.pem" --ca-key "$work/op-int/ca-key.pem" \
  --csr "$work/leaf.csr" --spiffe-id "$id" --out-chain "$work/x" --out-bundle "$work/y" 2>/dev/null; then
  fail "an intermediate without its root was accepted"
fi

if (( failures > 0 )); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "PASS"
