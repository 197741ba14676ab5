#!/usr/bin/env bash
# Runs xds_interop_test.py with Debian's python3, which has python3-grpcio and python3-grpc-tools
# (design.md §8). Args: xds-file-server, control-plane, the directory holding xds/*.proto.
set -euo pipefail
/usr/bin/python3 -c 'import grpc, grpc_tools.protoc, google.protobuf' 2>/dev/null || {
  echo "python3-grpcio, python3-grpc-tools and python3-protobuf are needed: run ./dev deps" >&2
  exit 1
}
exec /usr/bin/python3 "$(dirname "$0")/xds_interop_test.py" "$@"
