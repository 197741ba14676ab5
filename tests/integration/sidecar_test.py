"""Runs the real sidecar binary with generated configurations on 127.0.0.1.

Usage: sidecar_test.py SIDECAR_BINARY [unittest args]

Covers the command line and configuration errors, the admin API (checked with promtool and a
JSON parser), the TCP proxy (10 MB each way, byte-identical), the spread of connections over
workers, configuration reload on SIGHUP, draining on SIGTERM and POST /quitquitquit.
"""

import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import unittest.mock
import urllib.error
import urllib.request

from ports import free_port  # noqa: F401  (re-exported for the tests)

SIDECAR = None  # set from argv
# Built with a sanitizer (./dev test --asan or --tsan): its allocator keeps freed memory in
# quarantine, so RSS says little about the sidecar's own allocations.
SANITIZED = "ASAN_OPTIONS" in os.environ or "TSAN_OPTIONS" in os.environ


class TcpServer:
    """A TCP server on 127.0.0.1 whose connections each get a thread running _serve(conn), which
    subclasses define. `accepted` counts connections; close() stops accepting."""

    def __init__(self, backlog=256):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        raise NotImplementedError

    def close(self):
        self.sock.close()


class EchoServer(TcpServer):
    """A TCP echo server on a thread; echoes until the client half-closes, then half-closes."""

    def __init__(self):
        self.received = 0  # bytes, over all connections
        super().__init__()

    def _serve(self, conn):
        try:
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                self.received += len(data)
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()


def echo_round_trip(port, payload):
    """Sends payload, half-closes, returns everything read until EOF."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=20)
    received = bytearray()

    def reader():
        while True:
            data = conn.recv(1 << 20)
            if not data:
                return
            received.extend(data)

    t = threading.Thread(target=reader)
    t.start()
    conn.sendall(payload)
    conn.shutdown(socket.SHUT_WR)
    t.join(timeout=20)
    conn.close()
    return bytes(received)


def config_yaml(listeners, clusters, routes=""):
    text = "static_resources:\n  listeners:\n" + listeners + "  clusters:\n" + clusters
    if routes:
        text += "  routes:\n" + routes
    return text


def tcp_listener(name, port, cluster, direction="OUTBOUND", protocol="PROTOCOL_TCP", extra=""):
    return (f"  - name: {name}\n    address: 127.0.0.1:{port}\n    direction: {direction}\n"
            f"    protocol: {protocol}\n    tcp_cluster: {cluster}\n{extra}")


def static_cluster(name, *ports, extra=""):
    text = f"  - name: {name}\n    connect_timeout: 250ms\n{extra}    load_assignment:\n      endpoints:\n"
    for port in ports:
        text += f"      - address: 127.0.0.1:{port}\n"
    return text


ROUTES = """  - name: local
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - match: {prefix: /}
        direct_response: {status: 200, body: "hello from meshlet\\n"}
"""


def big_body(size):
    """The body HttpUpstream answers /big/SIZE with."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


class HttpUpstream:
    """An HTTP/1.1 server on a thread; answers every GET with the path and request headers
    (/slow after half a second, /slow/N after N seconds). `paths` lists the GETs as they
    arrive."""

    def __init__(self, name="app", host="127.0.0.1", port=0):
        upstream_name = name
        self.paths = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body go out in two writes; without this, Nagle holds the body
                # until the proxy's delayed ACK (40 ms per request).
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):
                paths.append(self.path)
                if self.path.startswith("/slow"):
                    time.sleep(float(self.path[len("/slow/"):] or 0.5)
                               if self.path.startswith("/slow/") else 0.5)
                if self.path.startswith("/big/"):
                    # /big/N: N bytes of big_body(N), written in pieces as a client takes them.
                    size = int(self.path[len("/big/"):])
                    self.send_response(200)
                    self.send_header("content-type", "application/octet-stream")
                    self.send_header("content-length", str(size))
                    self.end_headers()
                    data = big_body(size)
                    for i in range(0, size, 1 << 20):
                        self.wfile.write(data[i:i + (1 << 20)])
                    return
                body = json.dumps({"upstream": upstream_name, "path": self.path,
                                   "headers": {k.lower(): v for k, v in self.headers.items()}})
                data = body.encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            # The default accept backlog (5) overflows when a load test opens tens of upstream
            # connections at once; the proxy would then see connect failures from the test app.
            request_queue_size = 256
            daemon_threads = True

        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def http_listener(name, port, protocol="PROTOCOL_HTTP", direction="OUTBOUND", route="app-routes"):
    return (f"  - name: {name}\n    address: 127.0.0.1:{port}\n    direction: {direction}\n"
            f"    protocol: {protocol}\n    route_config_name: {route}\n")


def app_routes(cluster="app", name="app-routes", route_extra=""):
    """Every request to `cluster`; `route_extra` adds fields to the route action
    (", retry_policy: {num_retries: 2}")."""
    return f"""  - name: {name}
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - match: {{prefix: /}}
        route: {{cluster: {cluster}{route_extra}}}
"""


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"curl {args}: {r.stderr}")
    return r.stdout


