"""Holds the sidecar binary to its memory and reload promises, measured from outside.

Usage: scale_test.py SIDECAR_BINARY [unittest args]

- Streaming: 1 GiB up and 1 GiB down through the sidecar (HTTP/1.1 with Content-Length and
  chunked bodies, HTTP/2 prior knowledge; to an HTTP/1.1 upstream, and over h2c to a second
  sidecar), with curl as the client and an upstream that never holds a body; the sidecar's peak
  RSS may rise by less than 16 MiB. A client that stops reading
  and an upstream that stops reading must not make the sidecar buffer either.
- Idle connections: 10 000 keep-alive HTTP/1.1 connections, each after one request, cost the
  sidecar a bounded number of bytes each, and it still serves new requests.
- Reload under load: steady h2load traffic while the route's cluster is switched back and forth
  with SIGHUP; not one request may fail, and traffic must follow the route.
- Idle memory: the figures docs/performance.md quotes, printed for 1 and 2 workers.

Memory is read from /proc/PID/status. The peak (VmHWM) is reset by writing "5" to
/proc/PID/clear_refs when the kernel allows it; otherwise the peak since start-up is compared with
the idle baseline, which only makes the check stricter.
"""

import os
import re
import resource
import selectors
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sidecar_test  # noqa: E402  (shared helpers: Sidecar, config builders)
from sidecar_test import (app_routes, config_yaml, free_port, http_listener,  # noqa: E402
                          static_cluster, wait_for)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

# The promise (design.md §3): streaming a 1 GiB body raises the sidecar's RSS by a few MiB. What
# it may legitimately hold per transfer is bounded by the watermarks and free lists: a connection
# stops reading when the other side holds more than 1 MiB unsent, and each thread caches at most
# 256 KiB of free 16 KiB blocks, plus the kernel-sized read and the codecs' own windows. Measured:
# 0.1-2.5 MiB (docs/performance.md). 16 MiB is that with a wide margin; a body that is buffered
# instead of streamed blows through it at once.
STREAM_PEAK_BUDGET = 16 * MiB


def proc_status(pid):
    """The memory lines of /proc/PID/status, in bytes (Threads as a count)."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Threads"):
                number = int(rest.split()[0])
                values[key] = number if key == "Threads" else number * KiB
    return values


def reset_peak(pid):
    """Resets VmHWM to the current RSS; False when the kernel does not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def raise_nofile(wanted):
    """Raises this process's open-file soft limit towards `wanted`; returns the new limit.

    Children inherit it, so the sidecar started afterwards gets the same limit (like
    `ulimit -n` in a shell)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _Reader:
    """Buffered reads from a socket: lines for heads and chunk sizes, counted discards for bodies.

    Never keeps more than one recv's worth of body bytes."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = bytearray()
        self.pos = 0

    def _fill(self):
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        data = self.conn.recv(MiB)
        if not data:
            raise EOFError
        self.buf += data

    def line(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                text = bytes(self.buf[self.pos:end])
                self.pos = end + 2
                return text
            if len(self.buf) - self.pos > 64 * KiB:
                raise ValueError("line too long")
            self._fill()

    def discard(self, n):
        """Reads and drops exactly n bytes; returns n."""
        left = n
        while left:
            available = len(self.buf) - self.pos
            if available == 0:
                self._fill()
                continue
            take = min(left, available)
            self.pos += take
            left -= take
        return n


class StreamingUpstream:
    """An HTTP/1.1 server (a thread per connection, keep-alive) that never holds a body.

    GET  /download/N       N zero bytes with Content-Length, written from one 1 MiB block.
    POST|PUT /upload...     reads the body (Content-Length or chunked, answering
                            `Expect: 100-continue`), counts it, answers with the count.
                            /upload?pause_ms=M first stops reading for M ms.
    anything else           200 with the upstream's name; counted in `hits`.
    """

    _ZEROS = memoryview(bytes(MiB))

    def __init__(self, name="app"):
        self.name = name
        self.hits = 0
        self.uploaded = []  # body sizes, one per upload
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.conns = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        reader = _Reader(conn)
        try:
            while True:
                method, target, _ = reader.line().decode().split(" ", 2)
                headers = {}
                while True:
                    line = reader.line()
                    if not line:
                        break
                    key, _, value = line.decode().partition(":")
                    headers[key.strip().lower()] = value.strip()
                if target.startswith("/download/"):
                    self._send_zeros(conn, int(target.rsplit("/", 1)[1]))
                elif method in ("POST", "PUT"):
                    match = re.search(r"pause_ms=(\d+)", target)
                    if match:
                        time.sleep(int(match.group(1)) / 1000)
                    if headers.get("expect", "").lower() == "100-continue":
                        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    size = self._read_body(reader, headers)
                    with self.lock:
                        self.uploaded.append(size)
                    self._reply(conn, f"{size}\n")
                else:
                    if "content-length" in headers:
                        reader.discard(int(headers["content-length"]))
                    with self.lock:
                        self.hits += 1
                    self._reply(conn, f"{self.name}\n")
        except (EOFError, OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()

    @staticmethod
    def _read_body(reader, headers):
        if headers.get("transfer-encoding", "").lower() == "chunked":
            total = 0
            while True:
                size = int(reader.line().split(b";")[0], 16)
                if size == 0:
                    while reader.line():  # trailers, then the empty line
                        pass
                    return total
                total += reader.discard(size)
                if reader.line():
                    raise ValueError("chunk not followed by CRLF")
        return reader.discard(int(headers.get("content-length", "0")))

    @staticmethod
    def _reply(conn, body):
        data = body.encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(data), data))

    def _send_zeros(self, conn, n):
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                     b"content-length: %d\r\n\r\n" % n)
        while n:
            chunk = self._ZEROS[:min(n, MiB)]
            conn.sendall(chunk)
            n -= len(chunk)

    def close(self):
        self.sock.close()
        with self.lock:
            for conn in list(self.conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def run_shell(command, timeout):
    r = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"{command!r} exited {r.returncode}: {r.stderr}")
    return r.stdout


class ScaleTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        # Run by hand (not under bazel, whose TEST_TMPDIR goes with the test), it is /tmp's.
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.sidecars = []
        self.upstreams = []

    def tearDown(self):
        for s in self.sidecars:
            s.stop()
        for u in self.upstreams:
            u.close()

    def upstream(self, name="app"):
        u = StreamingUpstream(name)
        self.upstreams.append(u)
        return u

    def start(self, yaml_text, *args, **kwargs):
        workdir = os.path.join(self.tmp, f"sidecar{len(self.sidecars)}")  # own config and log
        os.makedirs(workdir)
        s = sidecar_test.Sidecar(workdir, yaml_text, *args, **kwargs)
        self.sidecars.append(s)
        return s

    def http_sidecar(self, *clusters, route_cluster="app", concurrency=2):
        port = free_port()
        text = config_yaml(http_listener("outbound", port),
                           "".join(static_cluster(c.name, c.port) for c in clusters),
                           app_routes(route_cluster))
        return self.start(text, concurrency=concurrency), port


class StreamingTestCase(ScaleTestCase):
    """Transfers through self.sidecar (to self.url) while watching the peaks of self.watched."""

    def measure(self, transfer):
        """Runs transfer(); returns [(peak rise over idle RSS, idle RSS)] for each watched
        sidecar, and the seconds taken."""
        # One small request first, so lazily built per-worker state (pools, codecs, free lists)
        # is in the baseline: the check is about what a body costs, not first use.
        for flags in ([], ["--http2-prior-knowledge"]):
            sidecar_test.curl(*flags, f"{self.url}/warm")
        baselines = {}
        for s in self.watched:
            pid = s.proc.pid
            baselines[pid] = proc_status(pid)["VmRSS"]
            if not reset_peak(pid):
                baselines[pid] = min(baselines[pid], proc_status(pid)["VmHWM"])
        started = time.monotonic()
        transfer()
        elapsed = time.monotonic() - started
        rises = []
        for s in self.watched:
            self.assertIsNone(s.proc.poll(), s.log())
            rises.append((proc_status(s.proc.pid)["VmHWM"] - baselines[s.proc.pid],
                          baselines[s.proc.pid]))
        return rises, elapsed

    def check(self, label, transfer):
        rises, elapsed = self.measure(transfer)
        figures = "; ".join(f"idle RSS {baseline / MiB:.1f} MiB, peak rise {rise / MiB:.2f} MiB"
                            for rise, baseline in rises)
        print(f"\n  {label}: {figures}; {elapsed:.1f} s", file=sys.stderr)
        if any(sanitized(s.proc.pid) for s in self.watched):
            return  # the transfer was checked; RSS under a sanitizer means nothing
        for rise, _ in rises:
            self.assertLess(rise, STREAM_PEAK_BUDGET, label)

    def upload(self, curl_flags, path="/upload"):
        out = run_shell(f"head -c {GiB} /dev/zero | curl -sS --fail --max-time 120 "
                        f"{curl_flags} -o - -w ' %{{size_upload}}' {self.url}{path}", 150)
        received, sent = out.split()
        self.assertGreaterEqual(int(sent), GiB)  # curl counts chunked framing too
        self.assertEqual(int(received), GiB)  # what the upstream counted
        self.assertEqual(self.app.uploaded[-1], GiB)

    def download(self, curl_flags):
        out = run_shell(f"curl -sS --fail --max-time 120 {curl_flags} -o /dev/null "
                        f"-w '%{{size_download}}' {self.url}/download/{GiB}", 150)
        self.assertEqual(int(out), GiB)


