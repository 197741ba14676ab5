"""Tracing through the real sidecar: propagation, spans per hop, retries, export (docs/tracing.md).

Usage: tracing_test.py SIDECAR_BINARY [unittest args]

A client sends HTTP/1.1 requests to a sidecar that proxies them to a control_upstream.ControlUpstream
(which records the headers it receives); the sidecar exports spans to a collector stub in this
process that accepts OTLP/HTTP (JSON and protobuf, POST /v1/traces) and Zipkin v2 (POST
/api/v2/spans).

  PropagationTest  the caller's sampled traceparent: a server span (child of the caller's span) and
                   a client span (child of the server span) with their attributes, and the
                   upstream receiving traceparent naming the client span; an unsampled caller gets
                   no spans but its decision travels on; a B3 caller gets coherent B3 and W3C.
  Http2Test        streams of one h2c connection (nghttp) are separate server spans.
  RetryTest        a retried 503 is two client spans (meshlet.retry_attempt 1 and 2), each the
                   parent named by the traceparent of its own upstream request.
  TwoHopPairsTest  an outbound sidecar's CLIENT span and the next hop's inbound SERVER span pair
                   as service-graph tools pair them (OTLP JSON, OTLP protobuf, Zipkin), with
                   server.address, server.port, peer.service and Zipkin's remoteEndpoint.
  ExportTest       Zipkin v2 JSON and OTLP protobuf bodies; a collector that is down makes the
                   sidecar drop and count spans while requests stay fast.
"""

import http.server
import json
import socket
import signal
import sys
import threading
import time
import unittest

import control_upstream
import sidecar_test as base
from sidecar_test import free_port, http_listener, wait_for

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Collector:
    """OTLP/HTTP + Zipkin v2 receiver. `spans` holds normalised dicts:
    trace_id, span_id, parent_id, name, kind ("SERVER"/"CLIENT"), attributes {key: str}."""

    def __init__(self):
        self.spans = []
        self.bodies = []  # (path, content-type, raw bytes)
        self.lock = threading.Lock()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                ctype = self.headers.get("content-type", "")
                with collector.lock:
                    collector.bodies.append((self.path, ctype, body))
                    if self.path == "/v1/traces" and ctype == "application/json":
                        collector.spans.extend(otlp_spans(json.loads(body)))
                    elif self.path == "/v1/traces" and ctype == "application/x-protobuf":
                        collector.spans.extend(otlp_proto_spans(body))
                    elif self.path == "/api/v2/spans":
                        collector.spans.extend(zipkin_spans(json.loads(body)))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self):
        with self.lock:
            return list(self.spans)

    def wait_spans(self, count, timeout=5.0):
        wait_for(lambda: len(self.snapshot()) >= count, timeout)
        return self.snapshot()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def otlp_spans(body):
    out = []
    for rs in body["resourceSpans"]:
        service = {a["key"]: a["value"]["stringValue"] for a in rs["resource"]["attributes"]}
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                attrs = {}
                for a in s.get("attributes", []):
                    v = a["value"]
                    attrs[a["key"]] = v.get("stringValue", v.get("intValue"))
                out.append({"trace_id": s["traceId"], "span_id": s["spanId"],
                            "parent_id": s.get("parentSpanId", ""), "name": s["name"],
                            "kind": {2: "SERVER", 3: "CLIENT"}[s["kind"]], "attributes": attrs,
                            "error": s.get("status", {}).get("code") == 2,
                            "service": service["service.name"],
                            "start": int(s["startTimeUnixNano"]),
                            "end": int(s["endTimeUnixNano"]),
                            "trace_state": s.get("traceState", ""), "flags": s.get("flags", 0)})
    return out


