"""A sidecar's binary replaced in place under traffic (docs/upgrades.md, "Replacing the sidecar
binary in place"; ADR 0072): 0 failed requests, and how long the switch holds requests up.

Usage: hand_over_test.py CONTROL_PLANE SIDECAR LOADGEN [unittest args]. The replacement is the
previous release's sidecar (MESHLET_PREVIOUS_RELEASE, as ./dev test builds it) when that release
has --hand-over, else a copy of this tree's sidecar (another file, as an upgrade installs one).

One control plane (CA and xDS), the Service `backend` (an HTTP app behind the sidecar backend-0,
started with --hand-over), and the sidecar frontend-0. Four open-loop load generators
(tests/bench/loadgen: a fixed rate, latency from each request's intended send time, so a stall
shows in every request scheduled during it) send for 6 s:
  - HTTP/1.1 and HTTP/2 (h2c) to frontend-0's outbound listener: frontend-0 -> backend-0's
    inbound listener over mutual TLS (HTTP/2 between the sidecars) -> the app;
  - HTTP/1.1 and HTTP/2 (h2c) to backend-0's own outbound listener: its outbound, then its inbound
    over mutual TLS -> the app.
Two seconds in, a second backend-0 process starts with the same command line (but one worker
instead of two, so it also takes the sockets of a worker it does not have): it takes the
listening sockets, the configuration and the workload certificate over the --hand-over socket,
and once ready the first one stops accepting, drains and exits 0. Every request must answer 200
from the app (no error, no reset, none unfinished), the new process must show what it took over
(GET /hand_over, meshlet_server_hand_overs_total), and the control plane must see backend-0 ready
on the new process's stream. The figures (max latency, requests and connections in flight at the
switch) are printed for docs/upgrades.md.

And a new process that never gets ready (it waits for a control plane that is not there) changes
nothing: it gives up after --hand-over-timeout, or at once when it is sent SIGTERM, and the
running sidecar serves on, its hand-over socket too.

And a predecessor that never confirms it stopped accepting while its hand-over socket still
listens (a stand-in speaking xds/hand_over.proto): once --hand-over-confirm-timeout has passed,
the new process cannot serve the socket for a next one; it says so, counts it, and serves its
traffic (it used to exit 1, after the predecessor had been told to stop).
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import cp_api
import sidecar_test
from mesh_util import (call_service, create_join_token, http_service, put_resource,
                       start_plaintext_control_plane, start_xds_sidecar, stop_process)
from sidecar_test import (EchoServer, HttpUpstream, config_yaml, echo_round_trip, free_port,
                          static_cluster, tcp_listener, wait_for)

CONTROL_PLANE = SIDECAR = LOADGEN = None
NAMESPACE = "default"
SERVICE = http_service("backend", NAMESPACE)
RATE = 100  # requests/s per generator
DURATION = 6  # s, measured
SWITCH_AFTER = 2  # s into the measured period
BASELINE = 3  # s of the same load before, without a switch
# The app answers after 20 ms, so requests are in flight when the old process stops accepting.
PATH = "/slow/0.02"


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([byte])
        out += bytes([byte | 0x80])


def pb_field(number, value):
    """One protobuf field: bytes as length-delimited, ints as varints."""
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value)


def read_frame(conn):
    """One message of the hand-over socket (a 4-byte big-endian length, then the message)."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data
    (size,) = struct.unpack(">I", exactly(4))
    return exactly(size)


def replacement_binary(tmp):
    """(path, description) of the binary that replaces the running sidecar."""
    previous = os.environ.get("MESHLET_PREVIOUS_RELEASE", "")
    if previous:
        old = os.path.join(previous, "sidecar")
        usage = subprocess.run([old, "--help"], capture_output=True, text=True).stdout
        if "--hand-over" in usage:
            return old, "the previous release's sidecar"
        print(f"hand-over: the previous release ({old}) has no --hand-over; "
              "replacing with this tree's sidecar", file=sys.stderr)
    copy = os.path.join(tmp, "sidecar-replacement")
    shutil.copy2(SIDECAR, copy)
    return copy, "a copy of this tree's sidecar"


class HandOverTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.processes, self.sidecars, self.apps, self.cp = [], [], [], None

    def tearDown(self):
        for p in self.processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        for s in self.sidecars:
            s.stop()
        for app in self.apps:
            app.close()
        if self.cp is not None:
            stop_process(self.cp)

    def loadgen(self, name, port, protocol, duration):
        out = os.path.join(self.tmp, f"load-{name}-{duration}.json")
        p = subprocess.Popen(
            [LOADGEN, f"--address=127.0.0.1:{port}", f"--protocol={protocol}",
             # HTTP/1.1: one request at a time per connection, so enough of them for the rate.
             f"--rate={RATE}", f"--connections={4 if protocol == 'http/1.1' else 2}",
             f"--duration={duration}s", "--warmup=500ms",
             "--authority=backend:9080", f"--path={PATH}", "--request-timeout=5s",
             f"--output={out}", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.processes.append(p)
        return name, p, out

    def load(self, frontend, backend, duration):
        return [self.loadgen("frontend-h1", frontend.outbound, "http/1.1", duration),
                self.loadgen("frontend-h2", frontend.outbound, "h2", duration),
                self.loadgen("backend-h1", backend.outbound, "http/1.1", duration),
                self.loadgen("backend-h2", backend.outbound, "h2", duration)]

    def results(self, loads):
        out = {}
        for name, p, path in loads:
            _, err = p.communicate(timeout=DURATION + 30)
            self.assertEqual(p.returncode, 0, f"{name}: {err}")
            with open(path) as f:
                out[name] = json.load(f)
        return out

    def test_binary_replaced_under_traffic_loses_no_request(self):
        self.cp, api, ads, token = start_plaintext_control_plane(
            CONTROL_PLANE, self.tmp, "--xds-listen-host", "127.0.0.1", "--xds-debounce", "20ms")
        put_resource(api, token, f"namespaces/{NAMESPACE}/services/backend", SERVICE)
        app = HttpUpstream("backend-0")
        self.apps.append(app)
        # A unix socket's path has at most 107 bytes: not under the test's temporary directory.
        socket_dir = tempfile.mkdtemp(prefix="meshlet-hand-over-", dir="/tmp")
        self.addCleanup(shutil.rmtree, socket_dir, True)
        socket_path = os.path.join(socket_dir, "backend-0")

        def sidecar(node_id, account, *args):
            join = create_join_token(api, token, account, "10m", NAMESPACE)
            s = start_xds_sidecar(self.tmp, ads, node_id, NAMESPACE, *args, join_token=join,
                                  service_account=account, drain_time="10s", concurrency=2)
            self.sidecars.append(s)
            return s

        backend = sidecar("backend-0", "backend", "--node-service=backend",
                          "--node-label=app=backend", f"--node-port={app.port}",
                          f"--hand-over={socket_path}")
        frontend = sidecar("frontend-0", "frontend", "--node-service=frontend")
        for port in (frontend.outbound, backend.outbound):
            self.assertTrue(wait_for(lambda: call_service(port, "backend:9080")[0] == 200,
                                     timeout=20), backend.log())
        self.assertEqual(json.loads(backend.get("/hand_over")[1])["socket"], socket_path)

        # The same load without a switch first: what the figures compare with.
        baseline = self.results(self.load(frontend, backend, BASELINE))
        loads = self.load(frontend, backend, DURATION)
        time.sleep(0.5 + SWITCH_AFTER)

        binary, what = replacement_binary(self.tmp)
        old_pid = backend.proc.pid
        new_log = os.path.join(self.tmp, "backend-0.new.stderr")
        with open(new_log, "w") as err:
            # One worker instead of two: it takes both workers' sockets of each address.
            new = subprocess.Popen([binary] + backend.argv[1:] + ["--concurrency=1"],
                                   stdout=subprocess.DEVNULL, stderr=err)
        self.processes.append(new)

        def log():
            with open(new_log) as f:
                return f.read()

        self.assertTrue(wait_for(lambda: "hand-over: took over from pid" in log() or
                                 new.poll() is not None, timeout=20), log())
        self.assertIsNone(new.poll(), "the new sidecar exited: " + log())
        # The first one drains and exits by itself.
        self.assertEqual(backend.wait_exit(15), 0, backend.log())
        self.assertIn("hand-over: handed over", backend.log())

        results = self.results(loads)

        # The new process serves everything now, and shows what it took over.
        status, body, _ = backend.get("/hand_over")
        self.assertEqual(status, 200)
        taken = json.loads(body)["taken_over"]
        self.assertIsNotNone(taken, body)
        self.assertEqual(taken["pid"], old_pid)
        self.assertGreaterEqual(taken["sockets"], 3)  # inbound, outbound, admin
        self.assertTrue(taken["configuration"], body)
        self.assertTrue(taken["certificate"], body)
        self.assertIn('meshlet_server_hand_overs_total{side="took_over"}: 1',
                      backend.get("/stats?filter=hand_overs")[1])
        for port in (frontend.outbound, backend.outbound):
            self.assertEqual(call_service(port, "backend:9080")[0], 200)
        # The control plane: backend-0 on the new process's stream, ready.
        req = urllib.request.Request(cp_api.url(api, "/api/v1/workloads"),
                                     headers={"Authorization": "Bearer " + token})
        with cp_api.urlopen(req, timeout=5) as r:
            workloads = {w["id"]: w for w in json.loads(r.read())["items"]}
        self.assertTrue(workloads["backend-0"]["ready"], workloads["backend-0"])

        lines = [f"hand-over: {what} replaced backend-0 (pid {old_pid}) under {len(loads)} x "
                 f"{RATE} requests/s (the app answers in 20 ms); the new process was ready "
                 f"{taken['ready_after_ms']} ms after it started; at the switch the old one had "
                 f"{taken['predecessor_connections']} connections and "
                 f"{taken['predecessor_requests']} requests in flight",
                 f"  {'':12} {'with the switch (' + str(DURATION) + ' s)':58} | "
                 f"without ({BASELINE} s)"]
        failures = []
        for name, r in results.items():
            q, lat, base = r["requests"], r["latency_us"], baseline[name]["latency_us"]
            lines.append(
                f"  {name:12} {q['ok']}/{q['scheduled']} ok, {q['errors']} errors, "
                f"{r['connections_lost']} connections lost; p50 {lat['p50'] / 1000:.1f} ms, "
                f"p99 {lat['p99'] / 1000:.1f} ms, max {lat['max'] / 1000:.1f} ms | p50 "
                f"{base['p50'] / 1000:.1f} ms, p99 {base['p99'] / 1000:.1f} ms, max "
                f"{base['max'] / 1000:.1f} ms")
            if (q["errors"] or q["non_2xx"] or q["unfinished"] or q["dropped"]
                    or q["ok"] != q["scheduled"] or q["scheduled"] < RATE * DURATION * 0.9):
                failures.append(f"{name}: {q}")
        print("\n" + "\n".join(lines), file=sys.stderr)
        self.assertEqual(failures, [], "\n".join(lines))

    def echo_port_and_socket_path(self):
        """(port, echo_port, path): a free port for a TCP listener, an echo server's port, and a
        path for a hand-over socket (at most 107 bytes: not under the test's temporary
        directory)."""
        echo = EchoServer()
        self.addCleanup(echo.close)
        socket_dir = tempfile.mkdtemp(prefix="meshlet-hand-over-", dir="/tmp")
        self.addCleanup(shutil.rmtree, socket_dir, True)
        return free_port(), echo.port, os.path.join(socket_dir, "sidecar")

    def test_a_successor_never_ready_gives_up_and_the_running_one_serves_on(self):
        port, echo_port, path = self.echo_port_and_socket_path()
        running = sidecar_test.Sidecar(
            tempfile.mkdtemp(dir=self.tmp),
            config_yaml(tcp_listener("tcp", port, "echo"),
                        static_cluster("echo", echo_port)),
            f"--hand-over={path}")
        self.sidecars.append(running)
        # Its configuration would come from a control plane that is not there: never ready.
        never_ready = [f"--xds=127.0.0.1:{free_port()}", "--xds-plaintext=true",
                       "--node-id=successor"]
        for extra, stop, says in ((["--hand-over-timeout=1s"], False, "not ready within 1s"),
                                  ([], True, "stopped by a signal before ready")):
            log_path = os.path.join(self.tmp, f"successor-{len(self.processes)}.stderr")
            with open(log_path, "w") as err:
                new = subprocess.Popen(running.argv + never_ready + extra,
                                       stdout=subprocess.DEVNULL, stderr=err)
            self.processes.append(new)

            def log():
                with open(log_path) as f:
                    return f.read()

            self.assertTrue(wait_for(lambda: "hand-over: taking over from pid" in log(),
                                     timeout=10), log())
            if stop:
                # At once, not after --hand-over-timeout (60 s).
                new.send_signal(signal.SIGTERM)
            self.assertEqual(new.wait(timeout=5), 1, log())
            self.assertIn(says, log())
            self.assertIn(f"pid {running.proc.pid} serves on", log())
            # The running one was never told to stop: it serves, and serves the socket still.
            self.assertEqual(echo_round_trip(port, b"ping"), b"ping")
            self.assertEqual(running.get("/ready")[0], 200)
            self.assertTrue(json.loads(running.get("/hand_over")[1])["serving"])
        # Each abandoned exchange counted.
        self.assertTrue(wait_for(lambda: 'meshlet_server_hand_overs_total{side="failed"}: 2' in
                                 running.get("/stats?filter=hand_overs")[1]),
                        running.get("/stats?filter=hand_overs")[1])
        self.assertIsNone(running.proc.poll())

    def test_a_predecessor_that_does_not_confirm_leaves_the_new_one_serving(self):
        port, echo_port, path = self.echo_port_and_socket_path()
        # The stand-in predecessor: its listening socket for the sidecar's listener (in a
        # SO_REUSEPORT group, as a worker's), and its hand-over socket.
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        tcp.bind(("127.0.0.1", port))
        tcp.listen(16)
        self.addCleanup(tcp.close)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(path)
        os.chmod(path, 0o600)
        unix.listen(4)
        self.addCleanup(unix.close)
        got_ready, finished = threading.Event(), threading.Event()
        errors = []

        def predecessor():
            try:
                conn, _ = unix.accept()
                with conn:
                    read_frame(conn)  # HandOverRequest
                    socket_field = pb_field(1, f"127.0.0.1:{port}".encode()) + pb_field(2, 1)
                    offer = pb_field(2, b"9.9.9") + pb_field(3, os.getpid()) + pb_field(
                        4, socket_field)
                    conn.sendall(struct.pack(">I", len(offer)) + offer)
                    socket.send_fds(conn, [b"S"], [tcp.fileno()])
                    read_frame(conn)  # HandOverReady
                    got_ready.set()
                    # No HandOverDone, and the hand-over socket listens on.
                    finished.wait(30)
            except Exception as e:  # noqa: BLE001 (reported by the test)
                errors.append(repr(e))

        thread = threading.Thread(target=predecessor, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 5)
        self.addCleanup(finished.set)  # (cleanups run last first)
        new = sidecar_test.Sidecar(
            tempfile.mkdtemp(dir=self.tmp),
            config_yaml(tcp_listener("tcp", port, "echo"),
                        static_cluster("echo", echo_port)),
            f"--hand-over={path}", "--hand-over-confirm-timeout=1s", concurrency=1,
            wait_ready=False)
        self.sidecars.append(new)
        self.assertTrue(wait_for(lambda: "serving without it" in new.log() or
                                 new.proc.poll() is not None, timeout=15), new.log())
        self.assertEqual(errors, [])
        self.assertTrue(got_ready.is_set())
        self.assertIn("did not confirm that it stopped accepting", new.log())
        time.sleep(0.2)
        self.assertIsNone(new.proc.poll(), "the new sidecar exited: " + new.log())
        # It serves on the socket it took over (the stand-in accepts nothing).
        self.assertEqual(echo_round_trip(port, b"ping"), b"ping")
        self.assertEqual(new.get("/ready")[0], 200)
        state = json.loads(new.get("/hand_over")[1])
        self.assertFalse(state["serving"], state)
        self.assertIn("another process", state["serve_error"])
        self.assertEqual(state["taken_over"]["pid"], os.getpid())
        self.assertEqual(state["taken_over"]["predecessor_connections"], -1)
        self.assertEqual(new.stat("meshlet_server_hand_over_serve_failures_total"), 1)
        self.assertEqual(new.stat("meshlet_server_hand_overs_total"), 1)  # took_over


if __name__ == "__main__":
    CONTROL_PLANE, SIDECAR, LOADGEN = (os.path.abspath(a) for a in sys.argv[1:4])
    sidecar_test.SIDECAR = SIDECAR
    unittest.main(argv=[sys.argv[0]] + sys.argv[4:], verbosity=2)
