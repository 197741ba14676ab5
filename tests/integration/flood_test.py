"""Clients that send and never read: the real sidecar binary keeps its memory bounded and closes
the offender.

Usage: flood_test.py SIDECAR_BINARY [unittest args]

Each case opens one connection to a listener, shrinks its own receive buffer so the kernel stops
taking the sidecar's replies early, and sends without ever reading:

  Http2FloodTest   h2c preface and SETTINGS, then PING frames (or SETTINGS frames, or HEADERS
                   frames the sidecar must refuse with RST_STREAM, or WINDOW_UPDATE frames):
                   the sidecar's RSS stays within a few MiB of its value before the flood, the
                   connection is closed (GOAWAY ENHANCE_YOUR_CALM, counted), and another client
                   is served meanwhile.
  Http2AbuseTest   clients that read but abuse HTTP/2: rapid reset through a real upstream,
                   a CONTINUATION flood, empty DATA frames, PRIORITY frames: each gets
                   GOAWAY(ENHANCE_YOUR_CALM), counted by the limit passed, with bounded work.
  Http2FloodDrainTest  a rapid reset on a connection with a slow request in flight: GOAWAY
                   names the last stream accepted, later streams are refused, the slow request
                   gets its whole response, then the connection closes; a client that goes on
                   is cut off at once, the drain is bounded by http.flood_drain_timeout, and a
                   client may leave during it; each counted (flood, how it ended, resets,
                   refused streams, GOAWAY).
  Http1FloodTest   pipelined requests for a direct response: the sidecar stops reading once its
                   replies pass the write buffer's high watermark, so RSS stays bounded; it
                   serves the rest once the client reads.
"""

import json
import os
import socket
import struct
import sys
import threading
import time
import unittest

import sidecar_test as base
from h2_frames import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING,
                       PREFACE, PRIORITY, RST_STREAM, SETTINGS, WINDOW_UPDATE, frame,
                       goaway_fields, hpack_literal, read_frames, read_goaway, request_block)
from sidecar_test import (ROUTES, config_yaml, free_port, http_listener, rss_kib, stat_with,
                          static_cluster, wait_for)

