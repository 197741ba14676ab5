"""On-demand discovery (docs/xds.md, "On-demand discovery"; ADR 0086) with the real control plane
and a captured sidecar: the first connection to each Service address succeeds, the sidecar holds
only what its pod called, and an address no Service has is refused after its lookup.

Usage: on_demand_test.py CONTROL_PLANE MESHCTL SIDECAR

The control plane (plaintext xDS and API) and one upstream sidecar in front of a Python app run in
this namespace, on 198.18.16.2, the host end of a veth pair; the "pod" namespace holds the other
end (198.18.16.1) and routes the Service range 240.240.0.0/16 to it. In the pod, `sidecar init`
programs the nat table and the caller's sidecar (node labels meshlet.io/capture: iptables and
meshlet.io/discovery: on-demand) runs with its capture listeners; the app is curl as uid 1000.
MeshConfig's outboundTrafficPolicy is REGISTRY_ONLY, so an address nothing answers is refused
(502, response flag NM) instead of leaving the pod.

Twelve Services svc-0..svc-11 (HTTP port 80, addresses 240.240.1.N) select the same upstream. The
caller starts holding none of them; curl to ten of the addresses succeeds on its first try each,
each connection having waited for its lookup (the sidecar's wait counters say found ten times);
afterwards the sidecar holds exactly those ten ServiceRoutes, not svc-10 or svc-11; a second round
does not wait. An address inside the range that no Service has waits, is answered not found and
gets the listener's REGISTRY_ONLY refusal. With MeshConfig discovery.idleTime 10s, svc-11, called
once and then left alone, leaves the sidecar (ServiceRoute and clusters) about ten seconds later,
and its next call looks it up again. Prints the first-call and second-call times (p50/max)
beside the round trip to the control plane's address, and when the unused Service left.

Needs root, ip, setpriv, iptables and curl; without them it prints "SKIP: needs root and
iptables". Everything it creates (namespaces, the veth pair, processes) is removed at the end,
also on failure.
"""

import atexit
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import unittest

import cp_api
import netns
import sidecar_test
from mesh_util import meshctl, start_xds_sidecar, stop_process, write_meshctl_context
from netns import PATH, in_ns, run
from sidecar_test import HttpUpstream

CONTROL_PLANE = MESHCTL = SIDECAR = None  # set from argv
PREFIX = "mlod"  # the pod namespace: mlod<pid>p
POD = f"{PREFIX}{os.getpid()}p"
VETH_HOST = f"mlo{os.getpid()}a"
VETH_POD = f"mlo{os.getpid()}b"
POD4, HOST4 = "198.18.16.1", "198.18.16.2"
APP_USER = 1000
SERVICES = 12
CALLED = 10
UNKNOWN_VIP = "240.240.1.200"

processes = []
workdir = tempfile.mkdtemp(prefix="on_demand_test.", dir=os.environ.get("TEST_TMPDIR"))


def vip(i):
    return f"240.240.1.{i + 1}"


def service_yaml(i):
    return f"""apiVersion: meshlet.io/v1
kind: Service
metadata: {{name: svc-{i}, namespace: default}}
spec:
  selector: {{app: echo}}
  addresses: [{vip(i)}]
  ports: [{{name: http, port: 80, protocol: HTTP}}]
"""


MESH_CONFIG = """apiVersion: meshlet.io/v1
kind: MeshConfig
metadata: {name: mesh}
spec: {outboundTrafficPolicy: REGISTRY_ONLY, discovery: {idleTime: 10s}}
"""


def as_app(*args):
    """Runs a command in the pod as the app's uid (captured)."""
    return in_ns(POD, "setpriv", f"--reuid={APP_USER}", f"--regid={APP_USER}", "--clear-groups",
                 *args, check=False)


def curl(address):
    """(HTTP status, seconds) of the app's GET http://ADDRESS/ (status 0: no answer)."""
    result = as_app("curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w",
                    "%{http_code} %{time_total}", f"http://{address}/")
    code, _, seconds = result.stdout.strip().partition(" ")
    return int(code or 0), float(seconds or 0)


def wait_until(condition, timeout):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


def teardown():
    netns.teardown(processes, (POD,))
    shutil.rmtree(workdir, ignore_errors=True)


