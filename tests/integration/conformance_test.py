"""HTTP/2 and HTTP/1.1 conformance of the sidecar's HTTP listeners, with raw frames and bytes.

Usage: conformance_test.py SIDECAR [unittest args]

One sidecar with an HTTP/2-only listener, one that detects HTTP/1.1 or HTTP/2 (PROTOCOL_HTTP) and
one that detects HTTP or TCP (PROTOCOL_AUTO, TCP to an echo server), routing HTTP to a raw
upstream on 127.0.0.1 that records each request line (or :path) it gets and answers 200. Shown:
- RFC 9113 6.8 / 7: after the client's GOAWAY (a known or an unknown error code), a PING gets its
  ACK or the connection closes; never silence. With a stream still open, the PING is answered and
  the stream completes.
- RFC 9113 5.1 / 5.1.1: HEADERS on a stream id lower than one the client opened is a connection
  error PROTOCOL_ERROR; on a stream closed both ways, a connection error STREAM_CLOSED; after the
  client's own RST_STREAM, a stream error STREAM_CLOSED and the connection goes on; DATA the
  same way; DATA on a stream the server reset is ignored.
- RFC 9113 8.1.1 / 8.3.1: a :path holding bytes no URI holds (raw UTF-8, a space) is a stream
  error PROTOCOL_ERROR and never reaches the upstream; a valid one on the same connection does.
- RFC 9112 7.1.1: chunk extensions are parsed strictly: a bare ';', an empty name or value, a
  control or non-token byte, an unterminated quoted string get 400 and the connection closes;
  well-formed ones (BWS, quoted-pairs, obs-text in quotes) pass.
- RFC 9110 9.3.7: OPTIONS * reaches the upstream in asterisk-form.
- RFC 9113 5.1 / 6.9.1 / 8.1 with the response complete before the request (the upstream answers
  the head at once): DATA or HEADERS after the request's END_STREAM are a connection error
  STREAM_CLOSED; a second HEADERS without END_STREAM, a body that disagrees with content-length,
  a pseudo-header in trailers are PROTOCOL_ERROR; a stream window past 2^31-1 is
  FLOW_CONTROL_ERROR (h2spec's cases, whose race it lost now and then, forced).
- RFC 9112 2.2 / 3 on the listeners that detect the protocol (PROTOCOL_HTTP and PROTOCOL_AUTO):
  empty lines before a request line are skipped (200), HTAB in a request line is the HTTP/1
  codec's 400, never an HTTP/2 GOAWAY or a silent close; opaque bytes (line ends first included)
  are still proxied as TCP by the AUTO listener.
- RFC 9113 3.4 on the listener that detects the protocol (h2spec http2/3.5/2): bytes that are
  neither the HTTP/2 preface nor an HTTP/1 request line get a GOAWAY(PROTOCOL_ERROR) and the
  close, not an HTTP/1 400; an HTTP/1 method the detector does not know is still served as HTTP/1
  once its request line ends in HTTP/1.x. h2spec http2/5.1/8 (DATA after the client's
  RST_STREAM, in one burst) is a STREAM_CLOSED error on both listeners.
"""

import os
import socket
import struct
import sys
import tempfile
import time
import unittest

import h2.config
import h2.connection

import sidecar_test
from ports import free_port

FRAME_NAMES = {0: "DATA", 1: "HEADERS", 3: "RST_STREAM", 4: "SETTINGS", 6: "PING", 7: "GOAWAY",
               8: "WINDOW_UPDATE"}


class RawUpstream(sidecar_test.TcpServer):
    """Records each request's first line and answers 200 with an empty body (HTTP/1.1); a path
    with "slow" in it a second later."""

    def __init__(self):
        self.lines = []
        super().__init__()

    def _serve(self, conn):
        data = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
                while b"\r\n\r\n" in data:
                    head, _, data = data.partition(b"\r\n\r\n")
                    line = head.split(b"\r\n")[0].decode("latin-1")
                    self.lines.append(line)
                    if "slow" in line:
                        time.sleep(1)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        except OSError:
            pass
        finally:
            conn.close()


