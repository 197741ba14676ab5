"""The sidecar binary's HTTP features with real clients and servers on both sides.

Usage: sidecar_l7_test.py SIDECAR_BINARY ECHO_PROTO [unittest args]

  GrpcTest      python3-grpcio client -> sidecar (h2c) -> python3-grpcio server: unary, server-,
                client- and bidi-streaming calls, status and trailers intact, a cluster that is
                down answered UNAVAILABLE (trailers-only).
  NghttpTest    nghttp -v: GETs and POSTs with bodies, several streams on one h2c connection.
  HeaderLimitTest  a 100 KB request header: 431 over HTTP/1.1, refused over HTTP/2.
  AuthorityTest invalid Host values and request-targets HTTP does not define: 400 over HTTP/1.1,
                an :authority with userinfo reset over HTTP/2; nothing reaches the upstream,
                while IPv6 literals, absolute-form (curl -x) and OPTIONS * still pass.
  UpgradeTest   WebSocket (RFC 6455, stdlib-only peers) and a raw Upgrade through HTTP/1.1.
  ConnectTest   curl --proxytunnel through CONNECT when allowed, 403 when not.

Stubs for tests/testdata/echo.proto are generated at start-up with
`/usr/bin/python3 -m grpc_tools.protoc` into the test's temporary directory. Run it with
/usr/bin/python3: Debian's grpcio and protobuf belong to that interpreter.
"""

import base64
import hashlib
import http.server
import json
import os
import queue
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import sidecar_test as base
from sidecar_test import config_yaml, free_port, http_listener, static_cluster, wait_for

PYTHON = "/usr/bin/python3"
ECHO_PROTO = None  # set from argv
STUBS = None  # the generated echo_pb2 / echo_pb2_grpc modules, once imported


def app_routes(cluster="app", name="app-routes", domains='["*"]'):
    return f"""  - name: {name}
    virtual_hosts:
    - name: all
      domains: {domains}
      routes:
      - match: {{prefix: /}}
        route: {{cluster: {cluster}}}
"""


def run(*args, timeout=20, **kwargs):
    return subprocess.run(list(args), capture_output=True, timeout=timeout, **kwargs)


class L7TestCase(base.SidecarTestCase):
    pass


# ------------------------------------------------------------------------------------------------
# gRPC


def load_stubs(outdir):
    global STUBS
    if STUBS is not None:
        return STUBS
    proto_dir, proto_name = os.path.split(os.path.abspath(ECHO_PROTO))
    os.makedirs(outdir, exist_ok=True)
    r = run(PYTHON, "-m", "grpc_tools.protoc", "-I", proto_dir, f"--python_out={outdir}",
            f"--grpc_python_out={outdir}", proto_name)
    if r.returncode != 0:
        raise AssertionError("protoc failed: " + r.stderr.decode())
    sys.path.insert(0, outdir)
    import echo_pb2  # pylint: disable=import-outside-toplevel
    import echo_pb2_grpc  # pylint: disable=import-outside-toplevel
    STUBS = (echo_pb2, echo_pb2_grpc)
    return STUBS


# Travels percent-encoded in grpc-message; must come back exactly.
ERROR_MESSAGE = "precondition failed: caf\u00e9 100% sure\nsecond line"


class GrpcEchoServer:
    """A real grpcio server on 127.0.0.1:0 serving meshlet.test.Echo."""

    def __init__(self, grpc, pb2, pb2_grpc):
        from concurrent import futures  # pylint: disable=import-outside-toplevel
        codes = {code.value[0]: code for code in grpc.StatusCode}

        def fail_if_asked(request, context):
            if request.error_code:
                context.set_trailing_metadata((("x-echo-trailer", "failed"),))
                context.abort(codes[request.error_code], request.error_message)

        class Servicer(pb2_grpc.EchoServicer):
            def Unary(self, request, context):
                fail_if_asked(request, context)
                context.set_trailing_metadata((("x-echo-trailer", "unary"),))
                return pb2.EchoReply(text=request.text)

            def ServerStream(self, request, context):
                for i in range(request.count):
                    yield pb2.EchoReply(text=f"{request.text}-{i}", index=i)
                fail_if_asked(request, context)

            def ClientStream(self, request_iterator, context):
                texts = [r.text for r in request_iterator]
                return pb2.EchoReply(text="+".join(texts), index=len(texts))

            def Bidi(self, request_iterator, context):
                for i, request in enumerate(request_iterator):
                    fail_if_asked(request, context)
                    yield pb2.EchoReply(text=request.text.upper(), index=i)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                  options=[("grpc.so_reuseport", 0)])
        pb2_grpc.add_EchoServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self):
        self.server.stop(grace=None)


