"""A hostile pod's attacks on the control plane's discovery port, for //tests/e2e:mesh_test.

Usage: discovery_attacker.py --ads IP:15012 --ca TRUST_BUNDLE --proto-root DIR
           --victim NODE_ID --namespace NS --victim-sa SA --join-token TOKEN --own-sa SA

Run in a pod's network namespace (the mesh test runs it in `outside`'s, a pod without a
sidecar), with Debian's python3-grpcio. It attacks with what any pod has: the network, and a join
token for an identity of its own (as a workload that was given one would have). It prints one JSON
object: for each attack the gRPC status code the control plane answered ("OK" when it took it).
  no_certificate        an ADS stream speaking as the victim's node, without a client certificate
  other_service_account the victim's node and service account, with its own certificate
  taken_node_id         the victim's node id under its own identity
  forged_report         a golden-metrics report for the victim's node, with its own certificate
  anonymous_report      the same without a certificate
  own_stream            an ADS stream for a node of its own identity (expected to be served)
"""

import argparse
import atexit
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc

SERVER_NAME = "meshlet-control-plane.meshlet-system.svc"


def generate_stubs(proto_root, out_dir):
    import grpc_tools
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    # Not gateway.proto: its proto3 `optional` fields are newer than python3-grpc-tools' protoc
    # (3.5), and nothing the tests send imports it.
    protos = sorted(os.path.join("xds", f) for f in os.listdir(os.path.join(proto_root, "xds"))
                    if f.endswith(".proto") and f != "gateway.proto")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"-I{well_known}",
                    f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos],
                   cwd=proto_root, check=True, capture_output=True)
    sys.path.insert(0, out_dir)


def main():
    p = argparse.ArgumentParser()
    for flag in ("--ads", "--ca", "--proto-root", "--victim", "--namespace", "--victim-sa",
                 "--join-token", "--own-sa"):
        p.add_argument(flag, required=True)
    args = p.parse_args()
    tmp = tempfile.mkdtemp()
    # Its generated stubs and private key go with it.
    atexit.register(shutil.rmtree, tmp, True)
    generate_stubs(args.proto_root, tmp)
    discovery = importlib.import_module("xds.discovery_pb2")
    ca = importlib.import_module("xds.ca_pb2")
    metrics = importlib.import_module("xds.metrics_pb2")
    with open(args.ca, "rb") as f:
        roots = f.read()

    def channel(client=None):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=roots, private_key=client[0] if client else None,
            certificate_chain=client[1] if client else None)
        return grpc.secure_channel(args.ads, credentials,
                                   options=[("grpc.ssl_target_name_override", SERVER_NAME)])

    def code_of(call):
        try:
            call()
            return "OK"
        except grpc.RpcError as e:
            return e.code().name

    # Its own certificate, bought with its own join token, as a workload would.
    key_path = os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key_path], check=True, capture_output=True)
    csr = subprocess.run(["openssl", "req", "-new", "-key", key_path, "-subj", "/CN=x"],
                         check=True, capture_output=True, text=True).stdout
    with channel() as c:
        issued = c.unary_unary(
            "/meshlet.ca.v1.CertificateService/CreateCertificate",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=ca.CreateCertificateResponse.FromString)(
                ca.CreateCertificateRequest(csr_pem=csr, join_token=args.join_token), timeout=10)
    with open(key_path, "rb") as f:
        own = (f.read(), issued.certificate_chain_pem.encode())

    def stream(node_id, service_account, client):
        def attempt():
            done = threading.Event()
            request = discovery.DiscoveryRequest(
                type_url="type.googleapis.com/meshlet.xds.Cluster")
            request.node.id = node_id
            request.node.service = "attacker"
            request.node.namespace = args.namespace
            request.node.service_account = service_account

            def requests():
                yield request
                done.wait(15)
            with channel(client) as c:
                responses = c.stream_stream(
                    "/meshlet.xds.AggregatedDiscoveryService/StreamAggregatedResources",
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=discovery.DiscoveryResponse.FromString)(
                        requests(), timeout=15)
                try:
                    next(responses)
                finally:
                    done.set()
        return code_of(attempt)

    def report(client):
        now = time.time_ns()
        r = metrics.MetricsReport(node_id=args.victim, service="forged", namespace=args.namespace,
                                  instance=1, time_unix_nano=now, start_time_unix_nano=now - 10**9)
        cluster = r.clusters.add(cluster="outbound|80||forged." + args.namespace)
        cluster.success.bucket.append(10)
        cluster.success.count.append(100000)

        def send():
            with channel(client) as c:
                c.unary_unary("/meshlet.metrics.v1.MetricsService/Report",
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=metrics.ReportResponse.FromString)(
                                  r, timeout=10)
        return code_of(send)

    results = {
        "no_certificate": stream(args.victim, args.victim_sa, None),
        "other_service_account": stream(args.victim, args.victim_sa, own),
        "taken_node_id": stream(args.victim, args.own_sa, own),
        "forged_report": report(own),
        "anonymous_report": report(None),
        "own_stream": stream("attacker-0." + args.namespace, args.own_sa, own),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