class CallerSidecar:
    """The caller's sidecar in the pod, configured by the control plane only."""

    def __init__(self, ads):
        self.stderr_path = os.path.join(workdir, "caller.stderr")
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", POD, SIDECAR, "--admin-address=127.0.0.1:15000",
             "--concurrency=2", "--drain-time=1s", f"--xds={ads}", "--xds-plaintext=true",
             "--node-id=caller-0", "--node-namespace=default", f"--node-address={POD4}",
             "--node-label=app=caller", "--node-label=meshlet.io/capture=iptables",
             "--node-label=meshlet.io/discovery=on-demand"],
            stdout=subprocess.DEVNULL, stderr=self.stderr, env={"PATH": PATH})
        processes.append(self.proc)

    def log(self):
        self.stderr.flush()
        with open(self.stderr_path) as f:
            return f.read()

    def admin(self, path):
        """(status, body) of an admin request."""
        result = in_ns(POD, "curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}",
                       f"http://127.0.0.1:15000{path}", check=False)
        body, _, code = result.stdout.rpartition("\n")
        return int(code or 0), body

    def wait_ready(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"caller exited with {self.proc.returncode}: {self.log()}")
            if self.admin("/ready")[0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError("caller did not become ready: " + self.log())

    def stat(self, name, **labels):
        """Sum of the series of `name` whose labels include `labels`."""
        total = 0
        for line in self.admin("/stats?filter=" + name)[1].splitlines():
            series, _, value = line.rpartition(": ")
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += int(value)
        return total

    def service_routes(self):
        """Names of the ServiceRoutes the sidecar holds (its /config_dump)."""
        return self.resource_names("service_routes")

    def resource_names(self, kind):
        """Names of the resources of `kind` the sidecar holds (its /config_dump)."""
        dump = json.loads(self.admin("/config_dump")[1])
        return sorted(r["name"] for r in dump.get("resources", {}).get(kind, []))

    def stop(self):
        stop_process(self.proc)
        self.stderr.close()


class OnDemandTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=workdir)
        data = os.path.join(cls.tmp, "cp-data")
        log_path = os.path.join(cls.tmp, "cp.log")
        with open(log_path, "ab") as log:
            cls.cp = subprocess.Popen(
                [CONTROL_PLANE, "--data-dir", data, "--api-address", "127.0.0.1:0",
                 "--xds-plaintext", "--xds-address", f"{HOST4}:0"], stdout=log, stderr=log)
        processes.append(cls.cp)
        deadline = time.time() + 15
        while True:
            with open(log_path) as f:
                text = f.read()
            api = re.findall(r"API on (127\.0\.0\.1:\d+)", text)
            ads = re.findall(r"ADS on ([\d.]+:\d+)", text)
            if api and ads and "ca: issuing" in text:
                break
            if cls.cp.poll() is not None or time.time() > deadline:
                raise AssertionError("control plane did not start: " + text)
            time.sleep(0.05)
        cls.api, cls.ads, cls.cp_log = api[-1], ads[-1], log_path
        cp_api.pin_from_log(cls.api, log_path, log_path + ".ca.pem")
        with open(os.path.join(data, "api-token")) as f:
            token = f.read().strip()
        cls.context = os.path.join(cls.tmp, "meshctl.yaml")
        token_file = os.path.join(cls.tmp, "api-token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        write_meshctl_context(cls.context, cls.api, token_file)
        policy = os.path.join(cls.tmp, "policy.yaml")
        with open(policy, "w") as f:
            f.write("---\n".join([MESH_CONFIG] + [service_yaml(i) for i in range(SERVICES)]))
        meshctl(MESHCTL, cls.context, "apply", "-f", policy)

        # The upstream: one sidecar in front of the app, on the host end of the veth pair.
        cls.app = HttpUpstream("echo")
        cls.upstream = start_xds_sidecar(
            cls.tmp, cls.ads, "echo-0", "default", "--node-label=app=echo",
            f"--node-port={cls.app.port}", address=HOST4, binary=SIDECAR)
        processes.append(cls.upstream.proc)

        in_ns(POD, SIDECAR, "init", "--proxy-uid", "0", "--proxy-gid", "0", "--ipv6", "false")
        cls.caller = CallerSidecar(cls.ads)
        cls.caller.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.caller.stop()
        cls.upstream.stop()
        stop_process(cls.cp)
        cls.app.close()

    def test_first_connections_succeed_and_only_what_was_called_is_held(self):
        held = [name for name in self.caller.service_routes() if name.startswith("svc-")]
        self.assertEqual(held, [], "an on-demand sidecar starts without the mesh's Services")
        rtt = [float(in_ns(POD, "curl", "-sS", "-o", "/dev/null", "-w", "%{time_connect}",
                           f"http://{self.ads}/", check=False).stdout or 0) for _ in range(5)]

        first, second = [], []
        for i in range(CALLED):
            code, seconds = curl(vip(i))
            self.assertEqual(code, 200, f"svc-{i} at {vip(i)}: first call; log:\n"
                             + self.caller.log()[-3000:])
            first.append(seconds)
        found = self.caller.stat("meshlet_on_demand_waits_total", kind="address", result="found")
        self.assertEqual(found, CALLED, self.caller.admin("/stats?filter=on_demand")[1])
        for i in range(CALLED):
            code, seconds = curl(vip(i))
            self.assertEqual(code, 200, f"svc-{i}: second call")
            second.append(seconds)
        # Known now: the second round waited for nothing.
        self.assertEqual(
            self.caller.stat("meshlet_on_demand_waits_total", kind="address"), CALLED)

        held = [name for name in self.caller.service_routes() if name.startswith("svc-")]
        self.assertEqual(held, sorted(f"svc-{i}.default:80" for i in range(CALLED)))
        print(f"first call p50 {statistics.median(first) * 1000:.1f} ms, max "
              f"{max(first) * 1000:.1f} ms; second call p50 "
              f"{statistics.median(second) * 1000:.1f} ms, max {max(second) * 1000:.1f} ms; "
              f"TCP connect to the control plane's address p50 "
              f"{statistics.median(rtt) * 1000:.2f} ms")

    def test_unused_service_ages_out(self):
        # MeshConfig discovery.idleTime 10s: a Service called once, then left alone, leaves the
        # sidecar (its ServiceRoute and clusters), and its next call looks it up again.
        unused = SERVICES - 1
        name = f"svc-{unused}.default"
        code, _ = curl(vip(unused))
        self.assertEqual(code, 200, self.caller.log()[-3000:])
        self.assertIn(f"{name}:80", self.caller.service_routes())
        self.assertTrue(any(name in c for c in self.caller.resource_names("clusters")))
        start = time.time()
        deadline = start + 15
        while f"{name}:80" in self.caller.service_routes() and time.time() < deadline:
            time.sleep(0.2)
        gone = time.time() - start
        self.assertNotIn(f"{name}:80", self.caller.service_routes(),
                         "still held 15 s after its last use")
        self.assertGreaterEqual(gone, 9, "left before its idle time")
        self.assertTrue(wait_until(
            lambda: not any(name in c for c in self.caller.resource_names("clusters")), 5),
            self.caller.resource_names("clusters"))
        self.assertGreaterEqual(
            self.caller.stat("meshlet_xds_client_on_demand_expired_total", state="found"), 1)
        waits = self.caller.stat("meshlet_on_demand_waits_total", kind="address", result="found")
        code, _ = curl(vip(unused))
        self.assertEqual(code, 200)
        self.assertEqual(self.caller.stat("meshlet_on_demand_waits_total", kind="address",
                                          result="found"), waits + 1, "looked up again")
        print(f"an unused Service left the sidecar {gone:.1f} s after its last call "
              f"(idle time 10 s)")

    def test_unknown_address_in_the_range_is_refused_after_its_lookup(self):
        before = self.caller.stat("meshlet_on_demand_waits_total", kind="address",
                                  result="not_found")
        code, seconds = curl(UNKNOWN_VIP)
        self.assertEqual(code, 502, "REGISTRY_ONLY refuses what no Service answers")
        self.assertLess(seconds, 1.5, "answered not found, not left to the 1 s timeout twice")
        self.assertEqual(self.caller.stat("meshlet_on_demand_waits_total", kind="address",
                                          result="not_found"), before + 1)
        # Asked again within the missing TTL: answered from what the sidecar knows, no wait.
        code, _ = curl(UNKNOWN_VIP)
        self.assertEqual(code, 502)


def main():
    global CONTROL_PLANE, MESHCTL, SIDECAR
    CONTROL_PLANE, MESHCTL, SIDECAR = (os.path.abspath(a) for a in sys.argv[1:4])
    del sys.argv[1:4]
    sidecar_test.SIDECAR = SIDECAR
    tools = all(shutil.which(t, path=PATH) for t in ("ip", "setpriv", "iptables", "curl"))
    if os.geteuid() != 0 or not tools:
        print("SKIP: needs root and iptables")
        return 0
    netns.remove_leftovers(PREFIX, "p")
    atexit.register(teardown)
    run("ip", "netns", "add", POD)
    run("ip", "-n", POD, "link", "set", "lo", "up")
    run("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_POD, "netns", POD)
    run("ip", "addr", "add", f"{HOST4}/30", "dev", VETH_HOST)
    run("ip", "-n", POD, "addr", "add", f"{POD4}/30", "dev", VETH_POD)
    run("ip", "link", "set", VETH_HOST, "up")
    run("ip", "-n", POD, "link", "set", VETH_POD, "up")
    # Service addresses exist nowhere: only a route, so the app's connect() gets as far as nat.
    run("ip", "-n", POD, "route", "add", "240.240.0.0/16", "via", HOST4)
    program = unittest.main(exit=False, verbosity=2)
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
