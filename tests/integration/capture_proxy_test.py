"""The real sidecar behind `sidecar init` rules in a network namespace: capture listeners serve
connections by their original destination, as docs/xds.md (Capture listeners) says.

Usage: capture_proxy_test.py SIDECAR

Two namespaces joined by a veth pair: the "pod" (198.18.12.1/30), where `sidecar init` programs
the nat table and the sidecar runs with an outbound capture listener on loopback
(127.0.0.1:15001, where the nat table's REDIRECT sends the app's connections, as the control plane
binds it) and an inbound one (0.0.0.0:15006); and a "peer" (198.18.12.2/30) with the upstream services. The
pod routes the service range 240.240.0.0/16 to the peer, which has no such address: a
connection to a service address only works through the sidecar. The sidecar runs as root, so
`init --proxy-uid 0` exempts it; the app is uid 1000.

Shown: the app's plain `curl http://240.240.0.1/` reaches the service's upstream by the
destination's routes (Host matched as the routes say; the listener's own routes answer
otherwise), logged with its original destination; a server-first TCP protocol on a TCP
destination works; an unknown destination is passed through to where it was going (PASSTHROUGH)
or, with REFUSE, gets a 502 with response flag NM (HTTP) or is closed (other bytes); a peer's
call to the pod's port 8080 lands on the app listening on 127.0.0.1 only, through the inbound
listener; the sidecar's own upstream connections are not captured again (each listener counts
exactly the connections the clients made). The counters are asserted throughout.

When the kernel has IPv6 NAT, the pod and peer also get fd00:12::1 and fd00:12::2, `sidecar init`
writes the ip6tables rules too, and the capture listeners' IPv6 addresses ("[::1]:15001",
"[::]:15006", additional_addresses beside the IPv4 ones) serve the same checks over IPv6: a
service's IPv6 address routed, an IPv6 destination outside the mesh passed through, a peer's IPv6
call to the pod's port reaching the app.

Needs root, ip, setpriv, iptables and curl; without them it prints "SKIP: needs root and
iptables". Everything it creates (namespaces, processes) is removed at the end, also on failure.
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import netns
from netns import PATH, in_ns, run

SIDECAR = None
PREFIX = "mlcpx"  # namespaces of this test: mlcpx<pid>p (pod) and mlcpx<pid>q (peer)
POD = f"{PREFIX}{os.getpid()}p"
PEER = f"{PREFIX}{os.getpid()}q"
VETH_POD = f"mlx{os.getpid()}a"
VETH_PEER = f"mlx{os.getpid()}b"
POD4, PEER4 = "198.18.12.1", "198.18.12.2"
SERVICE_VIP, DB_VIP = "240.240.0.1", "240.240.0.2"
POD6, PEER6 = "fd00:12::1", "fd00:12::2"
SERVICE_VIP6 = "fd00:240::1"
IPV6 = False  # main() sets it when the kernel has IPv6 NAT
APP_USER = 1000

# HTTP server: answers every request with JSON naming the server, the path and the request's
# headers. argv: LABEL HOST PORT...
HTTP_SERVER = r"""
import http.server, json, socket, socketserver, sys, threading
label, host = sys.argv[1], sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"server": label, "port": self.server.server_address[1],
                           "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
