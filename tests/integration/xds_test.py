"""The xDS path end to end with real binaries on 127.0.0.1: a control plane (xds-file-server)
streams configuration to real sidecars over TLS.

Usage: xds_test.py FILE_SERVER_BINARY SIDECAR_BINARY CONTROL_PLANE_BINARY MESHCTL [unittest args]

Covers: push → apply → ACK (versions agree on both sides), updates applied under load without a
failed request, an invalid resource NACKed with its reason visible in the control plane's proxy
status while the sidecar keeps serving, the control plane killed (sidecar keeps serving), the
sidecar restarted while the control plane is down (serves its saved configuration), the control
plane back (reconnect and converge), and the delta stream (updates and removals). Most cases use
xds-file-server (resources from a file, so each case controls exactly what is pushed); one runs
the control-plane binary itself, whose translated configuration real sidecars must ACK.
"""

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import cp_api
import xds_util
from xds_util import ControlPlane, XdsSidecar, free_port, http_get, resources_yaml, wait_for

FILE_SERVER = None
SIDECAR = None
CONTROL_PLANE = None
MESHCTL = None


def body_is(port, expected):
    try:
        status, body = http_get(port, "/")
    except OSError:
        return False
    return status == 200 and body == expected


class Load:
    """Keeps requesting GET / on a thread; counts responses other than 200."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.failed = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                status, body = http_get(self.port, "/")
                if status == 200:
                    self.ok += 1
                else:
                    self.failed.append((status, body))
            except OSError as e:
                self.failed.append(("error", str(e)))

    def stop(self):
        self.running = False
        self.thread.join()


class XdsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.ca, self.cert, self.key = xds_util.make_server_cert(self.dir)
        self.cache = os.path.join(self.dir, "cache")
        self.procs = []

    def tearDown(self):
        for proc in self.procs:
            proc.kill()
        self.tmp.cleanup()

    def control_plane(self, yaml_text, port=None):
        cp = ControlPlane(FILE_SERVER, self.dir, yaml_text, port=port, cert=self.cert,
                          key=self.key)
        self.procs.append(cp)
        return cp

    def sidecar(self, xds_port, node_id="web-1", delta=None):
        sidecar = XdsSidecar(SIDECAR, self.dir, xds_port, node_id, ca=self.ca, delta=delta,
                             cache_dir=self.cache, extra=[
                                 "--xds-server-identity="
                                 "spiffe://cluster.local/ns/mesh/sa/control-plane"])
        self.procs.append(sidecar)
        return sidecar

    def assert_converged(self, cp, sidecar, node_id="web-1"):
        """Every type ACKed, and the sidecar runs the versions the control plane sent."""
        def converged():
            types = cp.types(node_id)
            # A delta stream sends nothing for a type that has no resources.
            return types and types["listeners"]["state"] == "ACKED" and all(
                t["state"] == "ACKED" or (t["state"] == "NOT_SENT" and t["resources"] == 0)
                for t in types.values())
        self.assertTrue(wait_for(converged), cp.status())
        types = cp.types(node_id)
        for t in sidecar.xds()["types"]:
            self.assertEqual(t["version"], types[t["type"]]["version_acked"], t)
            self.assertEqual(t["version"], types[t["type"]]["version_sent"], t)

    def test_push_apply_ack_nack_outage_and_recovery(self):
        web = free_port()
        cp = self.control_plane(resources_yaml(web, "v1"))
        sidecar = self.sidecar(cp.port)
        self.assertTrue(wait_for(lambda: body_is(web, "v1")), sidecar.log())
        self.assert_converged(cp, sidecar)
        proxy = cp.proxy("web-1")
        self.assertEqual(proxy["service"], "web")
        # The sidecar's default stream.
        self.assertEqual(proxy["mode"], "delta")
        self.assertTrue(proxy["connected_since"])
        self.assertTrue(sidecar.xds()["connected"])
        self.assertIn('meshlet_xds_connected_proxies 1', cp.metrics())

        # An update under load: applied within a second, no request fails.
        load = Load(web)
        time.sleep(0.2)
        started = time.time()
        cp.reload(resources_yaml(web, "v2"))
        self.assertTrue(wait_for(lambda: body_is(web, "v2"), timeout=5))
        elapsed = time.time() - started
        time.sleep(0.2)
        load.stop()
        self.assertLess(elapsed, 1.0)
        self.assertEqual(load.failed, [])
        self.assertGreater(load.ok, 10)
        self.assert_converged(cp, sidecar)

        # A route naming a cluster that does not exist: NACKed with the reason, and the sidecar
        # keeps serving v2.
        cp.reload(resources_yaml(web, "v3", route_cluster="missing"))
        self.assertTrue(wait_for(lambda: cp.types("web-1").get("routes", {}).get("state") ==
                                 "NACKED"), cp.status())
        nack = cp.types("web-1")["routes"]["last_nack"]
        self.assertIn('names no Cluster', nack["message"])
        self.assertIn('"missing"', nack["message"])
        self.assertEqual(nack["code"], 3)
        self.assertIn("names no Cluster", [t for t in sidecar.xds()["types"]
                                           if t["type"] == "routes"][0]["last_error"])
        self.assertTrue(body_is(web, "v2"))
        self.assertIn('meshlet_xds_nacks_total{type="routes"} 1', cp.metrics())
        # Not pushed again in a loop.
        time.sleep(0.5)
        self.assertEqual(cp.types("web-1")["routes"]["nacks"], 1)

        # The control plane goes away: the sidecar keeps serving.
        cp.kill()
        self.assertTrue(wait_for(lambda: not sidecar.xds()["connected"]))
        self.assertTrue(body_is(web, "v2"))

        # Restarted while the control plane is down: it serves its saved configuration.
        sidecar.kill()
        self.assertTrue(wait_for(lambda: not body_is(web, "v2"), timeout=5))
        sidecar = self.sidecar(cp.port)
        self.assertTrue(body_is(web, "v2"), sidecar.log())
        self.assertIn("saved", sidecar.log())

        # The control plane is back with a fixed configuration: reconnect and converge.
        cp2 = self.control_plane(resources_yaml(web, "v4"), port=cp.port)
        self.assertTrue(wait_for(lambda: body_is(web, "v4"), timeout=20), sidecar.log())
        self.assert_converged(cp2, sidecar)
        self.assertGreaterEqual(sidecar.xds()["streams_started"], 2)

    def test_graceful_shutdown_sends_goaway(self):
        web = free_port()
        cp = self.control_plane(resources_yaml(web, "v1"))
        sidecar = self.sidecar(cp.port)
        self.assertTrue(wait_for(lambda: body_is(web, "v1")))
        self.assertEqual(cp.stop(), 0)
        self.assertTrue(wait_for(lambda: not sidecar.xds()["connected"]))
        self.assertIn("UNAVAILABLE", sidecar.xds()["last_stream_error"])
        self.assertTrue(body_is(web, "v1"))

    def test_wrong_control_plane_identity_is_refused(self):
        web = free_port()
        cp = self.control_plane(resources_yaml(web, "v1"))
        sidecar = XdsSidecar(SIDECAR, self.dir, cp.port, "web-x", ca=self.ca, extra=[
            "--xds-server-identity=spiffe://cluster.local/ns/mesh/sa/someone-else"],
            wait_ready=False)
        self.procs.append(sidecar)
        self.assertTrue(wait_for(lambda: sidecar.xds()["streams_started"] >= 2))
        self.assertFalse(sidecar.xds()["connected"])
        self.assertEqual(sidecar.ready_status(), 503)
        self.assertIsNone(cp.proxy("web-x"))
        self.assertFalse(body_is(web, "v1"))

    def test_ready_waits_for_the_first_configuration(self):
        web, xds_port = free_port(), free_port()
        identity = "--xds-server-identity=spiffe://cluster.local/ns/mesh/sa/control-plane"
        for delta in (False, True):
            # No control plane yet and nothing saved: listening for admin, but not ready.
            cache = os.path.join(self.dir, f"cache-ready-{delta}")
            sidecar = XdsSidecar(SIDECAR, self.dir, xds_port, f"web-ready-{delta}", ca=self.ca,
                                 delta=delta, cache_dir=cache, extra=[identity], wait_ready=False)
            self.procs.append(sidecar)
            time.sleep(0.3)
            status, body = http_get(sidecar.admin_port, "/ready")
            self.assertEqual((status, body),
                             (503, "NOT READY: no complete configuration from the control plane "
                                   "yet\n"))
            # The control plane appears: ready once its configuration is applied.
            cp = self.control_plane(resources_yaml(web, "v1"), port=xds_port)
            self.assertTrue(wait_for(sidecar.ready, timeout=20), sidecar.log())
            self.assertTrue(body_is(web, "v1"))
            # Restarted while the control plane is down: ready from the saved configuration.
            cp.kill()
            sidecar.kill()
            again = XdsSidecar(SIDECAR, self.dir, xds_port, f"web-ready-{delta}", ca=self.ca,
                               delta=delta, cache_dir=cache, extra=[identity])
            self.procs.append(again)
            self.assertTrue(body_is(web, "v1"))
            again.kill()

    def test_not_ready_while_a_listener_cannot_bind(self):
        # A port another socket holds (no SO_REUSEPORT, so the sidecar's bind fails).
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        web = free_port()
        cp = self.control_plane(resources_yaml(web, "v1", extra_listener_port=taken))
        sidecar = XdsSidecar(SIDECAR, self.dir, cp.port, "web-unbound", ca=self.ca,
                             cache_dir=self.cache, wait_ready=False, extra=[
                                 "--xds-server-identity="
                                 "spiffe://cluster.local/ns/mesh/sa/control-plane"])
        self.procs.append(sidecar)
        self.assertTrue(wait_for(lambda: body_is(web, "v1")), sidecar.log())
        # The other listener serves, but the proxy is not ready, says why, and counts it.
        expected = f'NOT READY: listener not bound: listener "extra" (127.0.0.1:{taken})'
        self.assertTrue(wait_for(
            lambda: http_get(sidecar.admin_port, "/ready")[1].startswith(expected)),
            http_get(sidecar.admin_port, "/ready"))
        self.assertEqual(http_get(sidecar.admin_port, "/ready")[0], 503)
        stats = http_get(sidecar.admin_port, "/stats?filter=meshlet_listeners_unbound")[1]
        self.assertIn("meshlet_listeners_unbound: 1", stats)
        # The control plane hears it (a gateway's Programmed condition follows this readiness).
        self.assertTrue(wait_for(lambda: (cp.proxy("web-unbound") or {}).get(
            "notReady", "").startswith(expected[len("NOT READY: "):])), cp.status())
        # The port freed: the proxy binds it on its own next retry (--listener-bind-retry),
        # without a new configuration, and is ready.
        busy.close()
        self.assertTrue(wait_for(sidecar.ready), http_get(sidecar.admin_port, "/ready"))
        self.assertTrue(body_is(taken, "v1"))
        stats = http_get(sidecar.admin_port, "/stats?filter=meshlet_listener_bind_retries")[1]
        self.assertRegex(stats, r"meshlet_listener_bind_retries_total: [1-9]")
        # Configured again on another port: moved, still ready.
        extra = free_port()
        cp.reload(resources_yaml(web, "v2", extra_listener_port=extra))
        self.assertTrue(wait_for(lambda: body_is(extra, "v2")), sidecar.log())
        self.assertTrue(sidecar.ready(), http_get(sidecar.admin_port, "/ready"))
        stats = http_get(sidecar.admin_port, "/stats?filter=meshlet_listeners_unbound")[1]
        self.assertIn("meshlet_listeners_unbound: 0", stats)
        self.assertTrue(wait_for(lambda: "notReady" not in cp.proxy("web-unbound")))

    def test_delta_updates_and_removals(self):
        web, extra, upstream = free_port(), free_port(), free_port()
        cp = self.control_plane(resources_yaml(web, "v1", extra_listener_port=extra))
        sidecar = self.sidecar(cp.port, node_id="web-delta", delta=True)
        self.assertTrue(wait_for(lambda: body_is(web, "v1") and body_is(extra, "v1")))
        self.assert_converged(cp, sidecar, "web-delta")
        self.assertEqual(cp.proxy("web-delta")["mode"], "delta")
        # The lookup-key table (ADR 0086) joins the xDS status: nothing asked yet, and no listener
        # with on_demand, so the flags' idle time and missing ttl.
        self.assertEqual(sidecar.xds()["on_demand"],
                         {"max_keys": 4096, "idle_time_s": 900, "missing_ttl_s": 30, "keys": []})
        # Remove the extra listener and add a cluster: the listener goes away, the rest updates.
        cp.reload(resources_yaml(web, "v2", cluster_port=upstream))
        self.assertTrue(wait_for(lambda: body_is(web, "v2")))
        self.assertTrue(wait_for(lambda: not body_is(extra, "v2") and not body_is(extra, "v1")))
        self.assert_converged(cp, sidecar, "web-delta")
        types = cp.types("web-delta")
        self.assertEqual(types["listeners"]["resources"], 1)
        self.assertEqual(types["clusters"]["resources"], 1)
        # Then drop the cluster and the route naming it in one change: route first, then cluster.
        cp.reload(resources_yaml(web, "v3"))
        self.assertTrue(wait_for(lambda: body_is(web, "v3")))
        self.assert_converged(cp, sidecar, "web-delta")
        self.assertEqual(cp.types("web-delta")["clusters"]["resources"], 0)
        self.assertEqual(cp.types("web-delta")["routes"]["nacks"], 0)
        self.assertEqual(cp.types("web-delta")["clusters"]["nacks"], 0)

    def test_removing_a_cluster_and_its_route_together_is_never_nacked(self):
        web, upstream = free_port(), free_port()
        cp = self.control_plane(resources_yaml(web, "v1", cluster_port=upstream))
        sidecar = self.sidecar(cp.port)
        self.assertTrue(wait_for(lambda: body_is(web, "v1")))
        self.assert_converged(cp, sidecar)
        cp.reload(resources_yaml(web, "v2"))
        self.assertTrue(wait_for(lambda: body_is(web, "v2")))
        self.assert_converged(cp, sidecar)
        types = cp.types("web-1")
        self.assertEqual(sum(t["nacks"] for t in types.values()), 0, types)
        self.assertEqual(types["clusters"]["resources"], 0)


class RealControlPlaneTest(unittest.TestCase):
    """Sidecars against the control-plane binary: they register, ACK the translator's resources
    (no NACK), report the same versions, and proxy-config shows what was sent and what the
    sidecar runs; keepalive PINGs find a sidecar that stopped answering."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.work = self.tmp.name
        self.ca, self.cert, self.key = xds_util.make_server_cert(self.work)
        self.sidecars = []
        self.cp = None

    def tearDown(self):
        for sidecar in self.sidecars:
            try:
                os.kill(sidecar.proc.pid, signal.SIGCONT)
            except OSError:
                pass
            sidecar.kill()
        if self.cp is not None:
            self.cp.terminate()
            self.cp.wait(timeout=10)
            self.cp_log.close()
        self.tmp.cleanup()

    def start_control_plane(self, *flags):
        self.xds_port, self.api_port = free_port(), free_port()
        self.data = os.path.join(self.work, "data")
        self.cp_log = open(os.path.join(self.work, "cp.log"), "w")
        self.cp = subprocess.Popen(
            [CONTROL_PLANE, f"--data-dir={self.data}", f"--api-address=127.0.0.1:{self.api_port}",
             f"--xds-address=127.0.0.1:{self.xds_port}", f"--xds-tls-cert={self.cert}",
             f"--xds-tls-key={self.key}", "--xds-listen-host=127.0.0.1", *flags],
            stdout=subprocess.DEVNULL, stderr=self.cp_log)
        token_path = os.path.join(self.data, "api-token")
        self.ca_file = cp_api.root_file(self.data)
        self.assertTrue(wait_for(lambda: os.path.exists(token_path) and
                                 http_get(self.api_port, "/healthz", ca_file=self.ca_file)[0]
                                 == 200))
        with open(token_path) as f:
            self.token = f.read().strip()
        self.context = os.path.join(self.work, "meshctl.yaml")
        with open(self.context, "w") as f:
            f.write(f"server: 127.0.0.1:{self.api_port}\ntoken: {self.token}\n"
                    f"certificateAuthority: {self.ca_file}\n")

    def api(self, path, method="GET", body=None):
        req = urllib.request.Request(f"https://127.0.0.1:{self.api_port}{path}", method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5,
                                    context=cp_api.ssl_context(self.ca_file)) as resp:
            return json.loads(resp.read())

    def meshctl(self, *args):
        p = subprocess.run([MESHCTL, "--context-file", self.context, *args], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def add_sidecar(self, name, extra=()):
        # The discovery port serves sidecars that present their workload certificate: each buys
        # one from the CA on the same port with a join token for its own service account.
        token = self.api("/api/v1/tokens", "POST",
                         {"namespace": "default", "serviceAccount": name, "ttl": "10m"})["token"]
        token_file = os.path.join(self.work, f"{name}-{time.time_ns()}.token")
        with open(token_file, "w") as f:
            f.write(token)
        # Loopback: every sidecar needs its own inbound/outbound ports.
        args = [f"--node-service={name}", "--node-port=8080", "--node-address=127.0.0.1",
                f"--node-service-account={name}", f"--join-token-file={token_file}",
                f"--ca-address=127.0.0.1:{self.xds_port}",
                f"--node-label=meshlet.io/inbound-port={free_port()}",
                f"--node-label=meshlet.io/outbound-port={free_port()}", *extra]
        sidecar = XdsSidecar(SIDECAR, self.work, self.xds_port, f"{name}-0.default", ca=self.ca,
                             extra=args)
        self.sidecars.append(sidecar)
        return sidecar

    def proxies(self):
        return {p["id"]: p for p in self.api("/api/v1/proxies")["items"]}

    def workloads(self):
        return {w["id"]: w for w in self.api("/api/v1/workloads")["items"]}

    def test_sidecars_converge_on_translated_configuration(self):
        self.start_control_plane()
        for name in ("web", "api"):
            self.add_sidecar(name)

        def converged():
            items = self.proxies()
            return len(items) == 2 and all(
                t["state"] == "ACKED" for p in items.values() for t in p["types"].values())
        self.assertTrue(wait_for(converged, timeout=10),
                        json.dumps(self.proxies()) + self.sidecars[0].log())
        items = self.proxies()
        for sidecar, node_id in zip(self.sidecars, ("web-0.default", "api-0.default")):
            urls = {t["type"]: t["version"] for t in sidecar.xds()["types"]}
            sent = items[node_id]["types"]
            self.assertEqual(
                urls["clusters"], sent["type.googleapis.com/meshlet.xds.Cluster"]["acked"])
            self.assertEqual(
                urls["listeners"], sent["type.googleapis.com/meshlet.xds.Listener"]["acked"])
            self.assertEqual(sidecar.xds()["updates_refused"], 0, sidecar.log())
        config = self.api("/api/v1/proxies/web-0.default/config")
        self.assertIn("listeners", [t["type"] for t in config["types"]])
        self.assertIn("web-0.default", self.workloads())

    def test_proxy_config_shows_the_sidecars_view_and_the_difference(self):
        self.start_control_plane()
        # A static cluster under the name the translator will give Service "api" port 9090: once
        # that Service exists, the sidecar refuses the clusters update (NACK) and keeps running
        # the older one.
        bootstrap = os.path.join(self.work, "bootstrap.yaml")
        with open(bootstrap, "w") as f:
            f.write('static_resources:\n  clusters:\n  - name: "outbound|9090||api.default"\n'
                    '    connect_timeout: 1s\n    load_assignment:\n      endpoints:\n'
                    '      - address: 127.0.0.1:9\n')
        # web declares api, so api's cluster is pushed to it unasked (on-demand, the default,
        # pushes declared dependencies; others only once called).
        sidecar = self.add_sidecar("web", extra=[f"--config={bootstrap}",
                                                 "--node-label=meshlet.io/dependencies=api"])

        # In sync once the sidecar has reported ready and the push that follows (the endpoint of
        # web itself) has landed; one and the same answer is then judged below.
        seen = {}

        def in_sync():
            if not self.workloads().get("web-0.default", {}).get("ready"):
                return False
            config = json.loads(self.meshctl("proxy-config", "web-0.default", "-o", "json"))
            seen["config"] = config if config["sidecar"] and config["diff"] == [] else None
            return seen["config"] is not None
        config = seen["config"] if wait_for(in_sync) else None
        if not config:
            self.cp_log.flush()
            with open(os.path.join(self.work, "cp.log")) as f:
                cp_log = f.read()
            self.fail("%s\n--- the control plane's log ---\n%s\n--- the sidecar's log ---\n%s\n"
                      "--- proxies ---\n%s" % (self.meshctl("proxy-config", "web-0.default"),
                                                cp_log[-6000:], sidecar.log()[-6000:],
                                                json.dumps(self.proxies())))
        # Both views: the sidecar's versions are those the control plane sent and it ACKed.
        held = {t["type"]: t for t in config["sidecar"]["types"]}
        for t in config["types"]:
            self.assertEqual(held[t["type"]]["version"], t["version_acked"], t["type"])
            self.assertEqual({r["name"] for r in held[t["type"]]["resources"]},
                             {r["name"] for r in t["resources"]}, t["type"])
        self.assertIn('"xds"', json.dumps(config["sidecar"]["configDump"]))
        text = self.meshctl("proxy-config", "web-0.default")
        self.assertIn("No differences", text)
        self.assertIn("SIDECAR RUNS", text)

        self.api("/apis/meshlet.io/v1/namespaces/default/services", "POST",
                 {"apiVersion": "meshlet.io/v1", "kind": "Service", "metadata": {"name": "api"},
                  "spec": {"ports": [{"port": 9090}]}})
        cluster_type = "type.googleapis.com/meshlet.xds.Cluster"
        self.assertTrue(wait_for(lambda: self.proxies()["web-0.default"]["types"][cluster_type]
                                 ["state"] == "NACKED"), json.dumps(self.proxies()))
        config = json.loads(self.meshctl("proxy-config", "web-0.default", "-o", "json"))
        diff = {d["type"]: d for d in config["diff"]}
        self.assertIn("clusters", diff, config["diff"])
        clusters = diff["clusters"]
        self.assertIn("outbound|9090||api.default", clusters["onlyControlPlane"])
        self.assertIn("static_resources", clusters["sidecarError"])
        self.assertNotEqual(clusters["versionSidecar"], clusters["versionSent"])
        self.assertEqual(clusters["versionSidecar"], clusters["versionAcked"])
        text = self.meshctl("proxy-config", "web-0.default")
        self.assertIn("+ outbound|9090||api.default (not on the sidecar)", text)
        self.assertIn("sidecar refused the last update", text)
        # Only the control plane's view when asked so: no request reaches the sidecar.
        text = self.meshctl("proxy-config", "web-0.default", "--control-plane-only")
        self.assertIn("not asked for", text)

    def test_keepalive_finds_a_sidecar_that_stopped_answering(self):
        self.start_control_plane("--xds-keepalive-interval=500ms", "--xds-keepalive-timeout=1s",
                                 "--deregister-grace=1s")
        sidecar = self.add_sidecar("web")
        self.assertTrue(wait_for(lambda: "web-0.default" in self.proxies()))
        self.assertTrue(self.workloads()["web-0.default"]["connected"])
        # Still connected after several idle keepalive periods: the sidecar answers the PINGs.
        time.sleep(1.5)
        self.assertIn("web-0.default", self.proxies())
        # A stopped process: its kernel keeps the TCP connection open, nothing answers PINGs.
        os.kill(sidecar.proc.pid, signal.SIGSTOP)
        stopped = time.time()
        self.assertTrue(wait_for(lambda: "web-0.default" not in self.proxies(), timeout=6))
        # Interval + timeout is 1.5 s; without keepalive the stream would stay until TCP gives up.
        self.assertLess(time.time() - stopped, 4.0)
        # Deregistered once the grace period passed.
        self.assertTrue(wait_for(lambda: "web-0.default" not in self.workloads(), timeout=5))
        # Resumed: it notices the closed connection, reconnects and registers again.
        os.kill(sidecar.proc.pid, signal.SIGCONT)
        self.assertTrue(wait_for(lambda: "web-0.default" in self.workloads(), timeout=15),
                        sidecar.log())

    def test_slow_and_idle_api_clients_are_closed(self):
        self.start_control_plane("--http-request-timeout=1s", "--http-idle-timeout=2s")
        slow = cp_api.ssl_context(self.ca_file).wrap_socket(
            socket.create_connection(("127.0.0.1", self.api_port)))
        self.addCleanup(slow.close)
        slow.settimeout(10)
        start = time.time()
        slow.sendall(b"GET /api/v1/proxies HTTP/1.1\r\nHost: a\r\nAuthoriza")
        received = b""
        try:
            while chunk := slow.recv(4096):
                received += chunk
        except (ssl.SSLEOFError, ConnectionResetError):
            pass  # closed right after the answer, without close_notify
        self.assertTrue(received.startswith(b"HTTP/1.1 408 "), received)
        self.assertLess(time.time() - start, 1.9)  # the request timeout, not the idle one
        # A connection that never starts its TLS handshake is idle too.
        idle = socket.create_connection(("127.0.0.1", self.api_port))
        self.addCleanup(idle.close)
        idle.settimeout(10)
        start = time.time()
        self.assertEqual(idle.recv(4096), b"")
        self.assertGreater(time.time() - start, 1.5)
        metrics = self.api_text("/metrics")
        self.assertIn('meshlet_cp_http_timeouts_total{server="api"} 2', metrics)

    def api_text(self, path):
        req = urllib.request.Request(f"https://127.0.0.1:{self.api_port}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=5,
                                    context=cp_api.ssl_context(self.ca_file)) as resp:
            return resp.read().decode()


if __name__ == "__main__":
    FILE_SERVER = os.path.abspath(sys.argv.pop(1))
    SIDECAR = os.path.abspath(sys.argv.pop(1))
    CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    MESHCTL = os.path.abspath(sys.argv.pop(1))
    unittest.main()