class Sidecar:
    """The sidecar binary with `yaml_text` as its configuration file. Returns once /ready answers
    200, or, with wait_ready=False, once the admin port answers at all."""

    def __init__(self, workdir, yaml_text, *extra_args, concurrency=2, drain_time="5s",
                 wait_ready=True, binary=None):
        self.workdir = workdir
        self.config = os.path.join(workdir, "sidecar.yaml")
        with open(self.config, "w") as f:
            f.write(yaml_text)
        self.admin_port = free_port()
        self.stderr_path = os.path.join(workdir, "sidecar.stderr")
        self.stderr = open(self.stderr_path, "w")
        # The command line, for a process that replaces this one (hand_over_test).
        self.argv = [binary or SIDECAR, "--config", self.config,
                     f"--admin-address=127.0.0.1:{self.admin_port}",
                     f"--concurrency={concurrency}", f"--drain-time={drain_time}", *extra_args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited with {self.proc.returncode}: {self.log()}")
            try:
                if self.get("/ready")[0] == 200 or not wait_ready:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        # Not left running behind a failed test.
        self.proc.kill()
        self.proc.wait()
        self.stderr.close()
        raise AssertionError("sidecar did not become ready: " + self.log())

    def log(self):
        if self.stderr.closed:
            with open(self.stderr_path) as f:
                return f.read()
        self.stderr.flush()
        with open(self.stderr_path) as f:
            return f.read()

    def request(self, method, path, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read().decode(), resp.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.headers

    def get(self, path):
        return self.request("GET", path)

    def post(self, path):
        return self.request("POST", path)

    def stat(self, name):
        """Sum of every series of `name` (text format lines `name{labels}: value`)."""
        _, body, _ = self.get("/stats?filter=" + name)
        total = 0
        for line in body.splitlines():
            series, _, value = line.rpartition(": ")
            if series.split("{")[0] == name:
                total += int(value)
        return total

    def stat_lines(self, name):
        return [l for l in self.get("/stats?filter=" + name)[1].splitlines()
                if l.split("{")[0] == name]

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.stderr.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.stderr.closed:
            self.stderr.close()


def stat_series(sidecar, name):
    """{labels-text: value} for every series of `name`."""
    out = {}
    for line in sidecar.stat_lines(name):
        series, _, value = line.rpartition(": ")
        labels = series[len(name):]
        out[labels] = int(value)
    return out


def stat_with(sidecar, name, *label_parts):
    """The sum of the series of `name` whose labels hold every part (`'kind="late"'`)."""
    return sum(v for labels, v in stat_series(sidecar, name).items()
               if all(part in labels for part in label_parts))


def rss_kib(pid):
    """Resident memory of process `pid` in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_for(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class SidecarTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.echo = EchoServer()
        self.sidecars = []

    def tearDown(self):
        for s in self.sidecars:
            s.stop()
        self.echo.close()

    def start(self, yaml_text, *args, **kwargs):
        s = Sidecar(self.tmp, yaml_text, *args, **kwargs)
        self.sidecars.append(s)
        return s


class AppProbeTest(SidecarTestCase):
    """--app-probe: the kubelet's HTTP probe, rewritten by injection to the sidecar's
    --prometheus-address, answered with the app's own status on loopback."""

    def test_app_probes_through_the_sidecar(self):
        app = HttpUpstream("probe-app")
        self.addCleanup(app.close)
        metrics, dead = free_port(), free_port()
        sidecar = self.start(
            config_yaml(tcp_listener("tcp", free_port(), "echo"),
                        static_cluster("echo", self.echo.port)),
            f"--prometheus-address=127.0.0.1:{metrics}",
            f"--app-probe=/app-health/web/readyz={app.port}/ready?full=1",
            f"--app-probe=/app-health/web/livez={dead}/alive")

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}{path}", timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()
        status, body = get("/app-health/web/readyz")
        self.assertEqual((status, body), (200, f"app probe {app.port}/ready?full=1: HTTP 200\n"))
        self.assertEqual(app.paths, ["/ready?full=1"])
        # The app is not listening: 503, saying why.
        status, body = get("/app-health/web/livez")
        self.assertEqual(status, 503)
        self.assertIn(f"app probe {dead}/alive: connect_failed", body)
        # Only the listed paths: nothing else on loopback is reachable this way.
        self.assertEqual(get("/app-health/web/other")[0], 404)
        self.assertEqual(get("/ready")[0], 200)
        stats = sidecar.get("/stats?filter=meshlet_app_probes_total")[1]
        self.assertIn('meshlet_app_probes_total{result="ok"}: 1', stats)
        self.assertIn('meshlet_app_probes_total{result="failed"}: 1', stats)


class CommandLineTest(unittest.TestCase):
    def test_app_probe_needs_the_prometheus_listener(self):
        r = subprocess.run([SIDECAR, "--config=x.yaml", "--app-probe=/app-health/a/b=80/x"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--app-probe needs --prometheus-address", r.stderr)
        r = subprocess.run([SIDECAR, "--config=x.yaml", "--app-probe=/elsewhere=80/x"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("must be /app-health/...=PORT/PATH", r.stderr)

    def run_sidecar(self, *args):
        return subprocess.run([SIDECAR, *args], capture_output=True, text=True, timeout=10)

    def test_help(self):
        r = self.run_sidecar("--help")
        self.assertEqual(r.returncode, 0)
        for flag in ("--config", "--concurrency", "--admin-address", "--log-level",
                     "--drain-time", "--access-log"):
            self.assertIn(flag, r.stdout)

    def test_missing_config_flag(self):
        r = self.run_sidecar()
        self.assertEqual(r.returncode, 2)
        self.assertIn("--config is required", r.stderr)

    def test_bad_flag_value(self):
        r = self.run_sidecar("--config=x.yaml", "--concurrency=zero")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--concurrency", r.stderr)

    def test_unknown_field_names_the_field(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=os.environ.get("TEST_TMPDIR"),
                                         delete=False) as f:
            f.write("static_resources:\n  listeners:\n  - name: x\n    adress: 127.0.0.1:1\n")
        r = self.run_sidecar("--config", f.name)
        self.assertEqual(r.returncode, 1)
        self.assertIn("static_resources.listeners[0].adress: unknown field", r.stderr)
        self.assertIn(f.name + ":4:", r.stderr)

    def test_invalid_reference_names_the_resource(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=os.environ.get("TEST_TMPDIR"),
                                         delete=False) as f:
            f.write(config_yaml(tcp_listener("db", free_port(), "missing"),
                                static_cluster("other", 1)))
        r = self.run_sidecar("--config", f.name)
        self.assertEqual(r.returncode, 1)
        self.assertIn('listener "db": tcp_cluster "missing" names no Cluster', r.stderr)

    def test_missing_file(self):
        r = self.run_sidecar("--config", "/nonexistent/sidecar.yaml")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/sidecar.yaml", r.stderr)

    def test_port_in_use(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            with tempfile.NamedTemporaryFile("w", suffix=".yaml",
                                             dir=os.environ.get("TEST_TMPDIR"),
                                             delete=False) as f:
                f.write(config_yaml(tcp_listener("db", port, "c"), static_cluster("c", 1)))
            r = self.run_sidecar("--config", f.name, f"--admin-address=127.0.0.1:{free_port()}")
        self.assertEqual(r.returncode, 1)
        self.assertIn('listener "db"', r.stderr)


class AdminTest(SidecarTestCase):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.sidecar = self.start(config_yaml(
            tcp_listener("tcp", self.port, "echo"), static_cluster("echo", self.echo.port)))

    def test_ready(self):
        status, body, _ = self.sidecar.get("/ready")
        self.assertEqual((status, body), (200, "LIVE\n"))

    def test_prometheus_passes_promtool(self):
        echo_round_trip(self.port, b"x" * 1000)
        status, body, headers = self.sidecar.get("/stats/prometheus")
        self.assertEqual(status, 200)
        self.assertIn("version=0.0.4", headers["Content-Type"])
        self.assertIn('meshlet_tcp_proxy_received_bytes_total{listener="tcp"} 1000', body)
        check = subprocess.run(["promtool", "check", "metrics"], input=body,
                               capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_stats_filter(self):
        _, body, _ = self.sidecar.get("/stats?filter=meshlet_worker_cx_accepted")
        lines = body.splitlines()
        self.assertTrue(lines)
        self.assertTrue(all(l.startswith("meshlet_worker_cx_accepted_total") for l in lines))
        status, body, _ = self.sidecar.get("/stats?format=json")
        self.assertEqual(status, 200)
        json.loads(body)

    def test_config_dump_is_json(self):
        status, body, headers = self.sidecar.get("/config_dump")
        self.assertEqual(status, 200)
        self.assertIn("application/json", headers["Content-Type"])
        self.assertIn("echo", json.dumps(json.loads(body)))

    def test_clusters_and_listeners(self):
        clusters = json.loads(self.sidecar.get("/clusters")[1])
        self.assertEqual(clusters["workers_answered"], 2)
        [cluster] = clusters["clusters"]
        self.assertEqual(cluster["name"], "echo")
        [host] = cluster["hosts"]
        self.assertEqual(host["address"], f"127.0.0.1:{self.echo.port}")
        self.assertTrue(host["healthy"])
        self.assertEqual(host["active_requests"], 0)
        listeners = json.loads(self.sidecar.get("/listeners")[1])
        [listener] = listeners["listeners"]
        self.assertEqual(listener["name"], "tcp")
        self.assertEqual(listener["bound_addresses"], [f"127.0.0.1:{self.port}"])
        self.assertTrue(listener["accepting"])

    def test_logging(self):
        self.assertEqual(self.sidecar.get("/logging")[1], "level: info\n")
        self.assertEqual(self.sidecar.post("/logging?level=debug"), (200, "level: debug\n",
                                                                     unittest.mock.ANY))
        self.assertEqual(self.sidecar.get("/logging")[1], "level: debug\n")
        self.assertEqual(self.sidecar.post("/logging?level=loud")[0], 400)

    def test_mutating_endpoints_refuse_get(self):
        for path in ("/quitquitquit", "/drain"):
            status, _, headers = self.sidecar.get(path)
            self.assertEqual(status, 405, path)
            self.assertEqual(headers["Allow"], "POST")
        self.assertEqual(self.sidecar.get("/ready")[0], 200)  # still running, not draining

    def test_unknown_path_lists_endpoints(self):
        status, body, _ = self.sidecar.get("/nope")
        self.assertEqual(status, 404)
        for path in ("/ready", "/stats/prometheus", "/config_dump", "/quitquitquit"):
            self.assertIn(path, body)

    def test_web_pages_on_other_names_and_origins_are_refused(self):
        # DNS rebinding: a page on the attacker's name, which now resolves to 127.0.0.1.
        rebinding = {"Host": f"rebind.example:{self.sidecar.admin_port}"}
        status, body, _ = self.sidecar.request("GET", "/config_dump", rebinding)
        self.assertEqual(status, 403, body)
        self.assertIn("not for rebind.example", body)
        # A page of another origin posting a form.
        form = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
        status, body, _ = self.sidecar.request("POST", "/quitquitquit", form)
        self.assertEqual(status, 403, body)
        self.assertEqual(self.sidecar.get("/ready")[0], 200)
        self.assertEqual(self.sidecar.stat("meshlet_admin_host_refused_total"), 1)
        self.assertEqual(self.sidecar.stat("meshlet_admin_cross_site_refused_total"), 1)
        # A name the operator lists.
        metrics = free_port()
        named = self.start(config_yaml(tcp_listener("tcp", free_port(), "echo"),
                                       static_cluster("echo", self.echo.port)),
                           "--admin-host=sidecar.test", f"--prometheus-address=127.0.0.1:{metrics}")
        self.assertEqual(named.request("GET", "/ready",
                                       {"Host": f"sidecar.test:{named.admin_port}"})[0], 200)
        self.assertEqual(named.request("GET", "/ready", {"Host": "other.test"})[0], 403)
        # The metrics port is scraped under any name.
        scrape = urllib.request.Request(f"http://127.0.0.1:{metrics}/stats/prometheus",
                                        headers={"Host": f"web-1.pods:{metrics}"})
        with urllib.request.urlopen(scrape, timeout=5) as resp:
            self.assertEqual(resp.status, 200)
            self.assertIn(b"meshlet_admin_host_refused_total", resp.read())

    def test_quitquitquit_exits_zero(self):
        self.assertEqual(self.sidecar.post("/quitquitquit")[0], 200)
        self.assertEqual(self.sidecar.wait_exit(10), 0)


class TcpProxyTest(SidecarTestCase):
    def test_ten_megabytes_each_way(self):
        tcp_port, auto_port = free_port(), free_port()
        listeners = (tcp_listener("tcp", tcp_port, "echo") +
                     tcp_listener("auto", auto_port, "echo", protocol="PROTOCOL_AUTO",
                                  extra="    route_config_name: local\n"
                                        "    detect_timeout: 200ms\n"))
        log_path = os.path.join(self.tmp, "access.log")
        sidecar = self.start(config_yaml(listeners, static_cluster("echo", self.echo.port),
                                         ROUTES), f"--access-log={log_path}")
        payload = os.urandom(10 * 1024 * 1024)
        for port in (tcp_port, auto_port):
            got = echo_round_trip(port, payload)
            self.assertEqual(len(got), len(payload), port)
            self.assertTrue(got == payload, port)
        self.assertEqual(sidecar.stat("meshlet_tcp_proxy_received_bytes_total"), 2 * len(payload))
        self.assertEqual(sidecar.stat("meshlet_tcp_proxy_sent_bytes_total"), 2 * len(payload))
        self.assertTrue(wait_for(lambda: sidecar.stat("meshlet_tcp_proxy_cx_active") == 0))
        # Paths with their queries: for the proxy's own user only (created 0600).
        self.assertEqual(os.stat(log_path).st_mode & 0o077, 0, oct(os.stat(log_path).st_mode))
        with open(log_path) as f:
            lines = [json.loads(l) for l in f]
        self.assertEqual(sorted(l["listener"] for l in lines), ["auto", "tcp"])
        for line in lines:
            self.assertEqual(line["bytes_received"], len(payload))
            self.assertEqual(line["bytes_sent"], len(payload))
            self.assertEqual(line["upstream_host"], f"127.0.0.1:{self.echo.port}")
            self.assertEqual(line["failure"], "")
            # 10 MiB each way took some time; both units agree.
            self.assertGreater(line["duration_us"], 0)
            self.assertEqual(line["duration_ms"], line["duration_us"] // 1000)

    def test_idle_connection_is_closed_after_tcp_idle_timeout(self):
        port = free_port()
        log_path = os.path.join(self.tmp, "access.log")
        sidecar = self.start(config_yaml(
            tcp_listener("tcp", port, "echo", extra="    tcp_idle_timeout: 300ms\n"),
            static_cluster("echo", self.echo.port)), f"--access-log={log_path}")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            # Bytes every 100 ms keep it open for three idle timeouts and more.
            for i in range(10):
                time.sleep(0.1)
                conn.sendall(b"%d" % i)
                self.assertEqual(conn.recv(10), b"%d" % i)
            quiet_from = time.time()  # the last byte moved just before
            self.assertEqual(conn.recv(10), b"")  # then the sidecar closes it
            quiet = time.time() - quiet_from
        self.assertGreater(quiet, 0.25)
        self.assertLess(quiet, 5)
        self.assertEqual(sidecar.stat("meshlet_tcp_proxy_idle_timeout_total"), 1)
        self.assertTrue(wait_for(lambda: os.path.exists(log_path) and os.path.getsize(log_path)))
        with open(log_path) as f:
            line = json.loads(f.readline())
        self.assertEqual(line["failure"], "idle_timeout")
        self.assertEqual(line["bytes_received"], 10)

    def test_server_first_protocol_under_auto(self):
        # A client that waits for the server to speak: AUTO gives up detecting and proxies.
        port = free_port()
        sidecar = self.start(config_yaml(
            tcp_listener("auto", port, "echo", protocol="PROTOCOL_AUTO",
                         extra="    route_config_name: local\n    detect_timeout: 100ms\n"),
            static_cluster("echo", self.echo.port), ROUTES))
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.assertTrue(wait_for(lambda: sidecar.stat("meshlet_tcp_proxy_cx_total") == 1))
        conn.sendall(b"\x00\x01binary")
        self.assertEqual(conn.recv(100), b"\x00\x01binary")
        conn.close()

    def test_connect_failure_closes_downstream(self):
        port = free_port()
        sidecar = self.start(config_yaml(tcp_listener("tcp", port, "dead"),
                                         static_cluster("dead", free_port())))
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(b"hello")
        # Closed with nothing sent back: a FIN, or a reset when the sidecar closed before it had
        # read "hello" (the kernel resets a socket closed with unread bytes).
        try:
            answer = conn.recv(100)
        except ConnectionResetError:
            answer = b""
        self.assertEqual(answer, b"")
        conn.close()
        self.assertTrue(wait_for(lambda: sidecar.stat("meshlet_tcp_proxy_connect_fail_total") == 1))
        clusters = json.loads(sidecar.get("/clusters")[1])
        self.assertEqual(clusters["clusters"][0]["hosts"][0]["cx_connect_fail"], 1)

    def test_tls_cluster_without_trust_bundle_is_refused(self):
        # Upstream TLS needs something to verify the upstream with; /dev/null holds no CA.
        port = free_port()
        path = os.path.join(self.tmp, "tls.yaml")
        with open(path, "w") as f:
            f.write(config_yaml(
                tcp_listener("tcp", port, "secure"),
                static_cluster("secure", self.echo.port,
                               extra="    tls: {enabled: true, ca_file: /dev/null, sni: localhost}\n")))
        r = subprocess.run([SIDECAR, "--config", path], capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn('cluster "secure": tls: no trust bundle', r.stderr)

    def test_tls_cluster_to_a_plaintext_upstream_fails_closed(self):
        # The handshake fails against a server that does not speak TLS: a connect failure, for
        # the TCP proxy and for HTTP, and never a plaintext byte of the request upstream.
        ca = os.path.join(self.tmp, "ca.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                        os.path.join(self.tmp, "ca.key"), "-subj", "/CN=test-ca", "-days", "1",
                        "-out", ca], check=True, capture_output=True)
        tcp_port, http_port = free_port(), free_port()
        tls = f"    tls: {{enabled: true, ca_file: {ca}, sni: localhost}}\n"
        sidecar = self.start(config_yaml(
            tcp_listener("tcp", tcp_port, "secure") + http_listener("outbound", http_port),
            static_cluster("secure", self.echo.port, extra=tls)
            + static_cluster("app", self.echo.port, extra=tls), app_routes()),
            "--access-log=" + os.path.join(self.tmp, "access.log"))
        conn = socket.create_connection(("127.0.0.1", tcp_port), timeout=5)
        conn.sendall(b"secret")
        try:
            self.assertEqual(conn.recv(100), b"")  # closed (or reset: "secret" was unread)
        except ConnectionResetError:
            pass
        conn.close()
        self.assertTrue(wait_for(lambda: sidecar.stat("meshlet_tcp_proxy_connect_fail_total") == 1))
        # The line is written when both sides have closed, which may be after the count.
        log_path = os.path.join(self.tmp, "access.log")

        def first_line():
            if not os.path.exists(log_path):
                return ""
            with open(log_path) as f:
                line = f.readline()
            return line if line.endswith("\n") else ""
        self.assertTrue(wait_for(first_line))
        self.assertTrue(json.loads(first_line())["failure"].startswith("upstream_"))
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://127.0.0.1:{http_port}/"], capture_output=True, text=True)
        self.assertEqual(r.stdout, "503")
        self.assertEqual(sidecar.get("/ready")[0], 200)

    def test_max_connections(self):
        port = free_port()
        sidecar = self.start(config_yaml(
            tcp_listener("tcp", port, "echo", extra="    max_connections: 2\n"),
            static_cluster("echo", self.echo.port)))
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        for c in held:
            c.sendall(b"ping")
            self.assertEqual(c.recv(10), b"ping")
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.assertEqual(extra.recv(10), b"")  # refused by closing
        extra.close()
        self.assertEqual(sidecar.stat_lines("meshlet_downstream_cx_rejected_total").count(
            'meshlet_downstream_cx_rejected_total{listener="tcp",reason="overflow"}: 1'), 1)
        for c in held:
            c.close()

    def test_both_workers_accept(self):
        port = free_port()
        sidecar = self.start(config_yaml(tcp_listener("tcp", port, "echo"),
                                         static_cluster("echo", self.echo.port)))
        for _ in range(50):
            self.assertEqual(echo_round_trip(port, b"ping"), b"ping")
        per_worker = {}
        for line in sidecar.stat_lines("meshlet_worker_cx_accepted_total"):
            series, _, value = line.rpartition(": ")
            per_worker[series] = int(value)
        self.assertEqual(sum(per_worker.values()), 50)
        self.assertEqual(len(per_worker), 2, per_worker)
        self.assertTrue(all(v > 0 for v in per_worker.values()), per_worker)


class ReloadTest(SidecarTestCase):
    def test_sighup_applies_a_new_config_without_breaking_connections(self):
        old_port, new_port = free_port(), free_port()
        second = EchoServer()
        try:
            sidecar = self.start(config_yaml(tcp_listener("a", old_port, "echo"),
                                             static_cluster("echo", self.echo.port)))
            # A connection open across the change keeps working.
            held = socket.create_connection(("127.0.0.1", old_port), timeout=5)
            held.sendall(b"before")
            self.assertEqual(held.recv(100), b"before")

            with open(sidecar.config, "w") as f:
                f.write(config_yaml(tcp_listener("b", new_port, "echo"),
                                    static_cluster("echo", second.port)))
            sidecar.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: sidecar.stat("meshlet_config_reloads_total") == 1))
            self.assertTrue(wait_for(
                lambda: sidecar.stat("meshlet_worker_config_updates_total") == 4))
            self.assertEqual(echo_round_trip(new_port, b"after"), b"after")
            self.assertEqual(second.accepted, 1)  # the new endpoint list is in use
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", old_port), timeout=5)
            held.sendall(b"still here")
            self.assertEqual(held.recv(100), b"still here")
            held.close()

            # An invalid file is refused and the running configuration stays.
            with open(sidecar.config, "w") as f:
                f.write("static_resources: {listeners: [{name: c, adress: x}]}\n")
            sidecar.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: 'result="failure"' in "".join(
                l for l in sidecar.stat_lines("meshlet_config_reloads_total") if l.endswith(" 1"))))
            self.assertEqual(echo_round_trip(new_port, b"again"), b"again")
            self.assertIn("configuration reload refused", sidecar.log())
        finally:
            second.close()


class HttpTest(SidecarTestCase):
    def setUp(self):
        super().setUp()
        self.app = HttpUpstream("app")

    def tearDown(self):
        super().tearDown()
        self.app.close()

    def test_http10_upstream_that_closes_after_responding(self):
        # python3 -m http.server answers HTTP/1.0 and closes: the whole body must still arrive.
        root = os.path.join(self.tmp, "www")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("hello from an HTTP/1.0 server\n")
        app_port, http_port = free_port(), free_port()
        app = subprocess.Popen([sys.executable, "-m", "http.server", str(app_port), "--bind",
                                "127.0.0.1", "--directory", root],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(app.kill)
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", app_port)) == 0)
        self.start(config_yaml(http_listener("outbound", http_port),
                               static_cluster("app", app_port), app_routes()))
        for flags in ([], ["--http2-prior-knowledge"]):
            for _ in range(3):
                self.assertEqual(curl(*flags, f"http://127.0.0.1:{http_port}/index.html"),
                                 "hello from an HTTP/1.0 server\n")

    def test_cluster_series_budget_from_the_command_line(self):
        # --stats-max-cluster-series bounds the per-cluster series: with room for 5, the first
        # request registers 5 of the cluster's series and the rest are refused and counted,
        # while the listener's own series still register and the request is served.
        http_port = free_port()
        sidecar = self.start(config_yaml(http_listener("outbound", http_port),
                                         static_cluster("app", self.app.port), app_routes()),
                             "--stats-max-cluster-series=5", concurrency=1)
        self.assertIn('"path": "/budget"', curl(f"http://127.0.0.1:{http_port}/budget"))
        self.assertEqual(sidecar.stat("meshlet_http_downstream_rq_total"), 1)
        [refused] = sidecar.stat_lines("meshlet_stats_series_refused_total")
        self.assertTrue(refused.startswith(
            'meshlet_stats_series_refused_total{budget="scoped"}: '), refused)
        self.assertGreater(int(refused.rpartition(": ")[2]), 0)
        # The first five were registered: the cluster is not left without any series.
        _, body, _ = sidecar.get("/stats?filter=meshlet_upstream_")
        self.assertIn('cluster="app"', body)

    def test_http1_and_h2c_through_the_sidecar(self):
        http_port, auto_port = free_port(), free_port()
        log_path = os.path.join(self.tmp, "access.log")
        auto_log_path = os.path.join(self.tmp, "auto.log")  # the listener's own access log
        sidecar = self.start(config_yaml(
            http_listener("outbound", http_port) +
            http_listener("auto", auto_port, protocol="PROTOCOL_AUTO") +
            f"    access_log: {{path: {auto_log_path}}}\n",
            static_cluster("app", self.app.port), app_routes()), f"--access-log={log_path}")
        for port in (http_port, auto_port):
            for flags in ([], ["--http2-prior-knowledge"]):
                reply = json.loads(curl(*flags, f"http://127.0.0.1:{port}/hello?x=1"))
                self.assertEqual(reply["path"], "/hello?x=1")
                self.assertIn("x-request-id", reply["headers"])
        self.assertEqual(sidecar.stat("meshlet_http_downstream_rq_total"), 4)
        lines = sidecar.stat_lines("meshlet_downstream_cx_protocol_total")
        self.assertIn('meshlet_downstream_cx_protocol_total{listener="auto",protocol="http2"}: 1',
                      lines)
        self.assertIn('meshlet_downstream_cx_protocol_total{listener="outbound",protocol="http1"}: 1',
                      lines)
        for path in (log_path, auto_log_path):
            with open(path) as f:
                entries = [json.loads(l) for l in f]
            self.assertEqual(len(entries), 2, path)
            self.assertEqual({e["protocol"] for e in entries}, {"HTTP/1.1", "HTTP/2"})
            self.assertTrue(all(e["response_code"] == 200 for e in entries))
        # /clusters sees the requests the router made.
        clusters = json.loads(sidecar.get("/clusters")[1])
        self.assertEqual(clusters["clusters"][0]["hosts"][0]["rq_total"], 4)

    def test_local_replies_have_a_duration(self):
        # A direct response, or a fault-injected 503 for a route to a cluster, is answered within
        # the loop turn its request arrived in; its duration is still measured, never 0.
        port = free_port()
        log_path = os.path.join(self.tmp, "access.log")
        routes = ROUTES.replace(
            "- match: {prefix: /}",
            "- match: {prefix: /abort}\n        route: {cluster: echo}\n"
            "        fault: {abort: {http_status: 503, percentage: 100}}\n"
            "      - match: {prefix: /}")
        sidecar = self.start(config_yaml(http_listener("outbound", port, route="local"),
                                         static_cluster("echo", self.echo.port), routes),
                             f"--access-log={log_path}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(40):
            conn.request("GET", "/abort" if i % 4 == 3 else "/")
            response = conn.getresponse()
            response.read()
            self.assertEqual(response.status, 503 if i % 4 == 3 else 200)
        conn.close()
        for _ in range(10):
            self.assertEqual(curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/"),
                             "hello from meshlet\n")

        def entries():
            with open(log_path) as f:
                return [json.loads(l) for l in f]
        self.assertTrue(wait_for(lambda: len(entries()) == 50), len(entries()))
        lines = entries()
        self.assertEqual(sorted({(l["protocol"], l["response_code"]) for l in lines}),
                         [("HTTP/1.1", 200), ("HTTP/1.1", 503), ("HTTP/2", 200)])
        for line in lines:
            self.assertGreater(line["duration_us"], 0, line)
            self.assertEqual(line["duration_ms"], line["duration_us"] // 1000, line)
        # The histograms hold the same durations: every sample is at least a microsecond.
        _, text, _ = sidecar.get("/stats/prometheus")
        totals = {}
        for row in text.splitlines():
            series, _, value = row.rpartition(" ")
            name = series.split("{")[0]
            if not row.startswith("#") and name.endswith(("_sum", "_count")):
                totals[name] = totals.get(name, 0) + float(value)
        downstream = "meshlet_http_downstream_rq_duration_seconds"
        golden = "meshlet_upstream_rq_duration_seconds"  # the aborted requests, routed to echo
        self.assertEqual(totals[downstream + "_count"], 50)
        self.assertGreaterEqual(totals[downstream + "_sum"], 50e-6)
        self.assertEqual(totals[golden + "_count"], 10)
        self.assertGreaterEqual(totals[golden + "_sum"], 10e-6)

    def test_reload_changes_routes_for_new_requests_on_open_connections(self):
        port = free_port()
        other = HttpUpstream("other")
        try:
            clusters = (static_cluster("app", self.app.port) +
                        static_cluster("other", other.port))
            sidecar = self.start(config_yaml(http_listener("outbound", port), clusters,
                                             app_routes("app")))
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/one")
            self.assertEqual(json.loads(conn.getresponse().read())["upstream"], "app")
            with open(sidecar.config, "w") as f:
                f.write(config_yaml(http_listener("outbound", port), clusters,
                                    app_routes("other")))
            sidecar.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_for(
                lambda: sidecar.stat("meshlet_worker_config_updates_total") == 4))
            conn.request("GET", "/two")  # same keep-alive connection, new configuration
            self.assertEqual(json.loads(conn.getresponse().read())["upstream"], "other")
            conn.close()
        finally:
            other.close()

    def test_drain_closes_http_connections_after_their_response(self):
        inbound = free_port()
        sidecar = self.start(config_yaml(http_listener("inbound", inbound, direction="INBOUND"),
                                         static_cluster("app", self.app.port), app_routes()),
                             drain_time="10s")
        conn = http.client.HTTPConnection("127.0.0.1", inbound, timeout=10)
        conn.request("GET", "/before")
        response = conn.getresponse()
        response.read()
        self.assertNotEqual(response.getheader("connection"), "close")
        # A request in flight when the drain starts completes, with `Connection: close`.
        conn.request("GET", "/slow")
        time.sleep(0.1)
        sidecar.proc.send_signal(signal.SIGTERM)
        self.assertTrue(wait_for(lambda: sidecar.get("/ready")[0] == 503))
        response = conn.getresponse()
        self.assertEqual(json.loads(response.read())["path"], "/slow")
        self.assertEqual(response.getheader("connection"), "close")
        conn.close()
        self.assertEqual(sidecar.wait_exit(5), 0)


    def test_drain_lets_a_slow_http2_client_read_its_whole_response(self):
        # An HTTP/2 client still reading a response when the drain starts keeps answering what
        # it reads with WINDOW_UPDATEs. The connection may close only once the client is done:
        # a close() before that would be a reset, destroying what it had not read yet.
        port = free_port()
        sidecar = self.start(config_yaml(http_listener("outbound", port),
                                         static_cluster("app", self.app.port), app_routes()),
                             drain_time="20s")
        size = 16 << 20
        out = os.path.join(tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR")), "download")
        download = subprocess.Popen(
            ["curl", "-sS", "--max-time", "30", "--http2-prior-knowledge", "--limit-rate", "4M",
             "-o", out, "-w", "%{http_code} %{size_download}", f"http://127.0.0.1:{port}/big/{size}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        sidecar.proc.send_signal(signal.SIGTERM)
        stdout, stderr = download.communicate(timeout=40)
        self.assertEqual(download.returncode, 0, stderr)
        self.assertEqual(stdout, f"200 {size}")
        with open(out, "rb") as f:
            self.assertTrue(f.read() == big_body(size))
        self.assertEqual(sidecar.wait_exit(10), 0)


class DrainTest(SidecarTestCase):
    def config(self, inbound_port, outbound_port):
        return config_yaml(
            tcp_listener("inbound", inbound_port, "echo", direction="INBOUND") +
            tcp_listener("outbound", outbound_port, "echo", direction="OUTBOUND"),
            static_cluster("echo", self.echo.port))

    def test_sigterm_drains_then_exits_when_idle(self):
        inbound, outbound = free_port(), free_port()
        sidecar = self.start(self.config(inbound, outbound), drain_time="10s")
        held = socket.create_connection(("127.0.0.1", inbound), timeout=5)
        held.sendall(b"x")
        self.assertEqual(held.recv(10), b"x")
        sidecar.proc.send_signal(signal.SIGTERM)
        self.assertTrue(wait_for(lambda: sidecar.get("/ready")[0] == 503))
        # Inbound stops accepting (each worker closes its listener when the drain reaches it);
        # outbound keeps serving the app; open connections keep working.
        def inbound_refused():
            try:
                socket.create_connection(("127.0.0.1", inbound), timeout=5).close()
                return False
            except ConnectionRefusedError:
                return True
        self.assertTrue(wait_for(inbound_refused))
        self.assertEqual(echo_round_trip(outbound, b"out"), b"out")
        held.sendall(b"y")
        self.assertEqual(held.recv(10), b"y")
        listeners = json.loads(sidecar.get("/listeners")[1])
        self.assertTrue(listeners["draining"])
        self.assertEqual({l["name"]: l["accepting"] for l in listeners["listeners"]},
                         {"inbound": False, "outbound": True})
        self.assertIsNone(sidecar.proc.poll())
        started = time.time()
        held.close()
        self.assertEqual(sidecar.wait_exit(5), 0)
        self.assertLess(time.time() - started, 2)

    def test_sigterm_exits_after_drain_time(self):
        inbound, outbound = free_port(), free_port()
        sidecar = self.start(self.config(inbound, outbound), drain_time="1s")
        held = socket.create_connection(("127.0.0.1", inbound), timeout=5)
        held.sendall(b"x")
        self.assertEqual(held.recv(10), b"x")
        started = time.time()
        sidecar.proc.send_signal(signal.SIGTERM)
        self.assertEqual(sidecar.wait_exit(10), 0)
        self.assertGreater(time.time() - started, 0.9)
        self.assertLess(time.time() - started, 5)
        held.close()

    def test_sigterm_before_ready_exits_at_once(self):
        # A proxy that never became ready (here: no control plane to give it a configuration)
        # served no caller, so the drain listen time (3 s here) does not hold it: a Kubernetes
        # native sidecar must not delay a pod that is being deleted while starting.
        admin = free_port()
        log = open(os.path.join(self.tmp, "never-ready.log"), "w")
        proc = subprocess.Popen(
            [SIDECAR, f"--xds=127.0.0.1:{free_port()}", "--xds-plaintext=true", "--node-id=n",
             f"--admin-address=127.0.0.1:{admin}", "--drain-listen-time=3s", "--drain-time=10s"],
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            def admin_up():
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1)
                except urllib.error.HTTPError as e:
                    return e.code == 503
                except OSError:
                    return False
                return False
            self.assertTrue(wait_for(admin_up))
            started = time.time()
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=5), 0)
            self.assertLess(time.time() - started, 1.0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        with open(log.name) as f:
            self.assertIn("never ready: no listen time before exiting", f.read())

    def test_post_drain_keeps_running(self):
        inbound, outbound = free_port(), free_port()
        sidecar = self.start(self.config(inbound, outbound))
        self.assertEqual(sidecar.post("/drain")[0], 200)
        self.assertEqual(sidecar.get("/ready")[0], 503)
        self.assertEqual(echo_round_trip(outbound, b"out"), b"out")
        time.sleep(0.3)
        self.assertIsNone(sidecar.proc.poll())


if __name__ == "__main__":
    SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