for port in sys.argv[3:]:
    server = Server((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

# A server-first protocol (like MySQL): sends a greeting on accept, then echoes one line.
# argv: HOST PORT
BANNER_SERVER = r"""
import socket, sys, threading
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((sys.argv[1], int(sys.argv[2])))
sock.listen(16)
def serve(conn):
    with conn:
        conn.sendall(b"GREETING banner-server\n")
        line = conn.makefile("rb").readline()
        conn.sendall(b"ECHO " + line)
def accept():
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

# Connects to HOST PORT; mode "banner": reads the greeting without sending first, then sends a
# line and reads the echo; mode "opaque": sends bytes that are not HTTP and reads until EOF.
# Prints what it read as JSON, or {"error": ...}.
CLIENT = r"""
import json, socket, sys
host, port, mode = sys.argv[1].strip("[]"), int(sys.argv[2]), sys.argv[3]
try:
    with socket.create_connection((host, port), timeout=5) as s:
        f = s.makefile("rb")
        if mode == "banner":
            greeting = f.readline().decode()
            s.sendall(b"hello\n")
            print(json.dumps({"read": greeting + f.readline().decode()}))
        else:
            s.sendall(b"\x00\x01\x02 not http at all\r\n")
            print(json.dumps({"read": s.recv(4096).decode(errors="replace")}))
except OSError as e:
    print(json.dumps({"error": str(e)}))
"""

processes = []
workdir = tempfile.mkdtemp(prefix="capture_proxy_test.")


def as_app(*args, check=False):
    """Runs a command in the pod as the app's uid (captured)."""
    return in_ns(POD, "setpriv", f"--reuid={APP_USER}", f"--regid={APP_USER}", "--clear-groups",
                 *args, check=check)


def teardown():
    netns.teardown(processes, (POD, PEER))
    shutil.rmtree(workdir, ignore_errors=True)


def remove_leftovers():
    """Namespaces a killed earlier run of this test left behind."""
    netns.remove_leftovers(PREFIX, "pqx")


def start(ns, *argv):
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={"PATH": PATH})
    processes.append(proc)
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise AssertionError(f"{argv[:3]} did not start: {line!r}")


def setup_namespaces():
    netns.veth_pair(POD, PEER, VETH_POD, VETH_PEER, POD4, PEER4)
    # Service addresses exist nowhere: only a route, so the app's connect() gets as far as nat.
    run("ip", "-n", POD, "route", "add", "240.240.0.0/16", "via", PEER4)
    # The peer: the service's upstream (8080), an address outside the mesh (9999), a
    # server-first database (3306). The pod: the app, on loopback only (8080, and 9000 for
    # an inbound port no destination names).
    start(PEER, "/usr/bin/python3", "-c", HTTP_SERVER, "reviews", PEER4, "8080", "9999")
    start(PEER, "/usr/bin/python3", "-c", BANNER_SERVER, PEER4, "3306")
    # Port 9997 of the peer never answers a SYN: a passthrough's connect times out.
    in_ns(PEER, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9997", "-j", "DROP")
    start(POD, "/usr/bin/python3", "-c", HTTP_SERVER, "app", "127.0.0.1", "8080", "9000")
    if IPV6:
        run("ip", "-n", POD, "addr", "add", f"{POD6}/64", "dev", VETH_POD, "nodad")
        run("ip", "-n", PEER, "addr", "add", f"{PEER6}/64", "dev", VETH_PEER, "nodad")
        run("ip", "-n", POD, "-6", "route", "add", "fd00:240::/64", "via", PEER6)
        start(PEER, "/usr/bin/python3", "-c", HTTP_SERVER, "reviews", PEER6, "9999")
    init_rules()


def config(unmatched, access_log):
    return f"""static_resources:
  listeners:
  - name: outbound
    address: 127.0.0.1:15001
    additional_addresses: ["[::1]:15001"]
    direction: OUTBOUND
    protocol: PROTOCOL_HTTP
    route_config_name: listener-own
    access_log: {{path: {access_log}}}
    use_original_destination: true
    passthrough_connect_timeout: 0.4s
    destinations:
    - {{name: "db:3306", addresses: [{DB_VIP}], port: 3306, protocol: PROTOCOL_TCP,
       tcp_cluster: db}}
    - {{name: "reviews:80", addresses: ["{SERVICE_VIP}", "{SERVICE_VIP6}"], port: 80,
       protocol: PROTOCOL_HTTP,
       route_config_name: reviews-routes}}
    unmatched_destination: {unmatched}
  - name: inbound
    address: 0.0.0.0:15006
    additional_addresses: ["[::]:15006"]
    direction: INBOUND
    protocol: PROTOCOL_AUTO
    route_config_name: listener-own
    access_log: {{path: {access_log}}}
    use_original_destination: true
    destinations:
    - {{name: "inbound|8080", port: 8080, protocol: PROTOCOL_HTTP,
       route_config_name: inbound-8080, destination_port: 8080}}
    unmatched_destination: PASSTHROUGH
    passthrough_host: 127.0.0.1
  clusters:
  - name: reviews
    connect_timeout: 1s
    load_assignment:
      endpoints:
      - address: {PEER4}:8080
  - name: db
    connect_timeout: 1s
    load_assignment:
      endpoints:
      - address: {PEER4}:3306
  - name: inbound-app
    connect_timeout: 1s
    load_assignment:
      endpoints:
      - address: 127.0.0.1:8080
  routes:
  - name: listener-own
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - match: {{prefix: /}}
        direct_response: {{status: 200, body: "listener's own routes\\n"}}
  - name: reviews-routes
    virtual_hosts:
    - name: reviews
      domains: ["reviews", "reviews.shop", "{SERVICE_VIP}", "{SERVICE_VIP}:80", "[{SERVICE_VIP6}]",
                "[{SERVICE_VIP6}]:80"]
      routes:
      - match: {{prefix: /}}
        route: {{cluster: reviews}}
  - name: inbound-8080
    virtual_hosts:
    - name: app
      domains: ["*"]
      routes:
      - match: {{prefix: /}}
        route: {{cluster: inbound-app}}
"""


class Sidecar:
    """The sidecar in the pod namespace, its admin on the pod's loopback."""

    def __init__(self, unmatched, *extra_args, wait_ready=True):
        self.access_log = os.path.join(workdir, f"access-{unmatched}.log")
        path = os.path.join(workdir, f"sidecar-{unmatched}.yaml")
        with open(path, "w") as f:
            f.write(config(unmatched, self.access_log))
        self.stderr = open(os.path.join(workdir, f"sidecar-{unmatched}.stderr"), "w+")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", POD, SIDECAR, "--config", path,
             "--admin-address=127.0.0.1:15000", "--concurrency=1", "--drain-time=1s",
             *extra_args],
            stdout=subprocess.DEVNULL, stderr=self.stderr, env={"PATH": PATH})
        processes.append(self.proc)
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited with {self.proc.returncode}: {self.log()}")
            if self.admin("/ready", check=False).startswith("200"):
                return
            time.sleep(0.1)
        raise AssertionError("sidecar did not become ready: " + self.log())

    def log(self):
        with open(self.stderr.name) as f:
            return f.read()

    def admin(self, path, check=True):
        """'STATUS BODY' of an admin request."""
        result = in_ns(POD, "curl", "-sS", "--max-time", "5", "-w", "%{http_code}",
                       "-o", "/dev/stdout", f"http://127.0.0.1:15000{path}", check=check)
        body, code = result.stdout[:-3], result.stdout[-3:]
        return f"{code} {body}"

    def stat(self, name, **labels):
        """Sum of the series of `name` whose labels include `labels`."""
        total = 0
        for line in self.admin("/stats?filter=" + name).splitlines():
            series, _, value = line.rpartition(": ")
            if series.split("{")[0].split()[-1] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += int(value)
        return total

    def log_lines(self):
        """The access log's JSON lines (both listeners)."""
        deadline = time.time() + 5
        while time.time() < deadline:
            if os.path.exists(self.access_log):
                break
            time.sleep(0.05)
        with open(self.access_log) as f:
            return [json.loads(line) for line in f if line.strip()]

    def wait_log(self, predicate):
        deadline = time.time() + 5
        while time.time() < deadline:
            found = [line for line in self.log_lines() if predicate(line)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no access-log line matches; have {self.log_lines()}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def app_curl(*args):
    """curl as the app: (status, body)."""
    result = as_app("curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", *args)
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body


def app_client(host, port, mode):
    return json.loads(as_app("/usr/bin/python3", "-c", CLIENT, host, str(port), mode).stdout)


class CaptureProxyTest(unittest.TestCase):
    """One sidecar per test: the unmatched policy differs."""

    def tearDown(self):
        if getattr(self, "sidecar", None) is not None:
            self.sidecar.stop()
            sys.stderr.write(self.sidecar.log()[-3000:])

    def start_sidecar(self, unmatched, *extra_args, wait_ready=True):
        self.sidecar = Sidecar(unmatched, *extra_args, wait_ready=wait_ready)
        return self.sidecar

    def assertCounts(self, listener, **results):
        for result, want in results.items():
            got = self.sidecar.stat("meshlet_downstream_cx_original_destination_total",
                                    listener=listener, result=result)
            self.assertEqual(got, want, f"{listener} {result}")

    def test_allow_any(self):
        s = self.start_sidecar("PASSTHROUGH")
        # The app's plain call to a service address: routed by the destination's routes.
        code, body = app_curl(f"http://{SERVICE_VIP}/reviews/1")
        self.assertEqual(code, 200, body)
        answer = json.loads(body)
        self.assertEqual((answer["server"], answer["port"], answer["path"]),
                         ("reviews", 8080, "/reviews/1"))
        self.assertIn("x-request-id", answer["headers"])  # the sidecar prepared the request
        # A Host the destination's routes name; one they do not: 404 NR, never the listener's.
        code, body = app_curl("-H", "Host: reviews.shop", f"http://{SERVICE_VIP}/")
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["server"], "reviews")
        code, body = app_curl("-H", "Host: elsewhere", f"http://{SERVICE_VIP}/")
        self.assertEqual(code, 404, body)
        line = s.wait_log(lambda l: l.get("path") == "/reviews/1")[0]
        self.assertEqual(line["original_destination"], f"{SERVICE_VIP}:80")
        self.assertEqual(line["upstream_cluster"], "reviews")
        self.assertEqual(line["upstream_host"], f"{PEER4}:8080")

        # A server-first protocol on a TCP destination: the greeting arrives with no client
        # bytes first (no detection wait), then bytes flow both ways.
        got = app_client(DB_VIP, 3306, "banner")
        self.assertEqual(got.get("read"), "GREETING banner-server\nECHO hello\n", got)

        # An address outside the mesh: passed through to where it was going.
        code, body = app_curl(f"http://{PEER4}:9999/outside")
        self.assertEqual(code, 200, body)
        self.assertEqual((json.loads(body)["port"], json.loads(body)["path"]), (9999, "/outside"))
        # The sidecar did not touch it: no x-request-id.
        self.assertNotIn("x-request-id", json.loads(body)["headers"])
        line = s.wait_log(lambda l: l.get("cluster") == "passthrough")[0]
        self.assertEqual(line["original_destination"], f"{PEER4}:9999")
        self.assertEqual(line["upstream_host"], f"{PEER4}:9999")

        # Inbound: a peer's call to the pod's port 8080 reaches the app on 127.0.0.1:8080;
        # port 9000, which no destination names, is passed through to 127.0.0.1:9000.
        result = in_ns(PEER, "curl", "-sS", "--max-time", "5", f"http://{POD4}:8080/in",
                       check=False)
        self.assertEqual(json.loads(result.stdout)["server"], "app", result.stderr)
        self.assertIn("x-request-id", json.loads(result.stdout)["headers"])
        result = in_ns(PEER, "curl", "-sS", "--max-time", "5", f"http://{POD4}:9000/raw",
                       check=False)
        self.assertEqual(json.loads(result.stdout)["port"], 9000, result.stderr)
        line = s.wait_log(lambda l: l.get("path") == "/in")[0]
        self.assertEqual(line["original_destination"], f"{POD4}:8080")
        # The pod's port 15001 is the sidecar's own outbound listener: passed through to
        # 127.0.0.1 it would let the peer call out with this pod's identity. Refused (502).
        result = in_ns(PEER, "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w",
                       "%{http_code}", "-H", "Host: reviews.shop", f"http://{POD4}:15001/",
                       check=False)
        self.assertEqual(result.stdout, "502", result.stderr)
        # Even with 15001 left out of inbound capture (excludeInboundPorts), the peer finds
        # nothing there: the outbound listener is on loopback only.
        exempt = ["-t", "nat", "-I", "MESHLET_INBOUND", "-p", "tcp", "--dport", "15001",
                  "-j", "RETURN"]
        in_ns(POD, "iptables", *exempt)
        try:
            result = in_ns(PEER, "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w",
                           "%{http_code}", f"http://{POD4}:15001/", check=False)
        finally:
            in_ns(POD, "iptables", *["-D" if a == "-I" else a for a in exempt])
        self.assertEqual(result.returncode, 7, result.stderr)  # connection refused
        self.assertEqual(result.stdout, "000", result.stderr)

        # Counted exactly: the sidecar's own upstream connections (to 198.18.12.2 and
        # 127.0.0.1) were not captured again, or the listeners would count more.
        self.assertCounts("outbound", matched=4, passthrough=1, refused=0, not_redirected=0)
        self.assertCounts("inbound", matched=1, passthrough=1, refused=1, not_redirected=0)
        self.assertEqual(s.stat("meshlet_downstream_cx_total", listener="outbound"), 5)
        self.assertEqual(s.stat("meshlet_downstream_cx_total", listener="inbound"), 3)
        self.assertEqual(s.stat("meshlet_tcp_proxy_cx_total", listener="outbound"), 2)

    def test_passthrough_connect_timeout(self):
        s = self.start_sidecar("PASSTHROUGH")
        start = time.monotonic()
        code, body = app_curl(f"http://{PEER4}:9997/silent")
        elapsed = time.monotonic() - start
        self.assertEqual(code, 0, body)  # closed without an answer
        # The listener's passthrough_connect_timeout (0.4s), not curl's 5 s.
        self.assertLess(elapsed, 2.5)
        line = s.wait_log(lambda l: l.get("original_destination") == f"{PEER4}:9997")[0]
        self.assertEqual((line["cluster"], line["failure"]),
                         ("passthrough", "upstream_connect_timeout"))
        self.assertGreaterEqual(line["duration_ms"], 350)

    def test_registry_only(self):
        s = self.start_sidecar("REFUSE")
        code, body = app_curl(f"http://{PEER4}:9999/outside")
        self.assertEqual(code, 502, body)
        self.assertIn(f"destination {PEER4}:9999 is not in the mesh registry", body)
        line = s.wait_log(lambda l: l.get("path") == "/outside")[0]
        self.assertEqual(line["response_flags"], "NM")
        self.assertEqual(line["original_destination"], f"{PEER4}:9999")
        # Bytes that are not HTTP: closed without an answer.
        got = app_client(PEER4, 9999, "opaque")
        self.assertEqual(got.get("read", ""), "", got)
        # Known destinations still work.
        code, body = app_curl(f"http://{SERVICE_VIP}/")
        self.assertEqual(code, 200, body)
        self.assertCounts("outbound", matched=1, refused=2, passthrough=0)
        self.assertEqual(s.stat("meshlet_downstream_cx_rejected_total", listener="outbound",
                                reason="unmatched_destination"), 1)
        self.assertEqual(s.stat("meshlet_http_response_flags_total", flag="NM"), 1)

    def test_ipv6(self):
        if not IPV6:
            self.skipTest("the kernel has no IPv6 NAT (ip6table_nat)")
        s = self.start_sidecar("PASSTHROUGH")
        bound = {l["name"]: sorted(l["bound_addresses"])
                 for l in json.loads(s.admin("/listeners").split(" ", 1)[1])["listeners"]}
        self.assertEqual(bound["outbound"], ["127.0.0.1:15001", "[::1]:15001"])
        self.assertEqual(bound["inbound"], ["0.0.0.0:15006", "[::]:15006"])
        # The service's IPv6 address: routed by the destination's routes, like the IPv4 one.
        code, body = app_curl(f"http://[{SERVICE_VIP6}]/reviews/6")
        self.assertEqual(code, 200, body)
        answer = json.loads(body)
        self.assertEqual((answer["server"], answer["port"], answer["path"]),
                         ("reviews", 8080, "/reviews/6"))
        self.assertIn("x-request-id", answer["headers"])
        line = s.wait_log(lambda l: l.get("path") == "/reviews/6")[0]
        self.assertEqual(line["original_destination"], f"[{SERVICE_VIP6}]:80")
        # An IPv6 address outside the mesh: passed through to it.
        code, body = app_curl(f"http://[{PEER6}]:9999/outside6")
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["path"], "/outside6")
        self.assertNotIn("x-request-id", json.loads(body)["headers"])
        # (The access log file is shared with test_allow_any's sidecar.)
        line = s.wait_log(lambda l: l.get("cluster") == "passthrough" and
                          l.get("original_destination") == f"[{PEER6}]:9999")[0]
        self.assertEqual(line["upstream_host"], f"[{PEER6}]:9999")
        # A peer's IPv6 call to the pod's port 8080: the app on 127.0.0.1, through inbound.
        result = in_ns(PEER, "curl", "-sS", "--max-time", "5", f"http://[{POD6}]:8080/in6",
                       check=False)
        self.assertEqual(json.loads(result.stdout)["server"], "app", result.stderr)
        line = s.wait_log(lambda l: l.get("path") == "/in6")[0]
        self.assertEqual(line["original_destination"], f"[{POD6}]:8080")
        self.assertCounts("outbound", matched=1, passthrough=1, not_redirected=0)
        self.assertCounts("inbound", matched=1, passthrough=0, not_redirected=0)

    def test_not_redirected_connections_use_the_listeners_fields(self):
        self.start_sidecar("REFUSE")
        # Addressed to the listener itself (no original destination): its own routes.
        result = in_ns(POD, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:15001/")
        self.assertEqual(result.stdout, "listener's own routes\n")
        self.assertCounts("outbound", not_redirected=1, matched=0, refused=0)


class ReadinessTest(unittest.TestCase):
    """--capture-check: not ready while the capture rules are missing."""

    def tearDown(self):
        init_rules()  # as the other tests expect them
        if getattr(self, "sidecar", None) is not None:
            self.sidecar.stop()
            sys.stderr.write(self.sidecar.log()[-3000:])

    def test_not_ready_until_capture_is_in_effect(self):
        in_ns(POD, SIDECAR, "init", "--cleanup")
        self.sidecar = Sidecar("PASSTHROUGH", f"--capture-check={POD4}:15008", wait_ready=False)
        deadline = time.time() + 10
        while time.time() < deadline:  # the listeners are up...
            if "traffic capture not in effect" in self.sidecar.admin("/ready", check=False):
                break
            time.sleep(0.1)
        time.sleep(2.5)  # ...and stay not ready through more than two dials
        status = self.sidecar.admin("/ready", check=False)
        self.assertTrue(status.startswith("503 NOT READY: traffic capture not in effect"), status)
        init_rules()
        self.sidecar.wait_ready(timeout=5)
        # The dial itself was what showed it: the inbound listener saw it redirected.
        self.assertGreaterEqual(self.sidecar.stat(
            "meshlet_downstream_cx_original_destination_total", listener="inbound"), 1)


def init_rules():
    in_ns(POD, SIDECAR, "init", "--proxy-uid", "0", "--proxy-gid", "0",
          "--ipv6", "true" if IPV6 else "false")


def ipv6_nat_supported():
    """Whether ip6tables' nat table works here (ip6table_nat), in a namespace of its own."""
    if shutil.which("ip6tables", path=PATH) is None:
        return False
    probe = f"{PREFIX}{os.getpid()}x"
    run("ip", "netns", "add", probe)
    try:
        return in_ns(probe, "ip6tables", "-t", "nat", "-L", "-n", check=False).returncode == 0
    finally:
        netns.remove_namespace(probe)


def main():
    global SIDECAR, IPV6
    SIDECAR = os.path.abspath(sys.argv.pop(1))
    tools = all(shutil.which(t, path=PATH) for t in ("ip", "setpriv", "iptables", "curl"))
    if os.geteuid() != 0 or not tools:
        print("SKIP: needs root and iptables")
        return 0
    remove_leftovers()
    atexit.register(teardown)
    IPV6 = ipv6_nat_supported()
    if not IPV6:
        print("the kernel has no IPv6 NAT: the IPv6 case is skipped")
    setup_namespaces()
    program = unittest.main(exit=False, verbosity=2)
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