class StreamingMemoryTest(StreamingTestCase):
    """1 GiB each way through the sidecar to an HTTP/1.1 upstream; its peak RSS rises by less
    than 16 MiB."""

    def setUp(self):
        super().setUp()
        self.app = self.upstream()
        self.sidecar, self.port = self.http_sidecar(self.app)
        self.url = f"http://127.0.0.1:{self.port}"
        self.watched = [self.sidecar]

    def test_http1_upload_content_length(self):
        # A body of known length from a pipe: curl sends it raw after Content-Length.
        self.check("HTTP/1.1 upload, Content-Length", lambda: self.upload(
            f"-T - -X POST -H 'Content-Length: {GiB}' -H 'Transfer-Encoding:' -H 'Expect:'"))

    def test_http1_upload_chunked(self):
        # Unknown length: chunked, and curl's `Expect: 100-continue` goes through as well.
        self.check("HTTP/1.1 upload, chunked", lambda: self.upload("-T - -X POST"))

    def test_http1_download(self):
        self.check("HTTP/1.1 download", lambda: self.download(""))

    def test_http2_upload(self):
        self.check("HTTP/2 upload", lambda: self.upload("--http2-prior-knowledge -T - -X POST"))

    def test_http2_download(self):
        self.check("HTTP/2 download", lambda: self.download("--http2-prior-knowledge"))

    def test_upstream_that_stops_reading(self):
        # The upstream reads nothing for 3 s while curl keeps sending as fast as it can: the
        # sidecar must stop reading from curl rather than queue the body.
        self.check("HTTP/1.1 upload, upstream paused 3 s", lambda: self.upload(
            f"-T - -X POST -H 'Content-Length: {GiB}' -H 'Transfer-Encoding:' -H 'Expect:'",
            path="/upload?pause_ms=3000"))

    def test_client_that_stops_reading(self):
        # The client reads 1 MiB, then nothing for 3 s, then the rest: meanwhile the upstream
        # would send as fast as it can.
        def transfer():
            conn = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
            conn.sendall(b"GET /download/%d HTTP/1.1\r\nhost: x\r\n\r\n" % GiB)
            reader = _Reader(conn)
            self.assertEqual(reader.line(), b"HTTP/1.1 200 OK")
            length = None
            while line := reader.line():
                key, _, value = line.decode().partition(":")
                if key.lower() == "content-length":
                    length = int(value)
            self.assertEqual(length, GiB)
            reader.discard(MiB)
            time.sleep(3)
            reader.discard(GiB - MiB)
            conn.close()

        self.check("HTTP/1.1 download, client paused 3 s", transfer)