class GrpcTest(L7TestCase):
    def setUp(self):
        super().setUp()
        import grpc  # pylint: disable=import-outside-toplevel
        self.grpc = grpc
        self.pb2, self.pb2_grpc = load_stubs(os.path.join(self.tmp, "stubs"))
        self.server = GrpcEchoServer(grpc, self.pb2, self.pb2_grpc)
        self.addCleanup(self.server.close)
        self.port, self.down_port = free_port(), free_port()
        self.sidecar = self.start(config_yaml(
            http_listener("grpc", self.port, protocol="PROTOCOL_HTTP2") +
            http_listener("down", self.down_port, protocol="PROTOCOL_HTTP2", route="down-routes"),
            static_cluster("echo", self.server.port, extra="    protocol: UPSTREAM_HTTP2\n") +
            static_cluster("down", free_port(), extra="    protocol: UPSTREAM_HTTP2\n"),
            app_routes("echo") + app_routes("down", name="down-routes")), concurrency=1)

    def outcomes(self, cluster):
        """The golden-metrics outcome counts of `cluster` (meshlet_upstream_rq_duration_seconds)."""
        _, body, _ = self.sidecar.get("/stats/prometheus")
        pattern = (r'^meshlet_upstream_rq_duration_seconds_count\{cluster="%s",outcome="(\w+)"\}'
                   r' (\d+)$' % re.escape(cluster))
        counts = {m.group(1): int(m.group(2)) for m in re.finditer(pattern, body, re.M)}
        return {outcome: n for outcome, n in counts.items() if n}

    def stub(self, port):
        channel = self.grpc.insecure_channel(f"127.0.0.1:{port}",
                                             options=[("grpc.enable_http_proxy", 0)])
        self.addCleanup(channel.close)
        return self.pb2_grpc.EchoStub(channel)

    def test_unary(self):
        stub = self.stub(self.port)
        for text in ("hello", "x" * 300000):  # the second spans many DATA frames each way
            reply, call = stub.Unary.with_call(self.pb2.EchoRequest(text=text), timeout=10)
            self.assertEqual(reply.text, text)
            self.assertEqual(call.code(), self.grpc.StatusCode.OK)
            self.assertIn(("x-echo-trailer", "unary"), call.trailing_metadata())
        self.assertTrue(wait_for(lambda: self.outcomes("echo") == {"success": 2}),
                        self.outcomes("echo"))

    def test_unary_error_status_and_message_arrive_intact(self):
        stub = self.stub(self.port)
        request = self.pb2.EchoRequest(text="x", error_code=9, error_message=ERROR_MESSAGE)
        with self.assertRaises(self.grpc.RpcError) as caught:
            stub.Unary(request, timeout=10)
        self.assertEqual(caught.exception.code(), self.grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(caught.exception.details(), ERROR_MESSAGE)
        self.assertIn(("x-echo-trailer", "failed"), caught.exception.trailing_metadata())
        # A failed call although its HTTP status was 200: the golden metrics count a failure.
        self.assertTrue(wait_for(lambda: self.outcomes("echo") == {"failure": 1}),
                        self.outcomes("echo"))

    def test_server_streaming(self):
        stub = self.stub(self.port)
        replies = list(stub.ServerStream(self.pb2.EchoRequest(text="s", count=50), timeout=10))
        self.assertEqual([(r.text, r.index) for r in replies], [(f"s-{i}", i) for i in range(50)])
        # Messages, then a non-OK status in the trailers.
        call = stub.ServerStream(self.pb2.EchoRequest(text="e", count=3, error_code=8,
                                                      error_message="out of quota"), timeout=10)
        got = []
        with self.assertRaises(self.grpc.RpcError) as caught:
            for reply in call:
                got.append(reply.text)
        self.assertEqual(got, ["e-0", "e-1", "e-2"])
        self.assertEqual(caught.exception.code(), self.grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(caught.exception.details(), "out of quota")

    def test_client_streaming(self):
        stub = self.stub(self.port)
        requests = (self.pb2.EchoRequest(text=str(i)) for i in range(20))
        reply = stub.ClientStream(requests, timeout=10)
        self.assertEqual(reply.text, "+".join(str(i) for i in range(20)))
        self.assertEqual(reply.index, 20)

    def test_bidi_streaming_ping_pong(self):
        stub = self.stub(self.port)
        outgoing = queue.Queue()

        def requests():
            while True:
                item = outgoing.get()
                if item is None:
                    return
                yield item

        call = stub.Bidi(requests(), timeout=10)
        # Each reply arrives before the next request is sent: both directions stream at once.
        for i in range(10):
            outgoing.put(self.pb2.EchoRequest(text=f"ping{i}"))
            reply = next(call)
            self.assertEqual((reply.text, reply.index), (f"PING{i}", i))
        outgoing.put(self.pb2.EchoRequest(text="bad", error_code=3, error_message="bad ping"))
        with self.assertRaises(self.grpc.RpcError) as caught:
            next(call)
        self.assertEqual(caught.exception.code(), self.grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(caught.exception.details(), "bad ping")
        outgoing.put(None)

    def test_cluster_down_is_unavailable_trailers_only(self):
        stub = self.stub(self.down_port)
        with self.assertRaises(self.grpc.RpcError) as caught:
            stub.Unary(self.pb2.EchoRequest(text="x"), timeout=10)
        self.assertEqual(caught.exception.code(), self.grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(caught.exception.details(), "upstream connect error")
        # Trailers-only on the wire: one HEADERS frame carrying the status and END_STREAM.
        r = run("nghttp", "-v", "-H", "content-type: application/grpc", "-H", "te: trailers",
                "-d", os.devnull, f"http://127.0.0.1:{self.down_port}/meshlet.test.Echo/Unary")
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        self.assertIn("grpc-status: 14", out)
        self.assertIn("recv HEADERS frame <length=", out)
        self.assertEqual(out.count("recv HEADERS frame"), 1, out)
        self.assertNotIn("recv DATA frame", out)
        self.assertRegex(out, r"recv HEADERS frame <[^>]*flags=0x05")  # END_STREAM|END_HEADERS

    def test_stats_count_the_calls(self):
        stub = self.stub(self.port)
        for _ in range(3):
            stub.Unary(self.pb2.EchoRequest(text="x"), timeout=10)
        self.assertTrue(wait_for(lambda: self.sidecar.stat("meshlet_http_downstream_rq_total") ==
                                 3))
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rq_reset_total"), 0)


# ------------------------------------------------------------------------------------------------
# nghttp (nghttp2's client)


class EchoHttpUpstream:
    """An HTTP/1.1 server: GET answers with the path, POST echoes the body (length-delimited).
    `heads` records the method, target and Host values of every request answered."""

    def __init__(self):
        heads = self.heads = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def reply(self, body):
                heads.append({"method": self.command, "target": self.path,
                              "host": self.headers.get_all("host") or []})
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.reply(f"GET {self.path}\n".encode())

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                self.reply(f"POST {self.path} {len(body)} ".encode() +
                           hashlib.sha256(body).hexdigest().encode() + b"\n")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class NghttpTest(L7TestCase):
    def setUp(self):
        super().setUp()
        self.app = EchoHttpUpstream()
        self.addCleanup(self.app.close)
        self.port = free_port()
        self.sidecar = self.start(config_yaml(http_listener("h2c", self.port),
                                              static_cluster("app", self.app.port),
                                              app_routes()), concurrency=1)

    def nghttp(self, *args):
        r = run("nghttp", "-v", *args)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        # One connection for all the URIs.
        self.assertEqual(out.count("Connected"), 1, out)
        return out

    def test_gets_on_one_connection(self):
        uris = [f"http://127.0.0.1:{self.port}/item/{i}" for i in range(5)]
        out = self.nghttp(*uris)
        for i in range(5):
            self.assertIn(f"GET /item/{i}\n", out)
        # Five streams, each with its own response (nghttp numbers them after its PRIORITY ones).
        streams = set(re.findall(r"recv HEADERS frame <[^>]*stream_id=(\d+)>", out))
        self.assertEqual(len(streams), 5, out)
        self.assertEqual(out.count(":status: 200"), 5)

    def test_posts_with_a_body_on_one_connection(self):
        body = os.urandom(200000)
        path = os.path.join(self.tmp, "body.bin")
        with open(path, "wb") as f:
            f.write(body)
        digest = hashlib.sha256(body).hexdigest()
        out = self.nghttp("-d", path, f"http://127.0.0.1:{self.port}/upload/a",
                          f"http://127.0.0.1:{self.port}/upload/b")
        self.assertIn(f"POST /upload/a 200000 {digest}\n", out)
        self.assertIn(f"POST /upload/b 200000 {digest}\n", out)
        self.assertEqual(out.count(":status: 200"), 2)
        self.assertTrue(wait_for(
            lambda: self.sidecar.stat("meshlet_http_downstream_rx_bytes_total") == 400000))


# ------------------------------------------------------------------------------------------------
# Request header limits


def hpack_int(value, prefix_bits, flags=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = [flags | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    """A literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    name, value = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def h2_frame(frame_type, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([frame_type, flags]) + struct.pack(
        ">I", stream_id) + payload


class RawH2Client:
    """Just enough HTTP/2 to send header blocks nghttp2's clients refuse to send (they cap what
    they send at 64 KB), and to see the frames that come back without decoding HPACK."""

    DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x7, 0x9
    END_STREAM, END_HEADERS = 0x1, 0x4

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(self.SETTINGS, 0, 0))
        self.buffer = b""
        self.reset = False  # the peer reset the connection

    def request(self, stream_id, path, headers=(), method="GET", authority="x"):
        pseudo = [(":method", method), (":authority", authority)]
        if method != "CONNECT":
            pseudo += [(":scheme", "http"), (":path", path)]
        block = b"".join(hpack_literal(n, v) for n, v in (*pseudo, *headers))
        pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        out = b""
        for i, piece in enumerate(pieces):
            flags = self.END_HEADERS if i == len(pieces) - 1 else 0
            if i == 0:
                out += h2_frame(self.HEADERS, flags | self.END_STREAM, stream_id, piece)
            else:
                out += h2_frame(self.CONTINUATION, flags, stream_id, piece)
        self.sock.sendall(out)

    def read_frame(self):
        while True:
            if len(self.buffer) >= 9:
                length = struct.unpack(">I", b"\x00" + self.buffer[:3])[0]
                if len(self.buffer) >= 9 + length:
                    frame_type, flags = self.buffer[3], self.buffer[4]
                    stream_id = struct.unpack(">I", self.buffer[5:9])[0] & 0x7FFFFFFF
                    payload = self.buffer[9:9 + length]
                    self.buffer = self.buffer[9 + length:]
                    if frame_type == self.SETTINGS and not flags & 0x1:
                        try:
                            self.sock.sendall(h2_frame(self.SETTINGS, 0x1, 0))
                        except OSError:
                            pass  # a reset shows on the next read
                    return frame_type, flags, stream_id, payload
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                self.reset = True
                return None
            if not data:
                return None
            self.buffer += data

    def frames_until(self, done):
        """Frames read until done(frames) is true or the connection ends."""
        frames = []
        while not done(frames):
            frame = self.read_frame()
            if frame is None:
                break
            frames.append(frame)
        return frames

    def close(self):
        self.sock.close()


class EchoAppTestCase(L7TestCase):
    """A PROTOCOL_HTTP listener (HTTP/1.1, or h2c after its preface) routing every request to an
    EchoHttpUpstream."""

    def setUp(self):
        super().setUp()
        self.app = EchoHttpUpstream()
        self.addCleanup(self.app.close)
        self.port = free_port()
        self.sidecar = self.start(config_yaml(http_listener("http", self.port),
                                              static_cluster("app", self.app.port),
                                              app_routes()), concurrency=1)

    def app_requests(self):
        return self.sidecar.stat("meshlet_upstream_rq_total")


class HeaderLimitTest(EchoAppTestCase):
    BIG = "v" * (100 * 1024)

    def test_http1_gets_431(self):
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        request = (f"GET / HTTP/1.1\r\nhost: x\r\nx-big: {self.BIG}\r\n\r\n").encode()
        try:
            conn.sendall(request)
        except OSError:
            pass  # the sidecar may answer and close before reading it all
        response = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                response += data
        except ConnectionResetError:
            pass
        conn.close()
        self.assertTrue(response.startswith(b"HTTP/1.1 431 "), repr(response[:200]))
        self.assertTrue(wait_for(lambda: self.sidecar.stat(
            "meshlet_http_downstream_cx_protocol_error_total") == 1))
        self.assertEqual(self.app_requests(), 0)  # nothing reached the upstream
        # Smaller requests still pass.
        self.assertEqual(base.curl(f"http://127.0.0.1:{self.port}/ok", "-H", "x-small: 1"),
                         "GET /ok\n")

    def test_http2_gets_431_and_the_connection_goes_on(self):
        client = RawH2Client(self.port)
        self.addCleanup(client.close)
        # 100 KB over four fields (HPACK decoders refuse a single field over 64 KB).
        quarter = self.BIG[:25 * 1024]
        client.request(1, "/big", [(f"x-big-{i}", quarter) for i in range(4)])
        frames = client.frames_until(lambda fs: any(
            f[2] == 1 and (f[0] == client.RST_STREAM or f[1] & client.END_STREAM) for f in fs))
        [headers] = [f for f in frames if f[0] == client.HEADERS and f[2] == 1]
        self.assertTrue(headers[1] & client.END_STREAM)
        self.assertIn(b"431", headers[3])  # ":status: 431", a literal too short for Huffman
        self.assertFalse([f for f in frames if f[0] == client.DATA and f[2] == 1])
        self.assertEqual(self.app_requests(), 0)
        # The same connection still serves a normal request.
        client.request(3, "/small")
        frames = client.frames_until(lambda fs: any(
            f[0] == client.DATA and f[2] == 3 and f[1] & client.END_STREAM for f in fs))
        body = b"".join(f[3] for f in frames if f[0] == client.DATA and f[2] == 3)
        self.assertEqual(body, b"GET /small\n")

    def test_http2_single_100kb_field_ends_the_connection(self):
        client = RawH2Client(self.port)
        self.addCleanup(client.close)
        try:
            client.request(1, "/big", [("x-big", self.BIG)])
        except OSError:
            client.reset = True
        frames = client.frames_until(lambda fs: any(f[0] == client.GOAWAY for f in fs))
        # nghttp2's HPACK decoder refuses a single field over 64 KB: a connection error (GOAWAY,
        # or a reset when the rest of the block was still unread), never a forwarded request.
        self.assertTrue(client.reset or any(f[0] == client.GOAWAY for f in frames), frames)
        self.assertFalse([f for f in frames if f[0] in (client.DATA, client.HEADERS)])
        self.assertEqual(self.app_requests(), 0)
        self.assertEqual(base.curl("--http2-prior-knowledge", f"http://127.0.0.1:{self.port}/ok"),
                         "GET /ok\n")


# ------------------------------------------------------------------------------------------------
# Host, :authority and request-target validation (RFC 9112 3.2, RFC 9113 8.3.1)


def http1_exchange(port, request):
    """Sends raw bytes and reads until the sidecar closes; returns (status line, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        response = read_to_eof(conn)
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode("latin-1"), body.decode("latin-1")


class AuthorityTest(EchoAppTestCase):
    def assert_nothing_forwarded(self):
        self.assertEqual(self.app.heads, [])
        self.assertEqual(self.app_requests(), 0)

    def test_http1_invalid_host_gets_400(self):
        refused = [
            b"Host: a.example, b.example",  # a list
            b"Host: a.example,b.example",
            b"Host: a b",  # a space
            b"Host: a.example/admin",  # a path
            b"Host: user:pw@a.example:8080",  # userinfo
            b"Host: a.example:http",  # a port that is not a number
            b"Host: a.example:65536",
            b"Host: ::1",  # IPv6 without brackets
        ]
        for i, host in enumerate(refused):
            with self.subTest(host=host):
                status, body = http1_exchange(
                    self.port, b"GET /x HTTP/1.1\r\n" + host + b"\r\nconnection: close\r\n\r\n")
                self.assertEqual(status, "HTTP/1.1 400 Bad Request")
                self.assertEqual(body, "invalid Host header\n")
                self.assertTrue(wait_for(lambda: self.sidecar.stat(
                    "meshlet_http_downstream_cx_protocol_error_total") == i + 1))
        # More than one Host is refused too (RFC 9112 3.2), with its own reason.
        status, body = http1_exchange(
            self.port, b"GET /x HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n"
            b"connection: close\r\n\r\n")
        self.assertEqual(status, "HTTP/1.1 400 Bad Request")
        self.assertEqual(body, "more than one Host header\n")
        self.assert_nothing_forwarded()

    def test_http1_target_forms_http_does_not_define_get_400(self):
        refused = [
            b"GET a.example:80 HTTP/1.1",  # authority-form is for CONNECT only
            b"GET http:/admin HTTP/1.1",  # an http URI without a host (RFC 9110 4.2.1)
            b"GET http:///admin HTTP/1.1",
            b"GET http://user:pw@a.example/admin HTTP/1.1",  # userinfo
            b"GET ftp://a.example/admin HTTP/1.1",  # not http or https
            b"GET urn:example:admin HTTP/1.1",
            b"GET * HTTP/1.1",  # asterisk-form is for OPTIONS only
        ]
        for i, line in enumerate(refused):
            with self.subTest(line=line):
                status, body = http1_exchange(
                    self.port, line + b"\r\nHost: a.example\r\nconnection: close\r\n\r\n")
                self.assertEqual(status, "HTTP/1.1 400 Bad Request")
                self.assertEqual(body, "invalid request-target\n")
                self.assertTrue(wait_for(lambda: self.sidecar.stat(
                    "meshlet_http_downstream_cx_protocol_error_total") == i + 1))
        self.assert_nothing_forwarded()

    def test_http1_valid_authorities_and_targets_pass(self):
        url = f"http://127.0.0.1:{self.port}"
        for host in ["[::1]:8080", "10.0.0.1:65535", "caf%C3%A9.example", "a.example:"]:
            with self.subTest(host=host):
                self.assertEqual(base.curl(url + "/h", "-H", f"Host: {host}"), "GET /h\n")
                self.assertEqual(self.app.heads[-1],
                                 {"method": "GET", "target": "/h", "host": [host]})
        # curl as an HTTP proxy client sends absolute-form; the target's authority replaces Host
        # (RFC 9112 3.2.2) and the upstream gets origin-form.
        self.assertEqual(base.curl("-x", url, "http://a.example:8080/p?q=1",
                                   "-H", "Host: other.example"), "GET /p?q=1\n")
        self.assertEqual(self.app.heads[-1],
                         {"method": "GET", "target": "/p?q=1", "host": ["a.example:8080"]})
        self.assertEqual(http1_exchange(
            self.port, b"GET HTTPS://[::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n"
            b"connection: close\r\n\r\n"), ("HTTP/1.1 200 OK", "GET /\n"))
        self.assertEqual(self.app.heads[-1],
                         {"method": "GET", "target": "/", "host": ["[::1]:8443"]})
        # An empty Host is what a client sends for a target without an authority (RFC 9112 3.2).
        self.assertEqual(http1_exchange(
            self.port, b"GET /e HTTP/1.1\r\nHost:\r\nconnection: close\r\n\r\n"),
            ("HTTP/1.1 200 OK", "GET /e\n"))
        self.assertEqual(self.app.heads[-1], {"method": "GET", "target": "/e", "host": [""]})
        # OPTIONS * is a valid request: routed as "/", it reaches the app in asterisk-form (which
        # this app does not implement).
        # (conformance_test shows the asterisk-form on the wire.)
        status, body = http1_exchange(
            self.port, b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\nconnection: close\r\n\r\n")
        self.assertEqual(status, "HTTP/1.1 501 Not Implemented")
        self.assertIn("Unsupported method ('OPTIONS')", body)
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_cx_protocol_error_total"), 0)

    def test_http2_authority_with_userinfo_is_reset(self):
        client = RawH2Client(self.port)
        self.addCleanup(client.close)
        refused = {1: ("user:pw@a.example:8080", ()),
                   3: ("a.example", [("host", "user@a.example")])}
        for stream_id, (authority, headers) in refused.items():
            client.request(stream_id, "/x", headers, authority=authority)
            frames = client.frames_until(lambda fs: any(
                f[2] == stream_id and (f[0] == client.RST_STREAM or f[1] & client.END_STREAM)
                for f in fs))
            resets = [f for f in frames if f[0] == client.RST_STREAM and f[2] == stream_id]
            self.assertEqual(len(resets), 1, frames)
            self.assertEqual(struct.unpack(">I", resets[0][3])[0], 0x1)  # PROTOCOL_ERROR
            self.assertFalse([f for f in frames if f[0] == client.HEADERS and f[2] == stream_id])
        self.assert_nothing_forwarded()
        # The connection goes on: a valid authority reaches the upstream as its Host.
        client.request(5, "/ok", authority="[::1]:8080")
        frames = client.frames_until(lambda fs: any(
            f[0] == client.DATA and f[2] == 5 and f[1] & client.END_STREAM for f in fs))
        body = b"".join(f[3] for f in frames if f[0] == client.DATA and f[2] == 5)
        self.assertEqual(body, b"GET /ok\n")
        self.assertEqual(self.app.heads,
                         [{"method": "GET", "target": "/ok", "host": ["[::1]:8080"]}])


# ------------------------------------------------------------------------------------------------
# Upgrade (WebSocket) and CONNECT

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_frame(opcode, payload, mask):
    """One final frame (RFC 6455 5.2); clients mask, servers do not."""
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if mask else 0
    if len(payload) < 126:
        head += bytes([mask_bit | len(payload)])
    elif len(payload) < 65536:
        head += bytes([mask_bit | 126]) + struct.pack(">H", len(payload))
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", len(payload))
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def ws_read_frame(sock):
    """Returns (opcode, payload), unmasking if needed."""
    b0, b1 = recv_exact(sock, 2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack(">H", recv_exact(sock, 2))[0]
    elif length == 127:
        length = struct.unpack(">Q", recv_exact(sock, 8))[0]
    key = recv_exact(sock, 4) if b1 & 0x80 else None
    payload = recv_exact(sock, length)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload


def read_head(sock):
    """Reads an HTTP/1.1 head byte by byte (what follows it stays in the socket)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise EOFError("connection closed in the head: " + repr(head))
        head += byte
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


def read_to_eof(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


class UpgradeServer:
    """A stdlib-only upgrade server on 127.0.0.1:0.

    `Upgrade: websocket` gets the RFC 6455 handshake, then echoes text and binary messages,
    answers pings, sends N extra messages for "push N", and completes the close handshake.
    `Upgrade: raw-echo` gets a 101, then echoes bytes until the client finishes sending.
    A request for /refuse gets an ordinary 403; any other request gets 426.
    Records every request head it saw.
    """

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            request_line, fields = read_head(conn)
            self.heads.append((request_line, fields))
            path = request_line.split(" ")[1]
            upgrade = fields.get("upgrade", "").lower()
            if path == "/refuse":
                # One request per connection: say so, or a pool would send the next one here.
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 8\r\n"
                             b"connection: close\r\n\r\nrefused\n")
            elif upgrade == "websocket" and "upgrade" in fields.get("connection", "").lower():
                accept = ws_accept(fields["sec-websocket-key"])
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                              f"connection: Upgrade\r\nsec-websocket-accept: {accept}\r\n"
                              "\r\n").encode())
                self._websocket(conn)
            elif upgrade == "raw-echo":
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: raw-echo\r\n"
                             b"connection: upgrade\r\n\r\n")
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            else:
                conn.sendall(b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")
            read_to_eof(conn)
        except (OSError, EOFError):
            pass
        finally:
            conn.close()

    @staticmethod
    def _websocket(conn):
        while True:
            opcode, payload = ws_read_frame(conn)
            if opcode in (OP_TEXT, OP_BINARY):
                conn.sendall(ws_frame(opcode, payload, mask=False))
                if opcode == OP_TEXT and payload.startswith(b"push "):
                    for i in range(int(payload[5:])):
                        conn.sendall(ws_frame(OP_TEXT, f"pushed {i}".encode(), mask=False))
            elif opcode == OP_PING:
                conn.sendall(ws_frame(OP_PONG, payload, mask=False))
            elif opcode == OP_CLOSE:
                conn.sendall(ws_frame(OP_CLOSE, payload, mask=False))
                conn.shutdown(socket.SHUT_WR)
                return


class WebSocketClient:
    def __init__(self, port, path="/chat", protocol="websocket"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nhost: ws.example\r\nupgrade: {protocol}\r\n"
                           "connection: keep-alive, Upgrade\r\nsec-websocket-version: 13\r\n"
                           f"sec-websocket-key: {self.key}\r\n\r\n").encode())
        self.status_line, self.fields = read_head(self.sock)
        self.sent = 0  # bytes sent after the handshake

    def send(self, opcode, payload):
        frame = ws_frame(opcode, payload, mask=True)
        self.sent += len(frame)
        self.sock.sendall(frame)

    def read(self):
        return ws_read_frame(self.sock)

    def close(self):
        self.sock.close()


class UpgradeTest(L7TestCase):
    def setUp(self):
        super().setUp()
        self.app = UpgradeServer()
        self.addCleanup(self.app.close)
        self.port = free_port()
        listener = http_listener("http", self.port) + "    http: {stream_idle_timeout: 1s}\n"
        routes = app_routes("ws").replace("route: {cluster: ws}",
                                          "route: {cluster: ws, timeout: 0.5s}")
        self.sidecar = self.start(config_yaml(listener, static_cluster("ws", self.app.port),
                                              routes), concurrency=1)

    def test_websocket_echo_both_ways_then_close(self):
        client = WebSocketClient(self.port)
        self.addCleanup(client.close)
        self.assertEqual(client.status_line, "HTTP/1.1 101 Switching Protocols")
        self.assertEqual(client.fields["upgrade"].lower(), "websocket")
        self.assertIn("upgrade", client.fields["connection"].lower())
        self.assertEqual(client.fields["sec-websocket-accept"], ws_accept(client.key))
        # The upstream saw an Upgrade request with the WebSocket headers intact.
        [(request_line, fields)] = self.app.heads
        self.assertEqual(request_line, "GET /chat HTTP/1.1")
        self.assertEqual(fields["upgrade"], "websocket")
        self.assertEqual(fields["connection"].lower(), "upgrade")
        self.assertEqual(fields["sec-websocket-key"], client.key)
        self.assertEqual(fields["sec-websocket-version"], "13")
        self.assertTrue(wait_for(
            lambda: self.sidecar.stat("meshlet_http_downstream_tunnels_active") == 1))
        # Several messages each way, with 7-, 16- and 64-bit lengths, spread past the route
        # timeout (0.5 s), which no longer applies once the tunnel is open.
        messages = [(OP_TEXT, b"hello"), (OP_BINARY, os.urandom(300)),
                    (OP_BINARY, os.urandom(100000)), (OP_TEXT, "caf\u00e9".encode())]
        for opcode, payload in messages:
            client.send(opcode, payload)
            self.assertEqual(client.read(), (opcode, payload))
            time.sleep(0.2)
        client.send(OP_PING, b"are you there")
        self.assertEqual(client.read(), (OP_PONG, b"are you there"))
        client.send(OP_TEXT, b"push 3")  # the server sends more than it was sent
        self.assertEqual(client.read(), (OP_TEXT, b"push 3"))
        for i in range(3):
            self.assertEqual(client.read(), (OP_TEXT, f"pushed {i}".encode()))
        client.send(OP_CLOSE, struct.pack(">H", 1000))
        self.assertEqual(client.read(), (OP_CLOSE, struct.pack(">H", 1000)))
        self.assertEqual(read_to_eof(client.sock), b"")  # the server's close reaches the client
        self.assertTrue(wait_for(
            lambda: self.sidecar.stat("meshlet_http_downstream_tunnels_active") == 0))
        lines = self.sidecar.stat_lines("meshlet_http_downstream_tunnels_total")
        self.assertIn('meshlet_http_downstream_tunnels_total{kind="upgrade"}: 1', lines)
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rx_bytes_total"), client.sent)
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rq_total"), 1)
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rq_reset_total"), 0,
                         self.sidecar.get("/stats?filter=reset")[1] +
                         self.sidecar.get("/stats?filter=flags")[1])

    def test_raw_upgrade_client_half_close_ends_the_tunnel(self):
        client = WebSocketClient(self.port, path="/raw", protocol="raw-echo")
        self.addCleanup(client.close)
        self.assertEqual(client.status_line, "HTTP/1.1 101 Switching Protocols")
        self.assertEqual(client.fields["upgrade"], "raw-echo")
        payload = os.urandom(300000)
        received = bytearray()

        def read_all():
            while True:
                chunk = client.sock.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)

        reader = threading.Thread(target=read_all)
        reader.start()
        client.sock.sendall(payload[:1000])
        self.assertTrue(wait_for(lambda: len(received) == 1000))
        client.sock.sendall(payload[1000:])
        self.assertTrue(wait_for(lambda: len(received) == len(payload)),
                        f"{len(received)} of {len(payload)}: " + self.sidecar.log())
        # Finishing our side ends the tunnel: the connection closes (HTTP/1 has no half-open
        # tunnel towards the client).
        client.sock.shutdown(socket.SHUT_WR)
        reader.join(timeout=5)
        self.assertFalse(reader.is_alive())
        self.assertEqual(bytes(received), payload)
        self.assertTrue(wait_for(
            lambda: self.sidecar.stat("meshlet_http_downstream_tunnels_active") == 0))
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rx_bytes_total"), len(payload))
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_tx_bytes_total"), len(payload))
        # A normal end, not a reset on either side.
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rq_reset_total"), 0)
        self.assertEqual(self.sidecar.stat("meshlet_upstream_rq_reset_total"), 0)
        self.assertEqual(self.sidecar.stat("meshlet_http_response_flags_total"), 0)

    def test_idle_tunnel_is_closed_by_the_stream_idle_timeout(self):
        client = WebSocketClient(self.port)
        self.addCleanup(client.close)
        self.assertEqual(client.status_line, "HTTP/1.1 101 Switching Protocols")
        start = time.time()
        self.assertEqual(read_to_eof(client.sock), b"")
        self.assertGreater(time.time() - start, 0.8)
        self.assertTrue(wait_for(lambda: 'meshlet_http_response_flags_total{flag="SI"}: 1' in
                                 self.sidecar.stat_lines("meshlet_http_response_flags_total")))

    def test_non_101_answers_are_ordinary_responses(self):
        for path, protocol, status in (("/refuse", "websocket", "403"),
                                       ("/other", "unknown", "426")):
            client = WebSocketClient(self.port, path=path, protocol=protocol)
            self.addCleanup(client.close)
            self.assertEqual(client.status_line.split(" ")[:2], ["HTTP/1.1", status])
            if status == "403":
                self.assertEqual(recv_exact(client.sock, 8), b"refused\n")
            self.assertEqual(read_to_eof(client.sock), b"")  # a refused upgrade ends the connection
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_tunnels_total"), 0)

    def test_plain_requests_lose_their_hop_by_hop_upgrade(self):
        # HTTP/1.0 never upgrades: the Upgrade header is dropped like any hop-by-hop header.
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        conn.sendall(b"GET /plain HTTP/1.0\r\nhost: x\r\nupgrade: websocket\r\n"
                     b"connection: upgrade\r\n\r\n")
        status_line, _ = read_head(conn)
        conn.close()
        self.assertEqual(status_line.split(" ")[:2], ["HTTP/1.1", "426"])
        [(_, fields)] = self.app.heads
        self.assertNotIn("upgrade", fields)


class ConnectTest(L7TestCase):
    def setUp(self):
        super().setUp()
        self.app = EchoHttpUpstream()
        self.addCleanup(self.app.close)
        self.allowed, self.refused = free_port(), free_port()
        routes = app_routes(domains='["app.internal:8080"]') + """    - name: echo
      domains: ["echo.internal:7"]
      routes:
      - match: {prefix: /}
        route: {cluster: echo}
"""
        self.sidecar = self.start(config_yaml(
            http_listener("allowed", self.allowed) + "    http: {allow_connect: true}\n" +
            http_listener("refused", self.refused),
            static_cluster("app", self.app.port) + static_cluster("echo", self.echo.port),
            routes), concurrency=1)

    def curl_via(self, port, url, *args):
        return run("curl", "-sS", "-v", "--max-time", "10", "-p", "-x", f"http://127.0.0.1:{port}",
                   *args, url)

    def test_curl_proxytunnel_when_allowed(self):
        r = self.curl_via(self.allowed, "http://app.internal:8080/hello")
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(r.stdout, b"GET /hello\n")
        self.assertIn("CONNECT app.internal:8080 HTTP/1.1", r.stderr.decode())
        self.assertIn("HTTP/1.1 200", r.stderr.decode())
        # A body up through the tunnel and its digest back.
        body = os.urandom(500000)
        path = os.path.join(self.tmp, "upload.bin")
        with open(path, "wb") as f:
            f.write(body)
        r = self.curl_via(self.allowed, "http://app.internal:8080/up", "--data-binary", "@" + path)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(r.stdout.decode(),
                         f"POST /up 500000 {hashlib.sha256(body).hexdigest()}\n")
        lines = self.sidecar.stat_lines("meshlet_http_downstream_tunnels_total")
        self.assertIn('meshlet_http_downstream_tunnels_total{kind="connect"}: 2', lines)
        self.assertTrue(wait_for(
            lambda: self.sidecar.stat("meshlet_http_downstream_tunnels_active") == 0))
        self.assertGreater(self.sidecar.stat("meshlet_http_downstream_rx_bytes_total"), 500000)

    def test_client_half_close_still_gets_the_answer(self):
        conn = socket.create_connection(("127.0.0.1", self.allowed), timeout=10)
        self.addCleanup(conn.close)
        conn.sendall(b"CONNECT echo.internal:7 HTTP/1.1\r\nhost: echo.internal:7\r\n\r\n")
        status_line, _ = read_head(conn)
        self.assertEqual(status_line.split(" ")[:2], ["HTTP/1.1", "200"])
        payload = os.urandom(200000)
        conn.sendall(payload)
        # The FIN goes on to the echo server as a write shutdown; it answers everything, then
        # finishes too, which ends the tunnel.
        conn.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(conn), payload)
        self.assertTrue(wait_for(
            lambda: self.sidecar.stat("meshlet_http_downstream_tunnels_active") == 0))
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rx_bytes_total"), len(payload))
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_tx_bytes_total"), len(payload))
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rq_reset_total"), 0)

    def test_refused_with_403_when_not_allowed(self):
        r = self.curl_via(self.refused, "http://app.internal:8080/hello")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("403", r.stderr.decode())
        # Counted once the codec hands the refusal back, which may be just after curl saw it.
        self.assertTrue(wait_for(
            lambda: self.sidecar.stat("meshlet_http_downstream_rq_connect_refused_total") == 1),
            self.sidecar.stat("meshlet_http_downstream_rq_connect_refused_total"))
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_cx_protocol_error_total"), 0)

    def test_http2_connect_is_refused_even_when_allowed(self):
        client = RawH2Client(self.allowed)
        self.addCleanup(client.close)
        client.request(1, None, method="CONNECT", authority="app.internal:8080")
        frames = client.frames_until(lambda fs: any(
            f[2] == 1 and (f[0] == client.RST_STREAM or f[1] & client.END_STREAM) for f in fs))
        [headers] = [f for f in frames if f[0] == client.HEADERS and f[2] == 1]
        self.assertIn(b"403", headers[3])
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rq_connect_refused_total"), 1)
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_tunnels_total"), 0)

    def test_unrouted_authority_and_down_upstream(self):
        r = self.curl_via(self.allowed, "http://elsewhere:8080/hello")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("404", r.stderr.decode())
        self.app.close()  # nothing listens on the cluster's port any more
        r = self.curl_via(self.allowed, "http://app.internal:8080/hello")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("503", r.stderr.decode())


# ------------------------------------------------------------------------------------------------


if __name__ == "__main__":
    base.SIDECAR = os.path.abspath(sys.argv.pop(1))
    ECHO_PROTO = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