class Flooder:
    """One client connection that writes from a thread and never reads until told to."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive buffer: the kernel stops taking the sidecar's bytes after a few KiB,
        # so what the sidecar queues shows up in its own memory at once.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = 0
        self.error = None

    def flood(self, head, unit, count, batch=512, stall_timeout=10):
        """Sends `head`, then `unit` (bytes, or a function of the index giving bytes) `count`
        times, until done, the sidecar closes, or it takes nothing for `stall_timeout` s."""
        try:
            self.sock.settimeout(stall_timeout)
            self.sock.sendall(head)
            i = 0
            while i < count:
                n = min(batch, count - i)
                chunk = unit * n if isinstance(unit, bytes) else b"".join(
                    unit(i + k) for k in range(n))
                self.sock.sendall(chunk)
                i += n
                self.sent = i
        except OSError as e:  # closed by the sidecar (reset), or it stopped reading (timeout)
            self.error = e

    def start(self, *args, **kwargs):
        self.thread = threading.Thread(target=self.flood, args=args, kwargs=kwargs, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout):
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def close(self):
        self.sock.close()


class FloodTestCase(base.SidecarTestCase):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.sidecar = self.start(config_yaml(http_listener("http", self.port, route="local"),
                                              static_cluster("unused", free_port()), ROUTES),
                                  concurrency=1)
        self.baseline = self.settled_rss()

    def settled_rss(self):
        # A few requests first, so lazily allocated per-worker state is in the baseline.
        for _ in range(3):
            base.curl(f"http://127.0.0.1:{self.port}/")
            base.curl("--http2-prior-knowledge", f"http://127.0.0.1:{self.port}/")
        return rss_kib(self.sidecar.proc.pid)

    def assert_served(self):
        self.assertEqual(base.curl(f"http://127.0.0.1:{self.port}/"), "hello from meshlet\n")

    def assert_rss_bounded(self, limit_kib=4 * 1024):
        grown = rss_kib(self.sidecar.proc.pid) - self.baseline
        print(f"{self.id()}: RSS {self.baseline} KiB before, {grown:+} KiB after", file=sys.stderr)
        if base.SANITIZED:
            print("SKIP the RSS bound: a sanitizer's allocator holds freed memory",
                  file=sys.stderr)
            return
        self.assertLess(grown, limit_kib, f"RSS grew by {grown} KiB under the flood")


class Http2FloodTest(FloodTestCase):
    # The sidecar's socket takes up to a few MiB (tcp_wmem) before anything stays in its own
    # buffers, so each flood asks for several times that in replies.

    def run_flood(self, unit, count, held=False):
        flooder = Flooder(self.port)
        self.addCleanup(flooder.close)
        flooder.start(PREFACE + frame(SETTINGS, 0, 0), unit, count)
        detected = wait_for(lambda: self.sidecar.stat("meshlet_http_downstream_cx_flood_total") >= 1,
                            60)
        self.assertTrue(detected, f"no flood detected after {flooder.sent} frames; "
                                  f"RSS +{rss_kib(self.sidecar.proc.pid) - self.baseline} KiB")
        if held:
            # A flooder that does not read its replies is held, unread, until the close timeout
            # (5 s) rather than closed at once: closed, it would reconnect and flood again.
            time.sleep(1)  # the socket buffers between the two fill
            sent = flooder.sent
            time.sleep(1)
            self.assertEqual(self.sidecar.stat("meshlet_http_downstream_cx_active"), 1,
                             "the flooder was let go at once")
            self.assertLessEqual(flooder.sent - sent, 512, "the held flooder is still read")
        # The connection is gone: the client's writes fail (reset) before the flood is through.
        self.assertTrue(flooder.join(30), "the flooding client was never cut off")
        self.assertIsNotNone(flooder.error, "the whole flood was accepted")
        self.assertLess(flooder.sent, count)
        self.assert_rss_bounded()
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_cx_flood_total"), 1)
        self.assertTrue(wait_for(
            lambda: self.sidecar.stat("meshlet_http_downstream_cx_active") == 0, 10))
        self.assert_served()
        return flooder

    def test_ping_flood(self):
        self.run_flood(frame(PING, 0, 0, b"12345678"), 1_000_000, held=True)

    def test_settings_flood(self):
        self.run_flood(frame(SETTINGS, 0, 0), 1_500_000, held=True)

    def test_refused_streams_flood(self):
        # Every HEADERS carries a connection-specific field, which makes the request malformed
        # (RFC 9113 8.2.2): each is answered with RST_STREAM(PROTOCOL_ERROR).
        bad = request_block(extra=hpack_literal(b"connection", b"x"))
        self.run_flood(lambda i: frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, bad),
                       1_000_000)

    def test_window_update_flood(self):
        # Nothing to reply to, but WINDOW_UPDATEs for data the sidecar never sent are abuse.
        self.run_flood(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)), 3_000_000)

    def test_limit_from_the_listener_configuration(self):
        # max_outbound_control_frames: 5 also bounds what one read may ask for.
        port = free_port()
        listener = http_listener("limited", port, route="local") + \
            "    http: {max_outbound_control_frames: 5}\n"
        sidecar = self.start(config_yaml(listener, static_cluster("unused", free_port()), ROUTES))
        for pings, flood in [(3, 0), (20, 1)]:
            sock = socket.create_connection(("127.0.0.1", port))
            self.addCleanup(sock.close)
            sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(PING, 0, 0, b"12345678") * pings)
            self.assertTrue(wait_for(
                lambda: sidecar.stat("meshlet_http_downstream_cx_flood_total") == flood, 5))
            time.sleep(0.2)
            self.assertEqual(sidecar.stat("meshlet_http_downstream_cx_flood_total"), flood)

    def test_a_client_that_reads_may_ping_within_the_rate(self):
        # 800 PINGs in bursts of 20 from a client that reads the ACKs are no flood (the bucket
        # holds 1000); 20 000 at once are, though every ACK is read.
        sock = socket.create_connection(("127.0.0.1", self.port))
        self.addCleanup(sock.close)
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        ack = frame(PING, ACK, 0, b"abcdefgh")
        received = bytearray()
        for burst in range(1, 41):
            sock.sendall(frame(PING, 0, 0, b"abcdefgh") * 20)
            while received.count(ack) < 20 * burst:
                data = sock.recv(1 << 16)
                self.assertTrue(data, "the sidecar closed the connection")
                received += data
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_cx_flood_total"), 0)
        reader = socket.create_connection(("127.0.0.1", self.port))
        self.addCleanup(reader.close)
        reader.sendall(PREFACE + frame(SETTINGS, 0, 0))
        try:
            for _ in range(40):
                reader.sendall(frame(PING, 0, 0, b"abcdefgh") * 500)
                reader.recv(1 << 20)
        except OSError:
            pass
        read_goaway(reader)  # until the sidecar closes it (at once: acknowledgements are dropped)
        self.assertTrue(wait_for(lambda: self.sidecar.stat_lines(
            "meshlet_http_downstream_cx_flood_total").count(
                'meshlet_http_downstream_cx_flood_total{limit="ping_settings"}: 1') == 1, 5))


class Http2AbuseTest(FloodTestCase):
    """Clients that read everything but abuse the protocol: each is cut off with
    GOAWAY(ENHANCE_YOUR_CALM), counted by the limit it passed, the work it caused is bounded,
    and another client is served meanwhile."""

    ENHANCE_YOUR_CALM = 0xb

    def setUp(self):
        super().setUp()
        self.upstream = base.HttpUpstream()
        self.addCleanup(self.upstream.close)
        self.app_port = free_port()
        self.app_sidecar = self.start(
            config_yaml(http_listener("app", self.app_port),
                        static_cluster("app", self.upstream.port), base.app_routes()),
            concurrency=1)

    def abuse(self, sidecar, port, frames, limit):
        sock = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(sock.close)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0))
        sent = 0
        try:
            for chunk in frames:
                sock.sendall(chunk)
                sent += 1
        except OSError:
            pass  # cut off while sending (or the sidecar lingers, reading, until we close)
        self.assertEqual(read_goaway(sock), self.ENHANCE_YOUR_CALM)
        self.assertTrue(wait_for(lambda: sidecar.stat_lines("meshlet_http_downstream_cx_flood_total")
                                 .count(f'meshlet_http_downstream_cx_flood_total{{limit="{limit}"}}: 1')
                                 == 1, 5), sidecar.stat_lines("meshlet_http_downstream_cx_flood_total"))
        self.assertEqual(sidecar.stat("meshlet_http_downstream_cx_flood_total"), 1)
        return sent

    def test_rapid_reset(self):
        # Every request goes upstream and is cancelled at once (CVE-2023-44487). The default
        # burst is 200; the upstream sees at most that many requests (plus one read's worth).
        def frames():
            for i in range(60_000):
                sid = 2 * i + 1
                yield (frame(HEADERS, END_STREAM | END_HEADERS, sid, request_block(b"/slow/0.05")) +
                       frame(RST_STREAM, 0, sid, struct.pack(">I", 8)))
        self.abuse(self.app_sidecar, self.app_port, frames(), "resets")
        time.sleep(0.3)
        self.assertLess(len(self.upstream.paths), 400, "the cancelled requests were not bounded")
        # Nothing was in flight to drain for: cut off at once.
        self.assertEqual(stat_with(self.app_sidecar, "meshlet_http_downstream_cx_flood_end_total",
                                   'outcome="at_once"'), 1)
        self.assertGreaterEqual(stat_with(self.app_sidecar,
                                          "meshlet_http2_downstream_client_resets_total",
                                          'kind="premature"'), 200)
        self.assertIn('"upstream": "app"', base.curl(f"http://127.0.0.1:{self.app_port}/after"))

    def test_continuation_flood(self):
        # A header block that never ends, 1 KiB of fields per CONTINUATION.
        field = hpack_literal(b"x-filler", b"v" * 100) * 9
        def frames():
            yield frame(HEADERS, 0, 1, request_block())
            for _ in range(60_000):
                yield frame(CONTINUATION, 0, 1, field)
        self.abuse(self.sidecar, self.port, frames(), "continuation")
        self.assert_rss_bounded()
        self.assert_served()

    def test_empty_data_flood(self):
        def frames():
            yield frame(HEADERS, END_HEADERS, 1, request_block())
            for _ in range(60_000):
                yield frame(DATA, 0, 1)
        self.abuse(self.sidecar, self.port, frames(), "empty_frames")
        self.assert_served()

    def test_priority_flood(self):
        def frames():
            for i in range(60_000):
                yield frame(PRIORITY, 0, 2 * i + 1, struct.pack(">IB", 0, 16))
        self.abuse(self.sidecar, self.port, frames(), "priority")
        self.assert_served()

    def test_streams_without_window(self):
        # Window abuse: 200 streams each asking for 1 MB while the client's SETTINGS give every
        # stream a window of 0. Per stream the sidecar would buffer up to 256 KiB (50 MiB in
        # all); the connection-wide limit (4 MiB) stops every upstream read long before.
        baseline = self.settled_app_rss()
        sock = socket.create_connection(("127.0.0.1", self.app_port))
        self.addCleanup(sock.close)
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0)) +
                     frame(SETTINGS, ACK, 0) +
                     b"".join(frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1,
                                    request_block(b"/big/1000000")) for i in range(200)))
        self.assertTrue(wait_for(lambda: len(self.upstream.paths) >= 150, 20),
                        f"only {len(self.upstream.paths)} requests reached the upstream")
        time.sleep(2)
        grown = rss_kib(self.app_sidecar.proc.pid) - baseline
        print(f"{self.id()}: RSS +{grown} KiB with 200 streams held", file=sys.stderr)
        if not base.SANITIZED:
            self.assertLess(grown, 24 * 1024)
        self.assertIn('"upstream": "app"', base.curl(f"http://127.0.0.1:{self.app_port}/other"))

    def settled_app_rss(self):
        for _ in range(3):
            base.curl("--http2-prior-knowledge", f"http://127.0.0.1:{self.app_port}/")
        return rss_kib(self.app_sidecar.proc.pid)

    def test_limits_from_the_listener_configuration(self):
        port = free_port()
        listener = http_listener("limited", port, route="local") + \
            "    http: {max_inbound_priority_frames_per_stream: 3}\n"
        sidecar = self.start(config_yaml(listener, static_cluster("unused", free_port()), ROUTES))
        priorities = (frame(PRIORITY, 0, 2 * i + 1, struct.pack(">IB", 0, 16)) for i in range(4))
        self.assertEqual(self.abuse(sidecar, port, priorities, "priority"), 4)


class Http2FloodDrainTest(base.SidecarTestCase):
    """A client that passes the rapid-reset limit while a slow request of its is in flight: the
    request finishes unless the client goes on or the drain time runs out. The burst is 10 and
    nothing comes back by time, so the 11th stream opened and reset at once passes it."""

    ENHANCE_YOUR_CALM = 0xb
    LIMITS = "stream_reset_burst: 10, stream_resets_per_second: 0"

    def setUp(self):
        super().setUp()
        self.upstream = base.HttpUpstream()
        self.addCleanup(self.upstream.close)
        self.port = free_port()
        self.short_port = free_port()
        listeners = (
            http_listener("drain", self.port) + f"    http: {{{self.LIMITS}}}\n" +
            http_listener("short", self.short_port) +
            f"    http: {{{self.LIMITS}, flood_drain_timeout: 1s}}\n")
        self.sidecar = self.start(config_yaml(listeners, static_cluster("app", self.upstream.port),
                                              base.app_routes()), concurrency=1)

    def slow_request(self, port, path):
        """A connection with one request for `path` in flight at the upstream (stream 1)."""
        sock = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(sock.close)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0) +
                     frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(path)))
        self.assertTrue(wait_for(lambda: path.decode() in self.upstream.paths, 5))
        return sock

    @staticmethod
    def opened_and_reset(first, count):
        """`count` streams from `first` on, each opened and reset at once (CANCEL)."""
        return b"".join(frame(HEADERS, END_STREAM | END_HEADERS, sid, request_block(b"/flood")) +
                        frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
                        for sid in range(first, first + 2 * count, 2))

    def goaway(self, frames):
        goaways = [goaway_fields(f[4]) for f in frames if f[1] == GOAWAY]
        self.assertTrue(goaways, "no GOAWAY")
        return goaways[0]

    def test_the_request_in_flight_finishes(self):
        sock = self.slow_request(self.port, b"/slow/1.5")
        started = time.time()
        # Streams 3 .. 23 opened and reset (the 11th passes the limit), then two new requests.
        sock.sendall(self.opened_and_reset(3, 11) +
                     frame(HEADERS, END_STREAM | END_HEADERS, 25, request_block(b"/after")) +
                     frame(HEADERS, END_STREAM | END_HEADERS, 27, request_block(b"/after")))
        frames, ended = read_frames(sock, timeout=10)
        self.assertTrue(ended, "the connection stayed open after the drain")
        self.assertEqual(self.goaway(frames), (23, self.ENHANCE_YOUR_CALM))
        # The slow request's whole response, after its 1.5 s, then the close.
        mine = [f for f in frames if f[3] == 1]
        self.assertEqual([f[1] for f in mine][:1], [HEADERS], mine)
        body = b"".join(f[4] for f in mine if f[1] == DATA)
        self.assertTrue(mine[-1][2] & END_STREAM, "the response did not end")
        self.assertEqual(json.loads(body)["path"], "/slow/1.5")
        self.assertGreaterEqual(time.time() - started, 1.4)
        # The requests after the GOAWAY were refused: never answered, never sent upstream.
        self.assertFalse([f for f in frames if f[3] in (25, 27)])
        self.assertNotIn("/after", self.upstream.paths)
        s = self.sidecar
        self.assertTrue(wait_for(
            lambda: s.stat("meshlet_http_downstream_cx_flood_end_total") == 1, 5))
        for name, labels, value in [
                ("meshlet_http_downstream_cx_flood_end_total", 'outcome="drained"', 1),
                ("meshlet_http_downstream_cx_flood_total", 'limit="resets"', 1),
                ("meshlet_http_downstream_cx_flood_total", "", 1),
                ("meshlet_http2_downstream_client_resets_total", 'kind="premature"', 11),
                ("meshlet_http2_downstream_client_resets_total", 'kind="late"', 0),
                ("meshlet_http2_downstream_streams_refused_total", 'reason="goaway"', 2),
                ("meshlet_http2_downstream_goaway_sent_total", 'code="ENHANCE_YOUR_CALM"', 1),
                ("meshlet_http2_downstream_rst_stream_received_total", 'code="CANCEL"', 11)]:
            self.assertEqual(stat_with(s, name, labels), value, f"{name}{{{labels}}}")
        self.assertEqual(s.stat("meshlet_http_downstream_cx_protocol_error_total"), 0)

    def test_a_client_that_goes_on_is_cut_off(self):
        sock = self.slow_request(self.port, b"/slow/3")
        started = time.time()
        sock.sendall(self.opened_and_reset(3, 11))
        sock.settimeout(5)
        self.assertEqual(goaway_fields(self.read_goaway_frame(sock)), (23, self.ENHANCE_YOUR_CALM))
        # The flooder has read the GOAWAY and floods on: new streams, opened and reset.
        try:
            sock.sendall(self.opened_and_reset(25, 11))
        except OSError:
            pass
        frames, ended = read_frames(sock, timeout=5)
        self.assertTrue(ended)
        self.assertLess(time.time() - started, 2.5, "not cut off before the slow response")
        self.assertFalse([f for f in frames if f[3] == 1], "the slow request was answered")
        self.assertTrue(wait_for(lambda: self.sidecar.stat(
            "meshlet_http_downstream_cx_flood_end_total") == 1, 5))
        self.assertEqual(stat_with(self.sidecar, "meshlet_http_downstream_cx_flood_end_total",
                                   'outcome="flooded_on"'), 1)
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_cx_flood_total"), 1)

    def test_the_drain_is_bounded(self):
        # flood_drain_timeout 1s on this listener; the request takes 4 s.
        sock = self.slow_request(self.short_port, b"/slow/4")
        started = time.time()
        sock.sendall(self.opened_and_reset(3, 11))
        frames, ended = read_frames(sock, timeout=10)
        closed_after = time.time() - started
        self.assertTrue(ended)
        self.assertEqual(self.goaway(frames), (23, self.ENHANCE_YOUR_CALM))
        self.assertGreaterEqual(closed_after, 0.9)
        self.assertLess(closed_after, 3, "the drain outlasted flood_drain_timeout")
        self.assertFalse([f for f in frames if f[3] == 1], "the slow request was answered")
        self.assertTrue(wait_for(lambda: self.sidecar.stat(
            "meshlet_http_downstream_cx_flood_end_total") == 1, 5))
        self.assertEqual(stat_with(self.sidecar, "meshlet_http_downstream_cx_flood_end_total",
                                   'outcome="drain_timeout"'), 1)

    def test_a_client_that_leaves_during_the_drain(self):
        sock = self.slow_request(self.port, b"/slow/3")
        sock.sendall(self.opened_and_reset(3, 11))
        sock.settimeout(5)
        self.assertEqual(goaway_fields(self.read_goaway_frame(sock)), (23, self.ENHANCE_YOUR_CALM))
        sock.close()
        self.assertTrue(wait_for(lambda: self.sidecar.stat(
            "meshlet_http_downstream_cx_flood_end_total") == 1, 5))
        self.assertEqual(stat_with(self.sidecar, "meshlet_http_downstream_cx_flood_end_total",
                                   'outcome="peer_closed"'), 1)

    @staticmethod
    def read_goaway_frame(sock):
        """Reads frames until a GOAWAY; its payload."""
        data = bytearray()
        while True:
            while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                length = int.from_bytes(data[:3], "big")
                kind, payload = data[3], bytes(data[9:9 + length])
                del data[:9 + length]
                if kind == GOAWAY:
                    return payload
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise AssertionError("closed before a GOAWAY")
            data += chunk


class Http1FloodTest(FloodTestCase):
    def test_pipelined_requests_from_a_client_that_does_not_read(self):
        request = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"
        flooder = Flooder(self.port)
        self.addCleanup(flooder.close)
        count = 300_000
        flooder.start(b"", request, count, stall_timeout=3)
        # The sidecar stops reading once its replies pass the high watermark: the client's
        # writes stall long before the last request.
        self.assertTrue(flooder.join(60), "the client's writes never stalled")
        self.assertIsInstance(flooder.error, socket.timeout)
        self.assertLess(flooder.sent, count)
        self.assert_rss_bounded()
        self.assert_served()
        # The connection is still good: a client that reads gets an answer to every request.
        flooder.sock.settimeout(10)
        received = bytearray()
        answer = b"hello from meshlet\n"
        while received.count(answer) < flooder.sent:
            data = flooder.sock.recv(1 << 20)
            self.assertTrue(data, f"closed after {received.count(answer)} answers")
            received += data


if __name__ == "__main__":
    base.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main()