def parse_frames(data):
    """[(type name, stream id, flags, payload)] of the complete frames in `data`."""
    frames, i = [], 0
    while i + 9 <= len(data):
        length = int.from_bytes(data[i:i + 3], "big")
        kind, flags = data[i + 3], data[i + 4]
        stream = int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF
        frames.append((FRAME_NAMES.get(kind, kind), stream, flags, data[i + 9:i + 9 + length]))
        i += 9 + length
    return frames


def ping_frame(payload=b"12345678"):
    return struct.pack(">I", 8)[1:] + bytes([6, 0]) + b"\0\0\0\0" + payload


class ConformanceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = RawUpstream()
        cls.echo = sidecar_test.EchoServer()
        cls.h2_port, cls.h1_port, cls.auto_port = free_port(), free_port(), free_port()
        config = sidecar_test.config_yaml(
            sidecar_test.http_listener("h2only", cls.h2_port, protocol="PROTOCOL_HTTP2") +
            sidecar_test.http_listener("h1", cls.h1_port) +
            sidecar_test.tcp_listener("auto", cls.auto_port, "echo", protocol="PROTOCOL_AUTO",
                                      extra="    route_config_name: app-routes\n"),
            sidecar_test.static_cluster("app", cls.upstream.port) +
            sidecar_test.static_cluster("echo", cls.echo.port), sidecar_test.app_routes())
        cls.sidecar = sidecar_test.Sidecar(tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR")),
                                           config)

    @classmethod
    def tearDownClass(cls):
        cls.sidecar.stop()
        cls.upstream.close()
        cls.echo.close()

    # --- helpers ----------------------------------------------------------------------------

    def exchange(self, port, pieces, wait=1.0):
        """Sends each of `pieces` (a pause between them), then reads until the peer closes or
        goes quiet for `wait` s: (bytes, closed)."""
        conn = socket.create_connection(("127.0.0.1", port))
        conn.settimeout(wait)
        out, closed = b"", False
        try:
            for piece in pieces:
                conn.sendall(piece)
                time.sleep(0.1)
            while True:
                data = conn.recv(65536)
                if not data:
                    closed = True
                    break
                out += data
        except socket.timeout:
            pass
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        finally:
            conn.close()
        return out, closed

    @staticmethod
    def client():
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                 header_encoding=None))
        c.initiate_connection()
        return c

    @staticmethod
    def request(path, method=b"GET"):
        return [(b":method", method), (b":scheme", b"http"), (b":authority", b"a"),
                (b":path", path)]

    # --- HTTP/2 -------------------------------------------------------------------------------

    def test_ping_after_goaway_is_answered_or_the_connection_closes(self):
        for code in (0, 0xABC):  # NO_ERROR, and an error code RFC 9113 does not define
            with self.subTest(code=code):
                c = self.client()
                c.close_connection(error_code=code)
                out, closed = self.exchange(self.h2_port, [c.data_to_send(), ping_frame()])
                acked = any(f[0] == "PING" and f[2] & 1 for f in parse_frames(out))
                self.assertTrue(acked or closed, parse_frames(out))

    def test_goaway_keeps_open_streams_and_pings_working(self):
        c = self.client()
        # The body is still to come, and the upstream answers a second later.
        c.send_headers(1, self.request(b"/slow", b"POST"))
        c.close_connection()
        first = c.data_to_send()
        data = struct.pack(">I", 2)[1:] + bytes([0, 1]) + struct.pack(">I", 1) + b"ok"
        out, _ = self.exchange(self.h2_port, [first, ping_frame(b"abcdefgh"), data], wait=2.5)
        frames = parse_frames(out)
        self.assertIn(("PING", 0, 1, b"abcdefgh"), frames)
        headers = [f for f in frames if f[0] == "HEADERS" and f[1] == 1]
        self.assertTrue(headers, frames)  # the stream's response came
        self.assertIn("POST /slow HTTP/1.1", self.upstream.lines)

    def test_a_path_no_uri_holds_is_a_stream_protocol_error(self):
        before = len(self.upstream.lines)
        c = self.client()
        c.send_headers(1, self.request("/caf\u00e9".encode()), end_stream=True)
        c.send_headers(3, self.request(b"/a b"), end_stream=True)
        c.send_headers(5, self.request(b"/fine%C3%A9"), end_stream=True)
        out, _ = self.exchange(self.h2_port, [c.data_to_send()])
        frames = parse_frames(out)
        for stream in (1, 3):
            rst = [f for f in frames if f[0] == "RST_STREAM" and f[1] == stream]
            self.assertTrue(rst, frames)
            self.assertEqual(int.from_bytes(rst[0][3], "big"), 1)  # PROTOCOL_ERROR
        self.assertTrue([f for f in frames if f[0] == "HEADERS" and f[1] == 5], frames)
        self.assertEqual(self.upstream.lines[before:], ["GET /fine%C3%A9 HTTP/1.1"])

    def goaway_error(self, frames):
        goaways = [f for f in frames if f[0] == "GOAWAY"]
        return int.from_bytes(goaways[-1][3][4:8], "big") if goaways else None

    def test_headers_on_a_lower_stream_id_is_a_connection_protocol_error(self):
        c = self.client()
        c.send_headers(5, self.request(b"/five"), end_stream=True)
        first = c.data_to_send()
        # Stream 3 was skipped (implicitly closed when 5 opened): HEADERS on it now.
        other = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        other.initiate_connection()
        other.data_to_send()
        other.send_headers(3, self.request(b"/three"), end_stream=True)
        out, closed = self.exchange(self.h2_port, [first, other.data_to_send()], wait=2)
        frames = parse_frames(out)
        self.assertEqual(self.goaway_error(frames), 1, frames)  # PROTOCOL_ERROR
        self.assertTrue(closed)
        self.assertNotIn("GET /three HTTP/1.1", self.upstream.lines)

    def late_headers(self, stream):
        """A HEADERS frame on `stream` (HPACK from a fresh encoder: static table only)."""
        late = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        late.initiate_connection()
        late.data_to_send()
        late.send_headers(stream, self.request(b"/late"), end_stream=True)
        return late.data_to_send()

    def data_frame(self, stream, payload=b"late", end_stream=True):
        return (struct.pack(">I", len(payload))[1:] + bytes([0, 1 if end_stream else 0]) +
                struct.pack(">I", stream) + payload)

    def test_frames_on_a_closed_stream_are_a_stream_closed_connection_error(self):
        for late in (self.late_headers, self.data_frame):
            with self.subTest(late=late.__name__):
                # Stream 1 completes both ways; then a frame arrives on it.
                c = self.client()
                c.send_headers(1, self.request(b"/done"), end_stream=True)
                out, closed = self.exchange(self.h2_port, [c.data_to_send(), b"", late(1)],
                                            wait=2)
                frames = parse_frames(out)
                self.assertTrue([f for f in frames if f[0] == "HEADERS" and f[1] == 1], frames)
                self.assertEqual(self.goaway_error(frames), 5, frames)  # STREAM_CLOSED
                self.assertTrue(closed)

    def test_frames_after_the_clients_reset_are_a_stream_closed_stream_error(self):
        for late in (self.late_headers, self.data_frame):
            with self.subTest(late=late.__name__):
                c = self.client()
                c.send_headers(1, self.request(b"/slow-reset", b"POST"))
                c.reset_stream(1)
                first = c.data_to_send()
                c.send_headers(3, self.request(b"/after"), end_stream=True)
                out, _ = self.exchange(self.h2_port, [first, late(1), c.data_to_send()],
                                       wait=2.5)
                frames = parse_frames(out)
                rst = [f for f in frames if f[0] == "RST_STREAM" and f[1] == 1]
                self.assertTrue(rst, frames)
                self.assertEqual(int.from_bytes(rst[-1][3], "big"), 5)  # STREAM_CLOSED
                # A stream error: the connection goes on.
                self.assertIsNone(self.goaway_error(frames), frames)
                self.assertTrue([f for f in frames if f[0] == "HEADERS" and f[1] == 3], frames)

    def test_data_the_client_sent_before_seeing_the_servers_reset_is_ignored(self):
        c = self.client()
        c.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"),
                           (b":path", "/caf\u00e9".encode())])  # refused: RST_STREAM
        c.send_headers(3, self.request(b"/fine-after"), end_stream=True)
        first = c.data_to_send()
        out, _ = self.exchange(self.h2_port, [first, self.data_frame(1)], wait=2)
        frames = parse_frames(out)
        self.assertIsNone(self.goaway_error(frames), frames)
        self.assertTrue([f for f in frames if f[0] == "HEADERS" and f[1] == 3], frames)

    # --- The rest of a request after its response (RFC 9113 8.1) -----------------------------

    # HPACK blocks that touch no dynamic-table entry: POST http://a/early-... (static :method,
    # :scheme; literal :path and :authority), with content-length: 1; trailers (user-agent: a),
    # and the same with the pseudo-header :path / in them.
    @staticmethod
    def post_block(path, extra=b""):
        return (b"\x83\x86\x04" + bytes([len(path)]) + path + b"\x01\x01a" + extra)

    CONTENT_LENGTH_ONE = b"\x0f\x0d\x011"
    TRAILERS = b"\x0f\x2b\x01a"
    PSEUDO_TRAILERS = b"\x0f\x2b\x01a\x84"

    @staticmethod
    def frame(kind, flags, stream, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
            struct.pack(">I", stream) + payload

    def after_early_response(self, port, block, rest):
        """Opens stream 1 with `block` (no END_STREAM), waits for its whole response (the
        upstream answers the request head at once, before the body), then sends `rest`: the
        frames that came after it."""
        conn = socket.create_connection(("127.0.0.1", port))
        conn.settimeout(5)
        try:
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + self.frame(4, 0, 0) +
                         self.frame(1, 4, 1, block))  # SETTINGS; HEADERS, END_HEADERS
            data = b""
            while not [f for f in parse_frames(data) if f[0] == "HEADERS" and f[1] == 1 and f[2] & 1]:
                chunk = conn.recv(65536)
                self.assertTrue(chunk, parse_frames(data))
                data += chunk
            seen = len(parse_frames(data))
            conn.sendall(rest)
            conn.settimeout(2)
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                pass
            return parse_frames(data)[seen:]
        finally:
            conn.close()

    def error_after_early_response(self, frames):
        """(RST_STREAM code on stream 1 or None, GOAWAY code or None)."""
        rst = [f for f in frames if f[0] == "RST_STREAM" and f[1] == 1]
        return (int.from_bytes(rst[-1][3], "big") if rst else None), self.goaway_error(frames)

    def test_the_rest_of_a_request_after_its_response_is_still_judged(self):
        # h2spec's cases, with the race they lose now and then forced: the upstream answers the
        # request head at once and the whole response is out before the rest of the request
        # comes. Those frames are errors as on any stream, never ignored as after a reset.
        data, headers, window_update = 0, 1, 8
        cases = [
            # http2/5.1: DATA, or HEADERS, after the request's END_STREAM: closed both ways.
            ("data after end", b"", self.frame(data, 1, 1, b"body") + self.frame(data, 0, 1, b"x"),
             None, 5),
            ("headers after end", b"", self.frame(data, 1, 1, b"body") +
             self.frame(headers, 5, 1, self.TRAILERS), None, 5),
            # http2/8.1/1: a second HEADERS without END_STREAM.
            ("second headers", b"", self.frame(data, 0, 1, b"body") +
             self.frame(headers, 4, 1, self.TRAILERS), 1, None),
            # http2/8.1.2.6/1: a body longer than its content-length.
            ("content-length", self.CONTENT_LENGTH_ONE, self.frame(data, 1, 1, b"test"), 1, None),
            # http2/8.1.2.1/3: a pseudo-header field in trailers.
            ("pseudo-header in trailers", b"", self.frame(data, 0, 1, b"body") +
             self.frame(headers, 5, 1, self.PSEUDO_TRAILERS), 1, None),
            # http2/6.9.1/3: a stream window past 2^31-1.
            ("window overflow", b"", self.frame(window_update, 0, 1, b"\x7f\xff\xff\xff") * 2,
             3, None),
        ]
        for name, port in (("h2 only", self.h2_port), ("detecting", self.h1_port)):
            for case, extra, rest, rst_code, goaway_code in cases:
                with self.subTest(listener=name, case=case):
                    path = b"/early-" + case.replace(" ", "-").encode()
                    frames = self.after_early_response(port, self.post_block(path, extra), rest)
                    rst, goaway = self.error_after_early_response(frames)
                    if goaway_code is not None:
                        self.assertEqual(goaway, goaway_code, frames)  # a connection error
                    else:
                        self.assertTrue(rst == rst_code or goaway == rst_code, frames)

    # --- A listener that detects HTTP/1.1 or HTTP/2 (PROTOCOL_HTTP) --------------------------

    def test_an_invalid_preface_on_a_detecting_listener_is_a_goaway_protocol_error(self):
        # h2spec http2/3.5/2 sends the first of these; the second is the preface gone wrong after
        # "PRI * HTTP/2.0". Neither is an HTTP/1 request line: the answer is HTTP/2's to a bad
        # preface, a GOAWAY(PROTOCOL_ERROR) and the close, with no HTTP/1 reply before it.
        for preface in (b"INVALID CONNECTION PREFACE\r\n\r\n",
                        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"\x00\x01 not http\r\n"):
            with self.subTest(preface=preface):
                errors = "meshlet_http_downstream_cx_protocol_error_total"
                before = self.sidecar.stat(errors)
                out, closed = self.exchange(self.h1_port, [preface], wait=2)
                frames = parse_frames(out)
                self.assertFalse(out.startswith(b"HTTP/1.1"), out[:100])
                # The server's own preface (SETTINGS, the connection window) may come first.
                answer = [f[0] for f in frames if f[0] not in ("SETTINGS", "WINDOW_UPDATE")]
                self.assertEqual(answer, ["GOAWAY"], frames)
                self.assertEqual(self.goaway_error(frames), 1, frames)  # PROTOCOL_ERROR
                self.assertTrue(closed)
                self.assertEqual(self.sidecar.stat(errors), before + 1)

    def test_an_http1_method_the_detector_does_not_know_is_still_http1(self):
        before = len(self.upstream.lines)
        out, _ = self.exchange(self.h1_port, [b"PURGE /cache HTTP/1.1\r\nHost: a\r\n\r\n"],
                               wait=0.5)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:100])
        self.assertEqual(self.upstream.lines[before:], ["PURGE /cache HTTP/1.1"])
        # Its request line may come in pieces: the line's end decides.
        out, _ = self.exchange(self.h1_port, [b"SEARCH /in", b"dex HTTP/1.1\r\nHost: a\r\n\r\n"],
                               wait=0.5)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:100])
        self.assertEqual(self.upstream.lines[before + 1:], ["SEARCH /index HTTP/1.1"])

    def detecting_ports(self):
        return (("PROTOCOL_HTTP", self.h1_port), ("PROTOCOL_AUTO", self.auto_port))

    def test_empty_lines_before_the_request_line_are_skipped_on_detecting_listeners(self):
        # RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line.
        # Once the detector took these bytes for opaque: an HTTP/2 bad-preface GOAWAY on the
        # HTTP listener, the TCP proxy on the AUTO one.
        for name, port in self.detecting_ports():
            for lead in (b"\r\n", b"\r\n\r\n"):
                with self.subTest(listener=name, lead=lead):
                    before = len(self.upstream.lines)
                    out, _ = self.exchange(port, [lead + b"GET /lead HTTP/1.1\r\nHost: a\r\n\r\n"],
                                           wait=0.5)
                    self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:100])
                    self.assertEqual(self.upstream.lines[before:], ["GET /lead HTTP/1.1"])
        # The empty line may come alone first.
        out, _ = self.exchange(self.h1_port, [b"\r\n", b"PURGE /lead HTTP/1.1\r\nHost: a\r\n\r\n"],
                               wait=0.5)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:100])

    def test_a_tab_in_the_request_line_is_http1s_400_on_detecting_listeners(self):
        # HTAB between the fields of a request line is not HTTP/1.1 (RFC 9112 3): the HTTP/1
        # codec answers 400 and closes, as on an HTTP/1-only listener; the request goes nowhere.
        for name, port in self.detecting_ports():
            for line in (b"GET\t/ HTTP/1.1", b"GET /\tHTTP/1.1", b"PURGE\t/ HTTP/1.1"):
                if name == "PROTOCOL_AUTO" and line.startswith(b"PURGE"):
                    continue  # an unknown method is opaque under AUTO (below)
                with self.subTest(listener=name, line=line):
                    before = len(self.upstream.lines)
                    out, closed = self.exchange(port, [line + b"\r\nHost: a\r\n\r\n"])
                    self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:100])
                    self.assertTrue(closed)
                    self.assertEqual(self.upstream.lines[before:], [])

    def test_opaque_bytes_on_an_auto_listener_are_still_tcp(self):
        # What AUTO takes for HTTP/1 is a common method followed by SP or HTAB, after at most a
        # few empty lines; anything else, line ends first included, is proxied as TCP.
        for payload in (b"\r\n\r\nhello\r\n", b"PURGE\t/ HTTP/1.1\r\n\r\n",
                        b"\r\n" * 17 + b"GET / HTTP/1.1\r\n\r\n", b"\rGET / HTTP/1.1\r\n\r\n",
                        b"GETX / HTTP/1.1\r\n\r\n"):
            with self.subTest(payload=payload):
                self.assertEqual(sidecar_test.echo_round_trip(self.auto_port, payload), payload)

    def test_data_after_the_clients_reset_on_a_detecting_listener_is_stream_closed(self):
        # h2spec http2/5.1/8, as it sends it: HEADERS without END_STREAM, RST_STREAM(CANCEL) and
        # DATA in one burst.
        c = self.client()
        c.send_headers(1, self.request(b"/"))
        c.reset_stream(1, error_code=8)  # CANCEL
        burst = c.data_to_send() + self.data_frame(1, b"test")
        for port in (self.h1_port, self.h2_port):
            with self.subTest(port="detecting" if port == self.h1_port else "h2 only"):
                out, _ = self.exchange(port, [burst], wait=2)
                frames = parse_frames(out)
                rst = [f for f in frames if f[0] == "RST_STREAM" and f[1] == 1]
                goaway = self.goaway_error(frames)
                self.assertTrue((rst and int.from_bytes(rst[-1][3], "big") == 5) or goaway == 5,
                                frames)  # STREAM_CLOSED, as a stream or a connection error

    # --- HTTP/1.1 -----------------------------------------------------------------------------

    def chunked(self, size_line):
        return (b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
                size_line + b"\r\nhello\r\n0\r\n\r\n")

    def test_chunk_extensions_are_parsed_strictly(self):
        # (The request head has gone upstream before its body is read; the upstream request is
        # reset when the body turns out malformed.)
        for line in (b"5;", b"5;=1", b"5;a=1;", b"5;a\tb", b"5;a b", b"5;a=\xff", b"5;a=",
                     b"5;a=\"b", b"5;a=\"b\x7f\"", b"5;a=\"b\"c", b"5 ;", b"5;a\x01"):
            with self.subTest(line=line):
                out, closed = self.exchange(self.h1_port, [self.chunked(line)])
                self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:100])
                self.assertTrue(closed)
        for line in (b"5;a=b", b"5 \t; a = b ;c=\"q \\\" \\\\ \xe9\"\t;d", b"5;A-B_c.d~e"):
            with self.subTest(line=line):
                out, _ = self.exchange(self.h1_port, [self.chunked(line)])
                self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:100])

    def test_options_asterisk_reaches_the_upstream_in_asterisk_form(self):
        before = len(self.upstream.lines)
        out, _ = self.exchange(self.h1_port, [b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"], wait=0.5)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:100])
        self.assertEqual(self.upstream.lines[before:], ["OPTIONS * HTTP/1.1"])
        c = self.client()
        c.send_headers(1, self.request(b"*", b"OPTIONS"), end_stream=True)
        out, _ = self.exchange(self.h2_port, [c.data_to_send()])
        self.assertTrue([f for f in parse_frames(out) if f[0] == "HEADERS" and f[1] == 1])
        self.assertEqual(self.upstream.lines[before + 1:], ["OPTIONS * HTTP/1.1"])


if __name__ == "__main__":
    sidecar_test.SIDECAR = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