class Http2UpstreamStreamingTest(StreamingTestCase):
    """The same 1 GiB transfers over an HTTP/2 upstream connection: the front sidecar's cluster
    speaks h2c to a second sidecar, which forwards to the HTTP/1.1 upstream. Both are watched."""

    def setUp(self):
        super().setUp()
        self.app = self.upstream()
        back, back_port = self.http_sidecar(self.app)
        port = free_port()
        front = self.start(config_yaml(
            http_listener("outbound", port),
            static_cluster("app", back_port, extra="    protocol: UPSTREAM_HTTP2\n"),
            app_routes()))
        self.url = f"http://127.0.0.1:{port}"
        self.watched = [front, back]

    def test_http1_to_http2_upload(self):
        self.check("HTTP/1.1 -> h2c upstream, upload", lambda: self.upload(
            f"-T - -X POST -H 'Content-Length: {GiB}' -H 'Transfer-Encoding:' -H 'Expect:'"))

    def test_http1_to_http2_download(self):
        self.check("HTTP/1.1 -> h2c upstream, download", lambda: self.download(""))

    def test_http2_to_http2_upload(self):
        self.check("h2c -> h2c upstream, upload",
                   lambda: self.upload("--http2-prior-knowledge -T - -X POST"))

    def test_http2_to_http2_download(self):
        self.check("h2c -> h2c upstream, download",
                   lambda: self.download("--http2-prior-knowledge"))

def sanitized(pid):
    """True when the process runs under a sanitizer, whose shadow memory and quarantine make RSS
    figures meaningless (bazel test --config=asan)."""
    with open(f"/proc/{pid}/maps") as f:
        return any("san" in os.path.basename(line.split()[-1]) for line in f if "/" in line)


def h2load(url, *flags, duration):
    """Runs h2load for `duration` seconds; returns its request and status-code counters."""
    r = subprocess.run(["h2load", "-D", str(duration), *flags, url], capture_output=True,
                       text=True, timeout=duration + 30)
    if r.returncode != 0:
        raise AssertionError(f"h2load {flags}: {r.stdout}{r.stderr}")
    requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout", r.stdout)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", r.stdout)
    if not requests or not codes:
        raise AssertionError("unexpected h2load output: " + r.stdout)
    names = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    result = dict(zip(names, map(int, requests.groups())))
    result.update(zip(("2xx", "3xx", "4xx", "5xx"), map(int, codes.groups())))
    return result


class IdleMemoryTest(ScaleTestCase):
    """The figures docs/performance.md quotes: an idle sidecar's memory, 1 and 2 workers."""

    # The target: an idle sidecar's own memory (RssAnon: heap, stacks, relocated data; not the
    # shared libraries' pages, which are shared with every other process using them) stays within
    # 2 MiB. Measured 1.3-1.4 MiB at start-up for 1 and 2 workers, fastbuild and opt.
    IDLE_ANON_BUDGET = 2 * MiB

    def check_idle(self, concurrency):
        app = self.upstream()
        sidecar, port = self.http_sidecar(app, concurrency=concurrency)
        pid = sidecar.proc.pid
        time.sleep(0.5)
        idle = proc_status(pid)
        # Then traffic on both codecs, then idle again: what stays is the per-thread caches
        # (free blocks, malloc arenas) and the upstream pools.
        url = f"http://127.0.0.1:{port}/"
        for flags in (["--h1", "-c", "8"], ["-c", "4", "-m", "8"]):
            result = h2load(url, *flags, duration=2)
            self.assertEqual(result["failed"], 0, result)
        sidecar_test.curl(url)
        time.sleep(0.5)
        after = proc_status(pid)
        for label, figures in (("at start-up", idle), ("after 4 s of traffic", after)):
            print(f"\n  {concurrency} worker(s), idle {label}: RssAnon "
                  f"{figures['RssAnon'] / KiB:.0f} KiB, VmRSS {figures['VmRSS'] / KiB:.0f} KiB, "
                  f"RssFile {figures['RssFile'] / KiB:.0f} KiB, threads {figures['Threads']}",
                  file=sys.stderr)
        if sanitized(pid):
            self.skipTest("sanitizer build: memory figures do not apply")
        self.assertLessEqual(idle["RssAnon"], self.IDLE_ANON_BUDGET)
        return idle, after

    def test_one_worker(self):
        self.check_idle(1)

    def test_two_workers(self):
        self.check_idle(2)


