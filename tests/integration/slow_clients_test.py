"""Slow clients against the real sidecar binary.

Usage: slow_clients_test.py SIDECAR_BINARY [unittest args]

  SlowlorisTest  5000 connections (fewer if the descriptor limit is lower) that trickle request
                 heads, half HTTP/1.1 and half HTTP/2 (a HEADERS frame without END_HEADERS, then
                 CONTINUATION frames): each is closed by request_headers_timeout (408, or
                 GOAWAY), while a normal client on the same worker keeps being served; its
                 latency percentiles are printed and bounded loosely (the 10 ms figure is
                 tests/bench's to measure).
  BodyRateTest   request_body_timeout with min_request_body_bytes_per_second: a body trickled
                 slower gets 408 and is counted; the same body at speed, and a slow one that
                 keeps the rate, are served.
"""

import http.client
import os
import resource
import socket
import sys
import threading
import time
import unittest

import sidecar_test as base
from h2_frames import CONTINUATION, HEADERS, PREFACE, SETTINGS, frame
from sidecar_test import ROUTES, app_routes, config_yaml, free_port, http_listener, \
    static_cluster, wait_for

def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


class SlowlorisTest(base.SidecarTestCase):
    def test_slowloris(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        count = min(5000, (hard - 200) // 2)  # the sidecar needs as many
        port = free_port()
        listener = http_listener("http", port, route="local") + \
            "    http: {request_headers_timeout: 3s}\n"
        sidecar = self.start(config_yaml(listener, static_cluster("unused", free_port()), ROUTES),
                             concurrency=1)

        normal = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        self.addCleanup(normal.close)

        def timed_get():
            start = time.perf_counter()
            normal.request("GET", "/")
            response = normal.getresponse()
            body = response.read()
            self.assertEqual((response.status, body), (200, b"hello from meshlet\n"))
            return time.perf_counter() - start

        unloaded = [timed_get() for _ in range(500)]

        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for i in range(count):
            s = socket.socket()
            s.setblocking(True)
            s.connect(("127.0.0.1", port))
            if i % 2 == 0:
                s.sendall(b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: ")
            else:
                # :method GET, :scheme http, :path / from the static table; no END_HEADERS.
                s.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, 0, 1, b"\x82\x86\x84"))
            socks.append(s)
        opened = time.monotonic()
        # Every one accepted (and its protocol detected), the normal client's connection too.
        # Counted by the total, not the active gauge: on a loaded machine opening them all can
        # take longer than request_headers_timeout, and the first ones are then already closed.
        self.assertTrue(wait_for(
            lambda: sidecar.stat("meshlet_http_downstream_cx_total") >= count + 1, 30),
            f"only {sidecar.stat('meshlet_http_downstream_cx_total') - 1} of {count} accepted")

        # Trickle one byte (a CONTINUATION of one byte) per connection each second while the
        # normal client works; the sidecar ends them all after request_headers_timeout.
        stop = threading.Event()

        def trickle():
            while not stop.is_set():
                for i, s in enumerate(socks):
                    try:
                        s.send(b"x" if i % 2 == 0 else frame(CONTINUATION, 0, 1, b"\x41"))
                    except OSError:
                        pass
                stop.wait(1)

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        self.addCleanup(stop.set)
        loaded = []
        while time.monotonic() - opened < 2.5:
            loaded.append(timed_get())
        self.assertTrue(wait_for(
            lambda: sidecar.stat("meshlet_http_downstream_rq_header_timeout_total") >= count, 20),
            f"{sidecar.stat('meshlet_http_downstream_rq_header_timeout_total')} of {count} "
            "timed out")
        stop.set()
        elapsed = time.monotonic() - opened
        # Every slow connection was closed by the sidecar: 408 first on HTTP/1.1.
        closed = 0
        for i, s in enumerate(socks):
            s.settimeout(5)
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except (ConnectionResetError, socket.timeout):
                pass
            if i % 2 == 0:
                self.assertIn(b"408", data[:20])
            closed += 1
        self.assertEqual(closed, count)
        self.assertEqual(timed_get() > 0, True)
        p50 = percentile(unloaded, 50) * 1000
        p99_unloaded = percentile(unloaded, 99) * 1000
        p99 = percentile(loaded, 99) * 1000
        print(f"{self.id()}: {count} slow connections closed within {elapsed:.1f} s; normal "
              f"client p99 {p99_unloaded:.2f} ms unloaded, {p99:.2f} ms among them "
              f"({len(loaded)} requests), p50 {p50:.2f} ms", file=sys.stderr)
        self.assertLess(p99, 100)


class BodyReadingUpstream(base.TcpServer):
    """Answers each request with 200 once its whole body (content-length) has arrived."""

    def _serve(self, conn):
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(data) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                data = data[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


class BodyRateTest(base.SidecarTestCase):
    def setUp(self):
        super().setUp()
        self.upstream = BodyReadingUpstream()
        self.addCleanup(self.upstream.close)
        self.port = free_port()
        listener = http_listener("app", self.port) + \
            "    http: {request_body_timeout: 1s, min_request_body_bytes_per_second: 2000}\n"
        self.sidecar = self.start(config_yaml(listener, static_cluster("app", self.upstream.port),
                                              app_routes()))

    def post(self, chunks, interval):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        size = sum(len(c) for c in chunks)
        s.sendall(f"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: {size}\r\n\r\n".encode())
        try:
            for c in chunks:
                s.sendall(c)
                time.sleep(interval)
        except OSError:
            pass
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b" ", 2)[1] if data else b""

    def test_too_slow(self):
        # 100 bytes every 0.2 s: 500 B/s, far below 2000 B/s; 1 s + 1 s per 2000 bytes runs out
        # after about 1.3 s.
        start = time.monotonic()
        self.assertEqual(self.post([b"x" * 100] * 30, 0.2), b"408")
        self.assertLess(time.monotonic() - start, 4)
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rq_body_timeout_total"), 1)

    def test_fast_and_steady_bodies_are_served(self):
        self.assertEqual(self.post([b"x" * 100_000], 0), b"200")
        # 1000 bytes every 0.2 s (5000 B/s) for 2 s: longer than the 1 s grace, within the rate.
        self.assertEqual(self.post([b"x" * 1000] * 10, 0.2), b"200")
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rq_body_timeout_total"), 0)


if __name__ == "__main__":
    base.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main()
