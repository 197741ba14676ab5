#!/usr/bin/env bash
# Every binary given links BoringSSL from Debian's android directory and never OpenSSL's
# libssl.so.3 / libcrypto.so.3 (two TLS libraries in one process clash; see docs/adr/0004).
# A binary preceded by --tls-optional may also load no TLS library at all; if it loads one, the
# same rules hold.
# Abseil, protobuf, libuv, nghttp2, RE2 and yaml-cpp are linked in, never loaded as shared
# libraries (docs/adr/0093: some 50 shared objects cost a process about 7 ms of start-up and
# 0.5 MB of relocated pages).
set -euo pipefail
android_dir=/usr/lib/x86_64-linux-gnu/android
[ "$#" -gt 0 ] || { echo "usage: $0 [--tls-optional] BINARY..." >&2; exit 2; }
failed=0
tls_optional=0
for bin in "$@"; do
  if [ "$bin" = "--tls-optional" ]; then
    tls_optional=1
    continue
  fi
  deps=$(ldd "$bin")
  if grep -Eq 'lib(absl_[a-z_0-9]+|protobuf|uv|nghttp2|re2|yaml-cpp)\.so' <<<"$deps"; then
    echo "FAIL: $bin loads a library that should be linked in:"
    grep -E 'lib(absl_[a-z_0-9]+|protobuf|uv|nghttp2|re2|yaml-cpp)\.so' <<<"$deps"; failed=1; continue
  fi
  if grep -Eq 'lib(ssl|crypto)\.so\.3' <<<"$deps"; then
    echo "FAIL: $bin loads OpenSSL:"; grep -E 'lib(ssl|crypto)\.so' <<<"$deps"; failed=1; continue
  fi
  if [ "$tls_optional" -eq 1 ] && ! grep -Eq 'lib(ssl|crypto)\.so' <<<"$deps"; then
    echo "ok: $(basename "$bin") loads no TLS library"
    tls_optional=0
    continue
  fi
  tls_optional=0
  for lib in libssl.so.0 libcrypto.so.0; do
    if ! grep -Eq "^\s*$lib => $android_dir/$lib " <<<"$deps"; then
      echo "FAIL: $bin does not load $lib from $android_dir:"; echo "$deps"; failed=1
    fi
  done
  [ "$failed" -ne 0 ] || echo "ok: $(basename "$bin") uses BoringSSL from $android_dir"
done
exit "$failed"