class ReloadUnderLoadTest(ScaleTestCase):
    """SIGHUP while h2load drives HTTP/1.1 and HTTP/2 traffic: zero failures, traffic moves."""

    SWAPS = 8
    # Long enough for the swaps (about 0.2 s each here) even on a loaded machine.
    LOAD_SECONDS = 8

    def config(self, port, target):
        return config_yaml(http_listener("outbound", port),
                           static_cluster("blue", self.blue.port) +
                           static_cluster("green", self.green.port),
                           app_routes(target))

    def test_route_swaps_under_load(self):
        self.blue, self.green = self.upstream("blue"), self.upstream("green")
        port = free_port()
        sidecar = self.start(self.config(port, "blue"))
        url = f"http://127.0.0.1:{port}/"
        results = {}
        loaders = [
            threading.Thread(target=lambda: results.__setitem__(
                "h1", h2load(url, "--h1", "-c", "8", duration=self.LOAD_SECONDS))),
            threading.Thread(target=lambda: results.__setitem__(
                "h2", h2load(url, "-c", "4", "-m", "8", duration=self.LOAD_SECONDS))),
        ]
        for t in loaders:
            t.start()
        # At most this many requests can be between route selection and the upstream when a
        # swap lands: 8 HTTP/1.1 connections plus 4 HTTP/2 connections x 8 streams.
        in_flight = 8 + 4 * 8
        upstreams = {"blue": self.blue, "green": self.green}
        try:
            self.assertTrue(wait_for(lambda: self.blue.hits > 100, timeout=5))
            for swap in range(1, self.SWAPS + 1):
                target = "green" if swap % 2 else "blue"
                other = upstreams["blue" if target == "green" else "green"]
                path = sidecar.config + ".new"
                with open(path, "w") as f:
                    f.write(self.config(port, target))
                os.replace(path, sidecar.config)  # the file is never seen half-written
                sidecar.proc.send_signal(signal.SIGHUP)
                self.assertTrue(wait_for(
                    lambda: sidecar.stat("meshlet_worker_config_updates_total") == 2 * (swap + 1)))
                # Once both workers run the new snapshot, only requests routed before it may
                # still reach the old target; every new one goes to the new target.
                before_other, before_target = other.hits, upstreams[target].hits
                self.assertTrue(wait_for(lambda: upstreams[target].hits - before_target >= 200,
                                         timeout=5), (swap, target, "traffic did not move"))
                self.assertLessEqual(other.hits - before_other, in_flight, (swap, target))
            self.assertTrue(all(t.is_alive() for t in loaders), "load ended before the swaps")
        finally:
            for t in loaders:
                t.join()
        self.assertEqual(sorted(sidecar.stat_lines("meshlet_config_reloads_total")),
                         ['meshlet_config_reloads_total{result="failure"}: 0',
                          f'meshlet_config_reloads_total{{result="success"}}: {self.SWAPS}'])
        self.assertEqual(sorted(results), ["h1", "h2"], "an h2load run failed")
        for protocol, result in results.items():
            print(f"\n  {protocol}: {result}", file=sys.stderr)
            self.assertGreater(result["done"], 1000, protocol)
            self.assertEqual(result["succeeded"], result["done"], (protocol, result))
            self.assertEqual((result["failed"], result["errored"], result["timeout"]), (0, 0, 0),
                             (protocol, result))
            # Status codes include responses whose body was still arriving when h2load's time
            # ran out (started but not done): at least every finished request, nothing but 2xx.
            self.assertGreaterEqual(result["2xx"], result["done"], (protocol, result))
            self.assertEqual((result["3xx"], result["4xx"], result["5xx"]), (0, 0, 0),
                             (protocol, result))
        # The sidecar's own account agrees: every response it sent was a 2xx.
        classes = {line.split('code_class="')[1].split('"')[0]: int(line.rpartition(": ")[2])
                   for line in sidecar.stat_lines("meshlet_http_downstream_rq_total")}
        self.assertGreater(classes.get("2xx", 0), 0, classes)
        self.assertEqual({c: n for c, n in classes.items() if c != "2xx" and n}, {}, classes)


