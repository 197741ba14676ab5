"""Attacks on the control plane's discovery port (15012), each refused, counted, and harmless to
the mesh around it. Real binaries over loopback; attackers are python3-grpcio clients.

Usage: discovery_attacks_test.py CONTROL_PLANE SIDECAR MESHCTL PROTO_ROOT [unittest args]

The control plane serves the discovery port over TLS with its self-issued certificate (no TLS
flag). Two sidecars get workload certificates with join tokens and their configuration over
that port, authenticated by those certificates: `backend` in front of an HTTP app and `frontend`,
which calls backend through its outbound listener every 20 ms for the whole test. Then:
- a stream without a client certificate, speaking as backend's node: UNAUTHENTICATED;
- an intruder with a workload certificate of its own (join token for service account
  `intruder`) claiming backend's service account, another namespace, or backend's node id with
  its own identity: PERMISSION_DENIED, each counted by reason; with its own identity it gets its
  own node's configuration, and none of backend's inbound;
- once backend's Service lists `serviceAccounts: [backend]`, the intruder cannot register under
  that Service's name either;
- golden-metrics reports without a certificate, or for another workload's node: refused, and
  nothing of them shows in the figures; the intruder's report for its own node is recorded under
  its registered name, not the one it wrote;
- the sidecars export their spans over OTLP/gRPC on that port (--trace-collector=control-plane):
  each span is stored under the exporting sidecar's registration with its certificate's identity
  (meshlet.source.identity). Span exports without a certificate (UNAUTHENTICATED), for another
  workload's node (PERMISSION_DENIED), over the per-identity rate or size (RESOURCE_EXHAUSTED)
  are refused, counted, and none of their spans is stored; the intruder's export for its own node
  claiming backend's service and identity is stored under its own;
- a client certificate from another CA, and an expired one from the mesh CA: the handshake fails;
- a stream opened with a 3-second certificate is ended when it expires;
- through all of it frontend's calls to backend never fail, and both sidecars stay connected with
  every type ACKed.
"""

import concurrent.futures
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import grpc

import cp_api
import sidecar_test
from ca_renewal_test import make_key_and_csr
from mesh_util import (call_service, create_join_token, make_ca, make_workload_cert,
                       start_control_plane, start_xds_sidecar, stop_all)
from sidecar_test import HttpUpstream, wait_for
from xds_util import generate_stubs

CONTROL_PLANE = MESHCTL = PROTO_ROOT = None  # set from argv
CONTROL_PLANE_ID = "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane"
SERVER_NAME = "meshlet-control-plane.meshlet-system.svc"
NAMESPACE = "default"
LISTENERS = "type.googleapis.com/meshlet.xds.Listener"
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# Span limits per identity on the discovery port: the sidecars' own spans (about 100 a second
# between them, each identity half of that) stay inside; the rate is low enough that an export of
# 900 spans takes longer to refill than the control plane takes to handle one, even on a loaded
# machine, so exports sent at once are refused.
SPAN_RATE, SPAN_BURST, SPAN_MAX_BYTES = 150, 1000, 256 * 1024


def otlp_stubs(tmp):
    """The python module of the collector's OTLP messages (control-plane/telemetry)."""
    out = os.path.join(tmp, "otlp")
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(PROTO_ROOT, "control-plane", "telemetry", "otlp_trace.proto"), out)
    r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.",
                        "otlp_trace.proto"], cwd=out, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("grpc_tools.protoc failed: " + r.stderr)
    sys.path.insert(0, out)
    return importlib.import_module("otlp_trace_pb2")
CLUSTERS = "type.googleapis.com/meshlet.xds.Cluster"


class DiscoveryAttacksTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        generate_stubs(PROTO_ROOT, os.path.join(cls.tmp, "stubs"))
        cls.pb = importlib.import_module("xds.discovery_pb2")
        cls.ca_pb = importlib.import_module("xds.ca_pb2")
        cls.metrics_pb = importlib.import_module("xds.metrics_pb2")
        cls.otlp_pb = otlp_stubs(cls.tmp)
        data = os.path.join(cls.tmp, "cp-data")
        cls.cp_log = os.path.join(cls.tmp, "cp.log")
        cls.cp, cls.api, cls.ads = start_control_plane(
            CONTROL_PLANE, cls.cp_log, "--data-dir", data, "--api-address", "127.0.0.1:0",
            "--xds-address", "127.0.0.1:0", "--xds-listen-host", "127.0.0.1",
            "--xds-debounce", "20ms", "--otlp-address=", "--zipkin-address=",
            f"--span-rate-per-identity={SPAN_RATE}", f"--span-burst={SPAN_BURST}",
            f"--span-batch-max-bytes={SPAN_MAX_BYTES}")
        with open(os.path.join(data, "api-token")) as f:
            cls.api_token = f.read().strip()
        cls.bundle = os.path.join(data, "ca", "root-cert.pem")
        with open(cls.bundle, "rb") as f:
            cls.bundle_pem = f.read()
        cls.app = HttpUpstream("backend-app")
        cls.backend_host = f"backend:{cls.app.port}"
        cls.sidecars = []
        cls.failures, cls.calls = [], 0
        cls.stop_traffic = threading.Event()
        cls.traffic = None
        try:
            cls.backend = cls.start_sidecar("backend", app_port=cls.app.port)
            cls.frontend = cls.start_sidecar("frontend")
            if not wait_for(lambda: call_service(cls.frontend.outbound, cls.backend_host)[0] == 200,
                            timeout=20):
                raise AssertionError("frontend never reached backend: " +
                                     str(call_service(cls.frontend.outbound, cls.backend_host)))
            cls.traffic = threading.Thread(target=cls.call_backend_until_stopped)
            cls.traffic.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stop_traffic.set()
        if cls.traffic is not None:
            cls.traffic.join()
        stop_all(cls.sidecars, [cls.app], cls.cp)

    @classmethod
    def start_sidecar(cls, service, app_port=None):
        token = create_join_token(cls.api, cls.api_token, service, "10m", NAMESPACE)
        s = start_xds_sidecar(cls.tmp, cls.ads, f"{service}-0", NAMESPACE,
                              f"--node-service={service}",
                              "--trace-collector=control-plane", "--trace-sampling=100",
                              *([f"--node-port={app_port}"] if app_port else []),
                              join_token=token, service_account=service,
                              xds_trust_bundle=cls.bundle, xds_server_identity=CONTROL_PLANE_ID)
        cls.sidecars.append(s)
        return s

    @classmethod
    def call_backend_until_stopped(cls):
        while not cls.stop_traffic.is_set():
            status, body = call_service(cls.frontend.outbound, cls.backend_host)
            cls.calls += 1
            if status != 200:
                cls.failures.append((status, body[:200]))
            time.sleep(0.02)

    # --- helpers -------------------------------------------------------------------------------

    def metric(self, name):
        """The control plane's value of one series line (`name{labels}`), 0 when absent."""
        req = urllib.request.Request(cp_api.url(self.api, "/metrics"),
                                     headers={"Authorization": "Bearer " + self.api_token})
        with cp_api.urlopen(req, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[-1])
        return 0.0

    def proxies(self):
        req = urllib.request.Request(cp_api.url(self.api, "/api/v1/proxies"),
                                     headers={"Authorization": "Bearer " + self.api_token})
        with cp_api.urlopen(req, timeout=5) as r:
            return {p["id"]: p for p in json.loads(r.read())["items"]}

    def channel(self, client=None):
        """A TLS channel to the discovery port verifying the control plane; `client` = (key PEM,
        chain PEM) to present, or None."""
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.bundle_pem, private_key=client[0] if client else None,
            certificate_chain=client[1] if client else None)
        return grpc.secure_channel(self.ads, credentials,
                                   options=[("grpc.ssl_target_name_override", SERVER_NAME)])

    def workload_certificate(self, service_account, ttl_seconds=600):
        """(key PEM, chain PEM) from the mesh CA, bought with a join token."""
        key, csr = make_key_and_csr(self.tmp, f"{service_account}-{time.time_ns()}")
        token = create_join_token(self.api, self.api_token, service_account, "10m", NAMESPACE)
        with self.channel() as channel:
            call = channel.unary_unary(
                "/meshlet.ca.v1.CertificateService/CreateCertificate",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=self.ca_pb.CreateCertificateResponse.FromString)
            response = call(self.ca_pb.CreateCertificateRequest(
                csr_pem=csr, join_token=token, ttl_seconds=ttl_seconds), timeout=10)
        return key, response.certificate_chain_pem.encode()

    def open_stream(self, channel, node, type_url=CLUSTERS):
        """An ADS stream on `channel` whose first request carries `node`; it stays open (the
        client never half-closes) until the returned event is set."""
        stream = channel.stream_stream(
            "/meshlet.xds.AggregatedDiscoveryService/StreamAggregatedResources",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.pb.DiscoveryResponse.FromString)
        request = self.pb.DiscoveryRequest(type_url=type_url)
        request.node.CopyFrom(node)
        done = threading.Event()

        def requests():
            yield request
            done.wait(20)
        return stream(requests(), timeout=20), done

    def first_response(self, node, client=None, type_url=CLUSTERS):
        """The first DiscoveryResponse a stream with `node` gets, or the RpcError ending it."""
        with self.channel(client) as channel:
            responses, done = self.open_stream(channel, node, type_url)
            try:
                return next(responses)
            except grpc.RpcError as e:
                return e
            finally:
                done.set()

    def node(self, node_id, service, service_account, namespace=NAMESPACE):
        n = self.pb.DiscoveryRequest().node
        n.id, n.service, n.namespace, n.service_account = (node_id, service, namespace,
                                                          service_account)
        n.addresses.append("127.0.0.1")
        return n

    def assert_refused(self, result, code, text):
        self.assertIsInstance(result, grpc.RpcError, f"not refused: {result}")
        self.assertEqual(result.code(), code, result.details())
        self.assertIn(text, result.details())

    def assert_mesh_undisturbed(self):
        proxies = self.proxies()
        for sidecar in (self.backend, self.frontend):
            proxy = proxies.get(sidecar.name)
            self.assertIsNotNone(proxy, f"{sidecar.name} left proxy status: {proxies}")
            self.assertEqual(proxy["identity"], f"spiffe://cluster.local/ns/default/sa/"
                                                f"{sidecar.name.split('-')[0]}")
            states = {url: t["state"] for url, t in proxy["types"].items()}
            self.assertTrue(states and all(s == "ACKED" for s in states.values()), states)
        self.assertEqual(self.failures, [], f"{len(self.failures)} of {self.calls} calls failed")

    # --- attacks -------------------------------------------------------------------------------

    def test_a_stream_without_certificate_is_refused(self):
        before = self.metric('meshlet_cp_xds_stream_refusals_total{reason="no_certificate"}')
        result = self.first_response(self.node("backend-0", "backend", "backend"))
        self.assert_refused(result, grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        self.assertEqual(
            self.metric('meshlet_cp_xds_stream_refusals_total{reason="no_certificate"}'),
            before + 1)
        self.assert_mesh_undisturbed()

    def test_a_certificate_cannot_speak_for_another_workload(self):
        intruder = self.workload_certificate("intruder")
        cases = [
            (self.node("backend-0", "backend", "backend"), "service_account_mismatch",
             'claims service account "backend"'),
            (self.node("backend-x", "backend", "intruder", namespace="prod"),
             "namespace_mismatch", 'claims namespace "prod"'),
            (self.node("backend-0", "backend", "intruder"), "node_id_taken",
             "is registered to another identity"),
        ]
        for node, reason, text in cases:
            with self.subTest(reason=reason):
                series = f'meshlet_cp_xds_stream_refusals_total{{reason="{reason}"}}'
                before = self.metric(series)
                self.assert_refused(self.first_response(node, intruder),
                                    grpc.StatusCode.PERMISSION_DENIED, text)
                self.assertEqual(self.metric(series), before + 1)
        # backend's registration is still backend's.
        self.assertEqual(self.proxies()["backend-0"]["peer"].split(":")[0], "127.0.0.1")
        self.assert_mesh_undisturbed()

    def test_own_identity_gets_only_its_own_configuration(self):
        intruder = self.workload_certificate("intruder")
        result = self.first_response(self.node("intruder-0", "intruder", "intruder"), intruder,
                                     type_url=LISTENERS)
        self.assertNotIsInstance(result, grpc.RpcError, getattr(result, "details", lambda: "")())
        text = str(result)
        # Its own inbound, for its own (empty) set of ports: nothing about backend's app.
        self.assertNotIn(str(self.app.port), text)
        self.assert_mesh_undisturbed()

    def test_service_accounts_of_a_service_bound_its_members(self):
        subprocess.run([MESHCTL, "--server", self.api, "--token", self.api_token, "--ca-file",
                        cp_api.ca_file_for(self.api), "apply", "-f", "-"],
                       check=True, capture_output=True, text=True, input=f"""
apiVersion: meshlet.io/v1
kind: Service
metadata: {{name: backend, namespace: {NAMESPACE}}}
spec:
  ports: [{{name: http, port: {self.app.port}, protocol: HTTP}}]
  serviceAccounts: [backend]
""")
        intruder = self.workload_certificate("intruder")
        self.assert_refused(
            self.first_response(self.node("intruder-1", "backend", "intruder"), intruder),
            grpc.StatusCode.PERMISSION_DENIED, "spec.serviceAccounts does not list intruder")
        self.assertTrue(wait_for(
            lambda: call_service(self.frontend.outbound, self.backend_host)[0] == 200, timeout=5))
        self.assert_mesh_undisturbed()

    def report(self, client, node_id, service):
        """A golden-metrics report of 1000 requests to `forged` as `node_id`/`service`: the
        ReportResponse, or the RpcError refusing it."""
        now = time.time_ns()
        report = self.metrics_pb.MetricsReport(
            node_id=node_id, service=service, namespace=NAMESPACE, instance=7,
            time_unix_nano=now, start_time_unix_nano=now - 10**9)
        cluster = report.clusters.add(cluster="outbound|80||forged.default")
        cluster.success.bucket.append(10)
        cluster.success.count.append(1000)
        cluster.success.sum = 1000
        with self.channel(client) as channel:
            call = channel.unary_unary(
                "/meshlet.metrics.v1.MetricsService/Report",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=self.metrics_pb.ReportResponse.FromString)
            try:
                return call(report, timeout=10)
            except grpc.RpcError as e:
                return e

    def forged_sources(self):
        """The sources of golden-metrics edges to the `forged` destination."""
        req = urllib.request.Request(cp_api.url(self.api, "/api/v1/stat?window=10m"),
                                     headers={"Authorization": "Bearer " + self.api_token})
        with cp_api.urlopen(req, timeout=5) as r:
            items = json.loads(r.read()).get("items", [])
        return {i["source"] for i in items if "forged" in i["destination"]}

    def test_forged_reports_are_refused(self):
        before = {reason: self.metric(
            f'meshlet_cp_metrics_report_refusals_total{{reason="{reason}"}}')
            for reason in ("no_certificate", "unknown_node")}
        self.assert_refused(self.report(None, "backend-0", "backend"),
                            grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        intruder = self.workload_certificate("intruder")
        self.assert_refused(self.report(intruder, "backend-0", "backend"),
                            grpc.StatusCode.PERMISSION_DENIED, "telemetry for its own node only")
        for reason, value in before.items():
            self.assertEqual(self.metric(
                f'meshlet_cp_metrics_report_refusals_total{{reason="{reason}"}}'), value + 1)
        self.assertEqual(self.forged_sources(), set())
        # Its own registered node (the registration outlives the stream for its grace period):
        # recorded, but under the registration's name, not the one the report claims.
        own = self.first_response(self.node("intruder-2", "intruder", "intruder"), intruder)
        self.assertNotIsInstance(own, grpc.RpcError)
        result = self.report(intruder, "intruder-2", "frontend")
        self.assertNotIsInstance(result, grpc.RpcError, getattr(result, "details", lambda: "")())
        self.assertTrue(wait_for(lambda: self.forged_sources(), timeout=5))
        self.assertEqual(self.forged_sources(), {"intruder.default"})
        self.assert_mesh_undisturbed()

    # --- spans ---------------------------------------------------------------------------------

    def export(self, client, node_id, service, spans=1, attributes=None, channel=None,
               timeout=10):
        """An OTLP/gRPC export of `spans` spans of one new trace as `node_id` (the resource's
        service.instance.id) and `service` (its service.name), each with `attributes`: (the trace
        id, the ExportTraceServiceResponse bytes or the RpcError refusing it)."""
        pb = self.otlp_pb
        trace_id = os.urandom(16)
        now = time.time_ns()
        request = pb.ExportTraceServiceRequest()
        resource = request.resource_spans.add()
        for key, value in (("service.name", service), ("service.instance.id", node_id)):
            resource.resource.attributes.add(key=key).value.string_value = value
        scope = resource.scope_spans.add()
        for i in range(spans):
            span = scope.spans.add(trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"),
                                   name="GET /forged", kind=2,
                                   start_time_unix_nano=now - 10**6, end_time_unix_nano=now)
            if i > 0:
                span.parent_span_id = (1).to_bytes(8, "big")
            for key, value in (attributes or {}).items():
                span.attributes.add(key=key).value.string_value = value

        def call(ch):
            try:
                return ch.unary_unary(TRACE_EXPORT, request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=lambda b: b)(request, timeout=timeout)
            except grpc.RpcError as e:
                return e
        if channel is not None:
            return trace_id.hex(), call(channel)
        with self.channel(client) as ch:
            return trace_id.hex(), call(ch)

    def api_get(self, path):
        """(status, parsed JSON) of an API GET."""
        req = urllib.request.Request(cp_api.url(self.api, path),
                                     headers={"Authorization": "Bearer " + self.api_token})
        try:
            with cp_api.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None

    def stored_spans(self, trace_id):
        status, trace = self.api_get(f"/api/v1/traces/{trace_id}")
        return trace["spans"] if status == 200 else []

    def export_refusals(self, reason):
        return self.metric(f'meshlet_cp_trace_export_refusals_total{{reason="{reason}"}}')

    def test_sidecar_spans_carry_the_identity_of_their_certificate(self):
        def sidecar_traces():
            status, found = self.api_get("/api/v1/traces?service=backend.default&limit=5")
            return found["items"] if status == 200 else []
        self.assertTrue(wait_for(sidecar_traces, timeout=10), "no trace of backend stored")
        trace_id = sidecar_traces()[0]["traceId"]
        # Each sidecar exports its own spans on its own schedule: the caller's may come later.
        self.assertTrue(wait_for(lambda: {s["service"] for s in self.stored_spans(trace_id)} == {
            "frontend.default", "backend.default"}, timeout=10), self.stored_spans(trace_id))
        spans = self.stored_spans(trace_id)
        by_service = {s["service"]: s for s in spans}
        for service, span in by_service.items():
            account = service.split(".")[0]
            self.assertEqual(span["attributes"].get("meshlet.source.identity"),
                             f"spiffe://cluster.local/ns/default/sa/{account}", span)
            self.assertEqual(span["attributes"].get("meshlet.source.node"), f"{account}-0", span)
            self.assertNotIn("meshlet.source.unverified", span["attributes"])
        self.assertEqual(sidecar_traces()[0]["unverifiedSpans"], 0)
        self.assertGreater(
            self.metric('meshlet_cp_telemetry_spans_received_total{receiver="otlp_grpc"}'), 0)
        self.assert_mesh_undisturbed()

    def test_forged_span_exports_are_refused(self):
        before = {r: self.export_refusals(r) for r in ("no_certificate", "unknown_node")}
        trace, result = self.export(None, "backend-0", "backend.default")
        self.assert_refused(result, grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        self.assertEqual(self.stored_spans(trace), [])
        intruder = self.workload_certificate("intruder")
        trace, result = self.export(intruder, "backend-0", "backend.default")
        self.assert_refused(result, grpc.StatusCode.PERMISSION_DENIED,
                            "telemetry for its own node only")
        self.assertEqual(self.stored_spans(trace), [])
        for reason, value in before.items():
            self.assertEqual(self.export_refusals(reason), value + 1, reason)
        # Its own registered node, claiming backend's service and certificate: stored under its
        # own registration and identity, the claimed marks dropped.
        own = self.first_response(self.node("intruder-5", "intruder", "intruder"), intruder)
        self.assertNotIsInstance(own, grpc.RpcError)
        trace, result = self.export(
            intruder, "intruder-5", "backend.default", spans=2,
            attributes={"meshlet.source.identity": "spiffe://cluster.local/ns/default/sa/backend",
                        "meshlet.source.node": "backend-0", "http.method": "GET"})
        self.assertNotIsInstance(result, grpc.RpcError, getattr(result, "details", lambda: "")())
        spans = self.stored_spans(trace)
        self.assertEqual(len(spans), 2, spans)
        for span in spans:
            self.assertEqual(span["service"], "intruder.default")
            self.assertEqual(span["attributes"], {
                "http.method": "GET",
                "meshlet.source.identity": "spiffe://cluster.local/ns/default/sa/intruder",
                "meshlet.source.node": "intruder-5"})
        status, found = self.api_get(f"/api/v1/traces?service=backend.default&limit=1000")
        self.assertNotIn(trace, {t["traceId"] for t in found["items"]})
        self.assert_mesh_undisturbed()

    def test_span_exports_over_the_limits_are_refused(self):
        intruder = self.workload_certificate("intruder")
        own = self.first_response(self.node("intruder-6", "intruder", "intruder"), intruder)
        self.assertNotIsInstance(own, grpc.RpcError)
        # More spans at once than an identity's burst.
        before = self.export_refusals("too_large")
        trace, result = self.export(intruder, "intruder-6", "intruder", spans=SPAN_BURST + 1)
        self.assert_refused(result, grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"against a limit of {SPAN_BURST} at once per identity")
        self.assertEqual(self.stored_spans(trace), [])
        # Bigger than the size limit.
        trace, result = self.export(intruder, "intruder-6", "intruder",
                                    attributes={"padding": "x" * SPAN_MAX_BYTES})
        self.assert_refused(result, grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"the limit is {SPAN_MAX_BYTES}")
        self.assertEqual(self.stored_spans(trace), [])
        self.assertEqual(self.export_refusals("too_large"), before + 2)
        # Faster than the rate: four exports of 900 spans sent at once exhaust the burst. The
        # bucket refills SPAN_RATE spans a second while they are handled, so what may pass is the
        # burst plus the refill over the calls' own duration (long on a loaded machine, hence the
        # generous deadline: the calls queue behind each other on the control plane).
        before = self.export_refusals("rate_limited")
        started = time.monotonic()
        with self.channel(intruder) as channel, \
                concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda _: self.export(intruder, "intruder-6", "intruder",
                                                          spans=900, channel=channel, timeout=60),
                                    range(4)))
        elapsed = time.monotonic() - started
        accepted = [trace for trace, result in results if not isinstance(result, grpc.RpcError)]
        refused = [(trace, result) for trace, result in results
                   if isinstance(result, grpc.RpcError)]
        self.assertTrue(refused, "no export was refused in %.2f s" % elapsed)
        self.assertTrue(accepted, "every export was refused")
        self.assertLessEqual(len(accepted) * 900, SPAN_BURST + SPAN_RATE * elapsed,
                             "%d exports of 900 spans taken in %.2f s" % (len(accepted), elapsed))
        for trace, result in refused:
            self.assert_refused(result, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"more than {SPAN_RATE} per second")
            self.assertEqual(self.stored_spans(trace), [])
        self.assertEqual(len(self.stored_spans(accepted[0])), 900)
        self.assertEqual(self.export_refusals("rate_limited"), before + len(refused))
        # Another identity's spans are still taken: backend's keep arriving.
        received = self.metric('meshlet_cp_telemetry_spans_received_total{receiver="otlp_grpc"}')
        self.assertTrue(wait_for(lambda: self.metric(
            'meshlet_cp_telemetry_spans_received_total{receiver="otlp_grpc"}') > received,
            timeout=5))
        self.assert_mesh_undisturbed()

    def test_foreign_and_expired_certificates_fail_the_handshake(self):
        other_ca = make_ca(self.tmp, "other-ca")
        chain, key = make_workload_cert(self.tmp, "foreign", other_ca,
                                        "spiffe://cluster.local/ns/default/sa/backend")
        with open(chain, "rb") as c, open(key, "rb") as k:
            foreign = (k.read(), c.read())
        result = self.first_response(self.node("backend-0", "backend", "backend"), foreign)
        self.assertIsInstance(result, grpc.RpcError)
        self.assertEqual(result.code(), grpc.StatusCode.UNAVAILABLE, result.details())
        short = self.workload_certificate("intruder", ttl_seconds=1)
        time.sleep(2.5)
        result = self.first_response(self.node("intruder-3", "intruder", "intruder"), short)
        self.assertIsInstance(result, grpc.RpcError)
        self.assertEqual(result.code(), grpc.StatusCode.UNAVAILABLE, result.details())
        self.assert_mesh_undisturbed()

    def test_a_stream_ends_when_its_certificate_expires(self):
        short = self.workload_certificate("intruder", ttl_seconds=3)
        started = time.time()
        with self.channel(short) as channel:
            responses, done = self.open_stream(channel,
                                               self.node("intruder-4", "intruder", "intruder"))
            try:
                with self.assertRaises(grpc.RpcError) as caught:
                    for _ in responses:
                        pass
            finally:
                done.set()
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAUTHENTICATED,
                         caught.exception.details())
        self.assertIn("expired", caught.exception.details())
        self.assertLess(time.time() - started, 10)
        self.assertGreaterEqual(self.metric("meshlet_xds_expired_streams_total"), 1)
        self.assert_mesh_undisturbed()


if __name__ == "__main__":
    CONTROL_PLANE, sidecar_test.SIDECAR, MESHCTL, PROTO_ROOT = sys.argv[1:5]
    CONTROL_PLANE, MESHCTL = os.path.abspath(CONTROL_PLANE), os.path.abspath(MESHCTL)
    PROTO_ROOT = os.path.abspath(PROTO_ROOT)
    sidecar_test.SIDECAR = os.path.abspath(sidecar_test.SIDECAR)
    unittest.main(argv=sys.argv[:1] + sys.argv[5:])