def otlp_proto_spans(body):
    """The spans of an OTLP protobuf body, normalised as otlp_spans does."""
    exported = otlp_proto_request_class()()
    exported.ParseFromString(body)
    out = []
    for rs in exported.resource_spans:
        service = {a.key: a.value.string_value for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                # The subset's AnyValue has no oneof: a string attribute is never empty.
                attrs = {a.key: a.value.string_value or str(a.value.int_value)
                         for a in s.attributes}
                out.append({"trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                            "parent_id": s.parent_span_id.hex(), "name": s.name,
                            "kind": {2: "SERVER", 3: "CLIENT"}[s.kind], "attributes": attrs,
                            "error": s.status.code == 2, "service": service["service.name"],
                            "start": s.start_time_unix_nano, "end": s.end_time_unix_nano,
                            "trace_state": s.trace_state, "flags": s.flags})
    return out


def zipkin_spans(body):
    return [{"trace_id": s["traceId"], "span_id": s["id"], "parent_id": s.get("parentId", ""),
             "name": s["name"], "kind": s["kind"], "attributes": s.get("tags", {}),
             "error": "error" in s.get("tags", {}),
             "service": s["localEndpoint"]["serviceName"],
             "remote_service": s.get("remoteEndpoint", {}).get("serviceName"),
             "start": s["timestamp"] * 1000, "end": (s["timestamp"] + s["duration"]) * 1000}
            for s in body]


def service_graph_edges(spans):
    """The edges a service graph draws from `spans`, paired as the OpenTelemetry Collector's
    servicegraph connector, Grafana Tempo's service graph and Jaeger's SPM pair them: a CLIENT
    span and the SERVER span whose parent it is, in the same trace. (client service, server
    service, client span, server span) per pair; a span of another kind, or one without its
    partner, forms no edge."""
    servers = {(s["trace_id"], s["parent_id"]): s for s in spans if s["kind"] == "SERVER"}
    edges = []
    for client in spans:
        server = servers.get((client["trace_id"], client["span_id"]))
        if client["kind"] == "CLIENT" and server is not None:
            edges.append((client["service"], server["service"], client, server))
    return edges


def otlp_proto_request_class():
    """ExportTraceServiceRequest from the opentelemetry-proto subset meshlet writes, built from a
    descriptor here (field numbers as in opentelemetry/proto/trace/v1/trace.proto), so the test
    decodes what a real OTLP receiver would."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="otlp_subset.proto", package="otlp", syntax="proto3")

    def message(name, fields):
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = ".otlp." + type_name

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("AnyValue", [("string_value", 1, F.TYPE_STRING, opt, None),
                         ("int_value", 3, F.TYPE_INT64, opt, None)])
    message("KeyValue", [("key", 1, F.TYPE_STRING, opt, None),
                         ("value", 2, F.TYPE_MESSAGE, opt, "AnyValue")])
    message("Resource", [("attributes", 1, F.TYPE_MESSAGE, rep, "KeyValue")])
    message("InstrumentationScope", [("name", 1, F.TYPE_STRING, opt, None)])
    message("Status", [("message", 2, F.TYPE_STRING, opt, None),
                       ("code", 3, F.TYPE_INT32, opt, None)])
    message("Span", [("trace_id", 1, F.TYPE_BYTES, opt, None),
                     ("span_id", 2, F.TYPE_BYTES, opt, None),
                     ("trace_state", 3, F.TYPE_STRING, opt, None),
                     ("parent_span_id", 4, F.TYPE_BYTES, opt, None),
                     ("name", 5, F.TYPE_STRING, opt, None),
                     ("kind", 6, F.TYPE_INT32, opt, None),
                     ("start_time_unix_nano", 7, F.TYPE_FIXED64, opt, None),
                     ("end_time_unix_nano", 8, F.TYPE_FIXED64, opt, None),
                     ("attributes", 9, F.TYPE_MESSAGE, rep, "KeyValue"),
                     ("status", 15, F.TYPE_MESSAGE, opt, "Status"),
                     ("flags", 16, F.TYPE_FIXED32, opt, None)])
    message("ScopeSpans", [("scope", 1, F.TYPE_MESSAGE, opt, "InstrumentationScope"),
                           ("spans", 2, F.TYPE_MESSAGE, rep, "Span")])
    message("ResourceSpans", [("resource", 1, F.TYPE_MESSAGE, opt, "Resource"),
                              ("scope_spans", 2, F.TYPE_MESSAGE, rep, "ScopeSpans")])
    message("ExportTraceServiceRequest", [("resource_spans", 1, F.TYPE_MESSAGE, rep,
                                           "ResourceSpans")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.MessageFactory(pool).GetPrototype(
        pool.FindMessageTypeByName("otlp.ExportTraceServiceRequest"))


def cluster(port):
    return (f"  - name: app\n    connect_timeout: 250ms\n"
            f"    outlier_detection: {{consecutive_5xx: 1000, consecutive_gateway_failure: 1000}}\n"
            f"    load_assignment:\n      endpoints:\n      - address: 127.0.0.1:{port}\n")


def routes(route_extra=""):
    text = """  - name: app-routes
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - name: catch-all
        match: {prefix: /}
        route:
          cluster: app
"""
    if route_extra:
        text += "          " + route_extra + "\n"
    return text


def tracing_yaml(collector_port, protocol="OTLP_JSON", extra="", attempt_spans="EVERY_ATTEMPT",
                 service="frontend"):
    """Most tests look at every span a hop can make: a client span for every attempt
    (attempt_spans None: the default)."""
    return (f"tracing:\n  sampling_percent: 100\n  collector_address: 127.0.0.1:{collector_port}\n"
            f"  protocol: {protocol}\n  flush_interval: 0.05s\n  service_name: {service}\n"
            + (f"  attempt_spans: {attempt_spans}\n" if attempt_spans else "") + extra)


def request(port, path="/", headers=None):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def traceparent_parts(value):
    version, trace_id, parent_id, flags = value.split("-")
    return version, trace_id, parent_id, flags


class TracingTestCase(base.SidecarTestCase):
    def setUp(self):
        super().setUp()
        self.collector = Collector()
        self.up = control_upstream.ControlUpstream(name="backend")

    def tearDown(self):
        super().tearDown()
        self.up.close()
        self.collector.close()

    def proxy(self, tracing, route_extra=""):
        port = free_port()
        text = (base.config_yaml(http_listener("out", port), cluster(self.up.port),
                                 routes(route_extra)) + tracing)
        return self.start(text, concurrency=1), port

    def by_kind(self, spans, kind):
        return [s for s in spans if s["kind"] == kind]

    def retried_request(self, attempt_spans):
        """One request whose first attempt is answered 503 and retried: its server span and its
        client spans in attempt order."""
        _, port = self.proxy(tracing_yaml(self.collector.port, attempt_spans=attempt_spans),
                             "retry_policy: {num_retries: 1, base_interval: 0.001s}")
        self.up.control(fail_next=1, status=503)
        self.assertEqual(request(port, "/",
                                 {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})[0], 200)
        spans = self.collector.wait_spans(3)
        self.assertEqual(len(spans), 3, spans)
        server, = self.by_kind(spans, "SERVER")
        clients = sorted(self.by_kind(spans, "CLIENT"),
                         key=lambda s: int(s["attributes"]["meshlet.retry_attempt"]))
        return server, clients


class PropagationTest(TracingTestCase):
    def test_spans_link_to_the_caller_and_the_upstream_sees_the_client_span(self):
        sidecar, port = self.proxy(tracing_yaml(self.collector.port))
        status, _ = request(port, "/items?id=1",
                            {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                             "tracestate": "congo=t61rcWkgMzE"})
        self.assertEqual(status, 200)
        spans = self.collector.wait_spans(2)
        self.assertEqual(len(spans), 2, spans)
        server, = self.by_kind(spans, "SERVER")
        client, = self.by_kind(spans, "CLIENT")
        for s in (server, client):
            self.assertEqual(s["trace_id"], CALLER_TRACE)
            self.assertEqual(s["service"], "frontend")
        self.assertEqual(server["parent_id"], CALLER_SPAN)
        self.assertEqual(client["parent_id"], server["span_id"])
        self.assertNotEqual(client["span_id"], server["span_id"])
        self.assertLessEqual(server["start"], client["start"])
        self.assertGreaterEqual(server["end"], client["end"])
        self.assertEqual(server["name"], "GET /items")
        self.assertEqual(server["attributes"]["http.response.status_code"], "200")
        self.assertEqual(server["attributes"]["meshlet.route"], "catch-all")
        self.assertEqual(server["attributes"]["meshlet.cluster"], "app")
        self.assertEqual(server["attributes"]["meshlet.upstream.address"],
                         f"127.0.0.1:{self.up.port}")
        # The authority the request was for (http.client sends Host: 127.0.0.1:PORT).
        self.assertEqual(server["attributes"]["server.address"], "127.0.0.1")
        self.assertEqual(server["attributes"]["server.port"], str(port))
        self.assertEqual(server["attributes"]["url.path"], "/items")
        self.assertIn("meshlet.request_id", server["attributes"])
        self.assertEqual(client["attributes"]["meshlet.retry_attempt"], "1")
        self.assertEqual(client["attributes"]["meshlet.upstream.address"],
                         f"127.0.0.1:{self.up.port}")
        self.assertEqual(client["attributes"]["server.address"], "127.0.0.1")
        # The attempt's peer: its cluster (a static one, not named by a service).
        self.assertEqual(client["attributes"]["peer.service"], "app")
        self.assertNotIn("peer.service", server["attributes"])
        # The span contexts' tracestate (the caller's, passed on) and flags: sampled, and the
        # server span's parent is remote (the caller's), the client span's local.
        self.assertEqual(server["trace_state"], "congo=t61rcWkgMzE")
        self.assertEqual(client["trace_state"], "congo=t61rcWkgMzE")
        self.assertEqual(server["flags"], 0x301)
        self.assertEqual(client["flags"], 0x101)
        self.assertIn("meshlet.upstream.ready_us", client["attributes"])
        self.assertGreater(int(client["attributes"]["meshlet.bytes_received"]), 0)
        self.assertFalse(server["error"] or client["error"])

        seen = self.up.stats()["last_headers"]
        version, trace_id, parent_id, flags = traceparent_parts(seen["traceparent"])
        self.assertEqual((version, trace_id, parent_id, flags),
                         ("00", CALLER_TRACE, client["span_id"], "01"))
        self.assertEqual(seen["tracestate"], "congo=t61rcWkgMzE")
        self.assertEqual(sidecar.stat("meshlet_tracing_spans_exported_total"), 2)

    def test_new_trace_without_a_caller_context(self):
        sidecar, port = self.proxy(tracing_yaml(self.collector.port))
        self.assertEqual(request(port, "/", {"traceparent": "00-zz-garbage-01",
                                             "tracestate": "a=1"})[0], 200)
        spans = self.collector.wait_spans(2)
        server, = self.by_kind(spans, "SERVER")
        self.assertEqual(server["parent_id"], "")
        self.assertEqual(server["flags"], 0x101)  # a root: no remote parent
        self.assertEqual(server["trace_state"], "")
        self.assertNotEqual(server["trace_id"], "0" * 32)
        seen = self.up.stats()["last_headers"]
        self.assertEqual(traceparent_parts(seen["traceparent"])[1], server["trace_id"])
        self.assertNotIn("tracestate", seen)  # it belonged to a context that was discarded

    def test_unsampled_caller_gets_no_spans_but_its_decision_travels(self):
        sidecar, port = self.proxy(tracing_yaml(self.collector.port))
        for _ in range(5):
            self.assertEqual(
                request(port, "/", {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"})[0], 200)
        _, trace_id, parent_id, flags = traceparent_parts(
            self.up.stats()["last_headers"]["traceparent"])
        self.assertEqual((trace_id, flags), (CALLER_TRACE, "00"))
        self.assertNotEqual(parent_id, CALLER_SPAN)
        time.sleep(0.3)
        self.assertEqual(self.collector.snapshot(), [])
        self.assertEqual(sidecar.stat("meshlet_tracing_spans_sampled_total"), 0)
        self.assertEqual(sidecar.stat("meshlet_tracing_spans_started_total"), 10)

    def test_force_header_samples_at_zero_percent(self):
        tracing = tracing_yaml(self.collector.port).replace("sampling_percent: 100",
                                                            "sampling_percent: 0")
        sidecar, port = self.proxy(tracing)
        self.assertEqual(request(port, "/")[0], 200)
        self.assertEqual(request(port, "/", {"x-meshlet-force-trace": "1"})[0], 200)
        spans = self.collector.wait_spans(2)
        time.sleep(0.2)
        self.assertEqual(len(self.collector.snapshot()), 2)
        flags = traceparent_parts(self.up.stats()["last_headers"]["traceparent"])[3]
        self.assertEqual(flags, "01")

    def test_b3_caller_gets_b3_and_traceparent_for_the_same_span(self):
        sidecar, port = self.proxy(tracing_yaml(self.collector.port))
        status, _ = request(port, "/", {"X-B3-TraceId": "48485a3953bb6124",
                                        "X-B3-SpanId": "a2fb4a1d1a96d312", "X-B3-Sampled": "1"})
        self.assertEqual(status, 200)
        spans = self.collector.wait_spans(2)
        server, = self.by_kind(spans, "SERVER")
        client, = self.by_kind(spans, "CLIENT")
        self.assertEqual(server["trace_id"], "0000000000000000" + "48485a3953bb6124")
        self.assertEqual(server["parent_id"], "a2fb4a1d1a96d312")
        seen = self.up.stats()["last_headers"]
        self.assertEqual(seen["x-b3-traceid"], "48485a3953bb6124")
        self.assertEqual(seen["x-b3-spanid"], client["span_id"])
        self.assertEqual(seen["x-b3-parentspanid"], server["span_id"])
        self.assertEqual(seen["x-b3-sampled"], "1")
        self.assertEqual(traceparent_parts(seen["traceparent"])[2], client["span_id"])


class Http2Test(TracingTestCase):
    def test_streams_on_one_h2c_connection_are_separate_server_spans(self):
        import subprocess
        sidecar, port = self.proxy(tracing_yaml(self.collector.port))
        uris = [f"http://127.0.0.1:{port}/s/{i}" for i in range(3)]
        r = subprocess.run(["nghttp", "-H", f"traceparent: 00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                            *uris], capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        spans = self.collector.wait_spans(6)
        servers = self.by_kind(spans, "SERVER")
        clients = self.by_kind(spans, "CLIENT")
        self.assertEqual(len(servers), 3, spans)
        self.assertEqual(sorted(s["attributes"]["url.path"] for s in servers),
                         ["/s/0", "/s/1", "/s/2"])
        for s in servers:
            self.assertEqual(s["attributes"]["network.protocol.name"], "HTTP/2")
            self.assertEqual(s["parent_id"], CALLER_SPAN)
        self.assertEqual(len({s["span_id"] for s in servers}), 3)
        self.assertEqual(sorted(c["parent_id"] for c in clients),
                         sorted(s["span_id"] for s in servers))
        sent = sorted(traceparent_parts(h["traceparent"])[2]
                      for h in self.up.stats()["headers_log"])
        self.assertEqual(sent, sorted(c["span_id"] for c in clients))


class RetryTest(TracingTestCase):
    def test_each_attempt_is_a_client_span(self):
        server, clients = self.retried_request("EVERY_ATTEMPT")
        self.assertEqual([c["attributes"]["meshlet.retry_attempt"] for c in clients], ["1", "2"])
        self.assertEqual([c["attributes"]["http.response.status_code"] for c in clients],
                         ["503", "200"])
        self.assertEqual([c["error"] for c in clients], [True, False])
        for c in clients:
            self.assertEqual(c["parent_id"], server["span_id"])
            self.assertEqual(c["trace_id"], CALLER_TRACE)
        self.assertNotEqual(clients[0]["span_id"], clients[1]["span_id"])
        # Each upstream request named its own attempt's span.
        sent = [traceparent_parts(h["traceparent"])[2] for h in self.up.stats()["headers_log"]]
        self.assertEqual(sent, [clients[0]["span_id"], clients[1]["span_id"]])


class AttemptSpansRetriedTest(TracingTestCase):
    """The default, attempt_spans: RETRIED: one span per request unless it was retried."""

    def test_a_single_attempt_is_one_span_named_by_the_upstream_request(self):
        sidecar, port = self.proxy(tracing_yaml(self.collector.port, attempt_spans="RETRIED"))
        self.assertEqual(request(port, "/one", {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})[0],
                         200)
        spans = self.collector.wait_spans(1)
        time.sleep(0.2)  # nothing else comes
        span, = self.collector.snapshot()
        # An outbound listener's only span of the request is the call upstream: CLIENT.
        self.assertEqual((span["kind"], span["trace_id"], span["parent_id"]),
                         ("CLIENT", CALLER_TRACE, CALLER_SPAN))
        self.assertEqual(span["name"], "GET /one")
        self.assertEqual(span["attributes"]["peer.service"], "app")
        # The upstream's parent is this span: the attempt's id went to it.
        seen = self.up.stats()["last_headers"]
        self.assertEqual(traceparent_parts(seen["traceparent"])[2], span["span_id"])
        # What the attempt measured is on it.
        self.assertEqual(span["attributes"]["meshlet.upstream.address"],
                         f"127.0.0.1:{self.up.port}")
        self.assertEqual(span["attributes"]["meshlet.cluster"], "app")
        self.assertIn("meshlet.upstream.ready_us", span["attributes"])
        self.assertEqual(sidecar.stat("meshlet_tracing_spans_sampled_total"), 1)
        self.assertEqual(sidecar.stat("meshlet_tracing_spans_exported_total"), 1)

    def test_a_b3_caller_keeps_both_spans(self):
        # B3 tells the upstream the server span's id as its parent: that span keeps its id.
        sidecar, port = self.proxy(tracing_yaml(self.collector.port, attempt_spans="RETRIED"))
        self.assertEqual(request(port, "/", {"b3": f"{CALLER_TRACE}-{CALLER_SPAN}-1"})[0], 200)
        spans = self.collector.wait_spans(2)
        server, = self.by_kind(spans, "SERVER")
        client, = self.by_kind(spans, "CLIENT")
        self.assertEqual(client["parent_id"], server["span_id"])
        seen = self.up.stats()["last_headers"]
        self.assertEqual(seen["b3"].split("-")[3], server["span_id"])

    def test_a_retried_request_shows_every_attempt(self):
        server, clients = self.retried_request("RETRIED")
        self.assertEqual([c["attributes"]["http.response.status_code"] for c in clients],
                         ["503", "200"])
        self.assertEqual([c["parent_id"] for c in clients], [server["span_id"]] * 2)
        self.assertEqual(server["parent_id"], CALLER_SPAN)
        # The first attempt, kept while it was the only one, ended before the second began.
        self.assertLessEqual(clients[0]["end"], clients[1]["start"])
        sent = [traceparent_parts(h["traceparent"])[2] for h in self.up.stats()["headers_log"]]
        self.assertEqual(sent, [clients[0]["span_id"], clients[1]["span_id"]])


class TwoHopPairsTest(TracingTestCase):
    """A call from service client.default to products.default through both sidecars, with
    attempt_spans at its default: the client's outbound sidecar exports a CLIENT span, the
    products' inbound sidecar a SERVER span whose parent it is, and they pair into the edge
    client.default → products.default, with the peer attributes those tools key on, in each
    export format."""

    def two_hops(self, protocol):
        """Sends GET /products?x=1 for products:8080 through both sidecars; returns their spans,
        once both are exported, and the inbound sidecar's port."""
        inbound, outbound = free_port(), free_port()

        def sidecar(listener, cluster_name, port, service):
            routes_text = routes().replace("cluster: app", f'cluster: "{cluster_name}"')
            clusters = cluster(port).replace("name: app", f'name: "{cluster_name}"')
            return self.start(base.config_yaml(listener, clusters, routes_text)
                              + tracing_yaml(self.collector.port, protocol=protocol,
                                             attempt_spans=None, service=service),
                              concurrency=1)

        sidecar(http_listener("inbound", inbound, direction="INBOUND"), "inbound|8080",
                self.up.port, "products.default")
        sidecar(http_listener("outbound", outbound), "outbound|8080||products.default", inbound,
                "client.default")
        status, _ = request(outbound, "/products?x=1", {"host": "products:8080"})
        self.assertEqual(status, 200)
        self.collector.wait_spans(2)
        time.sleep(0.2)  # nothing else comes
        spans = self.collector.snapshot()
        self.assertEqual(len(spans), 2, spans)
        return spans, inbound

    def test_the_outbound_client_span_pairs_with_the_inbound_server_span(self):
        for protocol in ("OTLP_JSON", "OTLP_PROTO", "ZIPKIN"):
            with self.subTest(protocol=protocol):
                with self.collector.lock:
                    self.collector.spans.clear()
                spans, inbound = self.two_hops(protocol)
                edges = service_graph_edges(spans)
                self.assertEqual([(caller, callee) for caller, callee, _, _ in edges],
                                 [("client.default", "products.default")], spans)
                _, _, client, server = edges[0]
                self.assertEqual(client["trace_id"], server["trace_id"])
                self.assertEqual(server["parent_id"], client["span_id"])
                self.assertEqual(client["parent_id"], "")  # the caller sent no context
                # Each sidecar's one span, named by the request; the direction says whose.
                self.assertEqual((client["name"], server["name"]),
                                 ("GET /products", "GET /products"))
                self.assertEqual(client["attributes"]["meshlet.listener.direction"], "outbound")
                self.assertEqual(server["attributes"]["meshlet.listener.direction"], "inbound")
                # The peer: the service called (its sidecar's service.name) and the authority.
                for span in (client, server):
                    self.assertEqual(span["attributes"]["server.address"], "products")
                    self.assertEqual(str(span["attributes"]["server.port"]), "8080")
                self.assertEqual(client["attributes"]["peer.service"], "products.default")
                self.assertNotIn("peer.service", server["attributes"])
                self.assertEqual(client["attributes"]["meshlet.upstream.address"],
                                 f"127.0.0.1:{inbound}")
                self.assertEqual(server["attributes"]["meshlet.upstream.address"],
                                 f"127.0.0.1:{self.up.port}")
                if protocol == "ZIPKIN":
                    self.assertEqual(client["remote_service"], "products.default")
                    self.assertIsNone(server["remote_service"])
                # The app's parent is the inbound span (its single attempt folded into it).
                seen = self.up.stats()["last_headers"]
                self.assertEqual(traceparent_parts(seen["traceparent"])[1:3],
                                 (server["trace_id"], server["span_id"]))
                for sidecar in self.sidecars:
                    sidecar.stop()
                self.sidecars.clear()


class ExportTest(TracingTestCase):
    def test_zipkin_v2(self):
        sidecar, port = self.proxy(tracing_yaml(self.collector.port, protocol="ZIPKIN"))
        self.assertEqual(request(port, "/z")[0], 200)
        spans = self.collector.wait_spans(2)
        server, = self.by_kind(spans, "SERVER")
        client, = self.by_kind(spans, "CLIENT")
        self.assertEqual(client["parent_id"], server["span_id"])
        self.assertEqual(server["attributes"]["http.response.status_code"], "200")
        self.assertEqual(self.collector.bodies[0][0], "/api/v2/spans")

    def test_otlp_protobuf(self):
        sidecar, port = self.proxy(tracing_yaml(self.collector.port, protocol="OTLP_PROTO"))
        self.assertEqual(request(port, "/", {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                                             "tracestate": "rojo=00f067aa0ba902b7,congo=t61"})[0],
                         200)
        self.assertTrue(wait_for(lambda: sidecar.stat("meshlet_tracing_spans_exported_total") == 2))
        path, ctype, body = self.collector.bodies[0]
        self.assertEqual((path, ctype), ("/v1/traces", "application/x-protobuf"))
        exported = otlp_proto_request_class()()
        exported.ParseFromString(body)
        self.assertEqual(exported.ListFields()[0][0].name, "resource_spans")
        resource_spans, = exported.resource_spans
        self.assertEqual(resource_spans.resource.attributes[0].key, "service.name")
        self.assertEqual(resource_spans.resource.attributes[0].value.string_value, "frontend")
        scope_spans, = resource_spans.scope_spans
        self.assertEqual(scope_spans.scope.name, "meshlet")
        spans = {s.kind: s for s in scope_spans.spans}
        server, client = spans[2], spans[3]
        for span in (server, client):
            self.assertEqual(span.trace_id.hex(), CALLER_TRACE)
            self.assertEqual(len(span.span_id), 8)
            self.assertLess(span.start_time_unix_nano, span.end_time_unix_nano)
            self.assertGreater(span.start_time_unix_nano, 1_600_000_000 * 10**9)
        self.assertEqual(server.parent_span_id.hex(), CALLER_SPAN)
        self.assertEqual(client.parent_span_id, server.span_id)
        for span in (server, client):
            self.assertEqual(span.trace_state, "rojo=00f067aa0ba902b7,congo=t61")
        self.assertEqual(server.flags, 0x301)  # sampled, parent remote
        self.assertEqual(client.flags, 0x101)  # sampled, parent local
        self.assertEqual(self.up.stats()["last_headers"]["tracestate"],
                         "rojo=00f067aa0ba902b7,congo=t61")
        attrs = {a.key: a.value for a in client.attributes}
        self.assertEqual(attrs["meshlet.retry_attempt"].int_value, 1)
        self.assertEqual(attrs["http.response.status_code"].int_value, 200)
        self.assertEqual(attrs["meshlet.cluster"].string_value, "app")
        self.assertFalse(server.HasField("status"))

    def test_a_collector_named_by_host_name_is_resolved(self):
        tracing = tracing_yaml(self.collector.port).replace("127.0.0.1:", "localhost:")
        self.assertIn("collector_address: localhost:", tracing)
        sidecar, port = self.proxy(tracing)
        self.assertEqual(request(port, "/named")[0], 200)
        spans = self.collector.wait_spans(2)
        self.assertEqual(len(self.by_kind(spans, "SERVER")), 1)
        self.assertEqual(sidecar.stat("meshlet_tracing_export_errors_total"), 0)

    def test_spans_waiting_for_their_batch_are_sent_when_the_sidecar_stops(self):
        # Neither a full batch nor a flush before the stop: the workers send what they hold as
        # they exit.
        tracing = tracing_yaml(self.collector.port).replace("flush_interval: 0.05s",
                                                            "flush_interval: 60s")
        sidecar, port = self.proxy(tracing)
        for _ in range(3):
            self.assertEqual(request(port, "/last")[0], 200)
        time.sleep(0.2)
        self.assertEqual(self.collector.snapshot(), [])
        sidecar.proc.send_signal(signal.SIGTERM)
        self.assertEqual(sidecar.wait_exit(10), 0)
        spans = self.collector.wait_spans(6)
        self.assertEqual(len(spans), 6)

    def test_workers_send_their_last_spans_at_the_same_time(self):
        # A collector that accepts connections (its listen backlog) and never answers: every
        # worker holding spans waits export_timeout for its last batch as it stops. They wait
        # together, not one after the other.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        self.addCleanup(silent.close)
        tracing = tracing_yaml(silent.getsockname()[1], extra="  export_timeout: 1s\n").replace(
            "flush_interval: 0.05s", "flush_interval: 60s")
        port = free_port()
        text = (base.config_yaml(http_listener("out", port), cluster(self.up.port), routes()) +
                tracing)
        sidecar = self.start(text, concurrency=4, drain_time="0s")
        for _ in range(40):  # a connection each: the kernel spreads them over the workers
            self.assertEqual(request(port, "/")[0], 200)
        busy = [l for l in sidecar.stat_lines("meshlet_worker_cx_accepted_total")
                if not l.endswith(": 0")]
        self.assertGreaterEqual(len(busy), 3, busy)
        start = time.monotonic()
        sidecar.proc.send_signal(signal.SIGTERM)
        self.assertEqual(sidecar.wait_exit(10), 0)
        # Together: about 1 s. One after the other: 1 s per busy worker, at least 3 s.
        self.assertLess(time.monotonic() - start, len(busy) - 0.7)

    def test_collector_down_drops_and_counts_without_slowing_requests(self):
        dead = free_port()  # nothing listens there
        tracing = tracing_yaml(dead, extra="  queue_limit: 8\n  batch_size: 4\n"
                                           "  export_timeout: 0.2s\n")
        sidecar, port = self.proxy(tracing)
        slowest = 0.0
        for _ in range(60):
            start = time.monotonic()
            self.assertEqual(request(port, "/")[0], 200)
            slowest = max(slowest, time.monotonic() - start)
        self.assertLess(slowest, 0.5)
        self.assertTrue(wait_for(
            lambda: sidecar.stat("meshlet_tracing_export_errors_total") > 0, timeout=5))
        dropped = sidecar.stat("meshlet_tracing_spans_dropped_total")
        self.assertGreater(dropped, 0)
        self.assertEqual(sidecar.stat("meshlet_tracing_spans_exported_total"), 0)
        self.assertEqual(sidecar.stat("meshlet_tracing_spans_sampled_total"), 120)


if __name__ == "__main__":
    base.SIDECAR = sys.argv.pop(1)
    unittest.main()