class IdleConnectionsTest(ScaleTestCase):
    """10 000 idle keep-alive HTTP/1.1 connections, each after one request."""

    CONNECTIONS = 10_000
    BATCH = 500
    # Measured on a 2-core machine: 5090-5200 bytes of RSS per idle connection, fastbuild and opt
    # (what they are: docs/performance.md). 10 KiB leaves twice that for allocator and kernel
    # differences, and is the target. A held 16 KiB read block would alone exceed it, so
    # the limit also proves that an idle connection hands its read block back
    # (Buffer::Commit(0)); so would a per-connection buffer or codec state growing by half.
    PER_CONNECTION_BUDGET = 10 * KiB

    def open_batch(self, port, count):
        """Opens `count` connections, sends one request on each, reads each full response."""
        request = b"GET /idle HTTP/1.1\r\nhost: scale\r\n\r\n"
        sel = selectors.DefaultSelector()
        conns = []
        for _ in range(count):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            sel.register(c, selectors.EVENT_WRITE, bytearray())
            conns.append(c)
        pending = count
        deadline = time.monotonic() + 30
        while pending:
            self.assertLess(time.monotonic(), deadline, f"{pending} connections not answered")
            for key, events in sel.select(timeout=1):
                c, got = key.fileobj, key.data
                if events & selectors.EVENT_WRITE:
                    c.sendall(request)
                    sel.modify(c, selectors.EVENT_READ, got)
                    continue
                data = c.recv(4096)
                self.assertTrue(data, "connection closed before its response")
                got += data
                head, sep, body = bytes(got).partition(b"\r\n\r\n")
                if sep:
                    length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
                    if len(body) >= length:
                        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
                        sel.unregister(c)
                        pending -= 1
        sel.close()
        return conns

    def test_ten_thousand_idle_connections(self):
        limit = raise_nofile(self.CONNECTIONS + 4096)
        if limit < self.CONNECTIONS + 2048:
            self.skipTest(f"open-file limit {limit} is too low for {self.CONNECTIONS} connections")
        app = self.upstream()
        sidecar, port = self.http_sidecar(app)
        pid = sidecar.proc.pid
        conns = []
        try:
            # Warm up with one batch opened and closed: pools, free lists and arenas reach their
            # working size, so the baseline is a sidecar that has already served this load.
            for c in self.open_batch(port, self.BATCH):
                c.close()
            self.assertTrue(wait_for(lambda: sidecar.stat("meshlet_downstream_cx_active") == 0))
            time.sleep(0.5)
            baseline = proc_status(pid)
            started = time.monotonic()
            while len(conns) < self.CONNECTIONS:
                conns += self.open_batch(port, min(self.BATCH, self.CONNECTIONS - len(conns)))
            opened = time.monotonic() - started
            self.assertTrue(wait_for(
                lambda: sidecar.stat("meshlet_downstream_cx_active") == self.CONNECTIONS))
            time.sleep(1)
            held = proc_status(pid)
            # Still serving while they are held.
            self.assertEqual(sidecar_test.curl(f"http://127.0.0.1:{port}/new"), "app\n")
            self.assertEqual(sidecar_test.curl("--http2-prior-knowledge",
                                               f"http://127.0.0.1:{port}/new"), "app\n")
            self.assertIsNone(sidecar.proc.poll())
            per_rss = (held["VmRSS"] - baseline["VmRSS"]) / self.CONNECTIONS
            per_anon = (held["RssAnon"] - baseline["RssAnon"]) / self.CONNECTIONS
            print(f"\n  {self.CONNECTIONS} idle connections opened in {opened:.1f} s: VmRSS "
                  f"{baseline['VmRSS'] / KiB:.0f} -> {held['VmRSS'] / KiB:.0f} KiB, RssAnon "
                  f"{baseline['RssAnon'] / KiB:.0f} -> {held['RssAnon'] / KiB:.0f} KiB; "
                  f"{per_rss:.0f} B/connection (VmRSS), {per_anon:.0f} B/connection (RssAnon)",
                  file=sys.stderr)
            if not sanitized(pid):
                self.assertLess(per_rss, self.PER_CONNECTION_BUDGET)
        finally:
            for c in conns:
                c.close()
        self.assertTrue(wait_for(lambda: sidecar.stat("meshlet_downstream_cx_active") == 0,
                                 timeout=10))

if __name__ == "__main__":
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
