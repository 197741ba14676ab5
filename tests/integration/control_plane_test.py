"""Runs the real control-plane binary and the real meshctl against it on 127.0.0.1.

Usage: control_plane_test.py CONTROL_PLANE MESHCTL EXAMPLES_DIR PODS_DIR [unittest args]

Covers the API token (created once, mode 0600, 401 without it), `meshctl apply` of multi-document
YAML and of a directory, `get -o yaml` round trips, invalid policy refused with its field path
and nothing stored, 409 on a stale resourceVersion, dry runs that store nothing, `diff`, delete,
the registry endpoint, data surviving kill -9, Service addresses (allocated, stable across
restarts and crashes, a released one not handed out again early, conflicts and reserved addresses
refused, a full range warned about and widened), and a clean exit on SIGTERM. Without a control
plane: every command's help (`help CMD`, `CMD --help`, `CMD -h`), usage errors and their exit
codes; the context file's keys are checked; `meshctl inject` of the sample pods (examples/pods).
"""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import cp_api

CONTROL_PLANE = MESHCTL = EXAMPLES = PODS = None  # set from argv

MULTI_DOC = """\
# two documents and a comment-only one
apiVersion: meshlet.io/v1
kind: Service
metadata:
  name: reviews
spec:
  ports:
  - name: http
    port: 9080
---
# nothing but a comment
---
apiVersion: meshlet.io/v1
kind: TrafficPolicy
metadata:
  name: reviews
spec:
  target: reviews
  retries:
    attempts: 2
"""

SERVICE = """\
apiVersion: meshlet.io/v1
kind: Service
metadata:
  name: %s
spec:
  ports: [{port: 80}]
"""

INVALID = """\
apiVersion: meshlet.io/v1
kind: Service
metadata:
  name: ok-service
spec:
  ports: [{port: 80}]
---
apiVersion: meshlet.io/v1
kind: TrafficPolicy
metadata:
  name: broken
spec:
  target: reviews
  retries:
    attempts: 99
  timeouts:
    request: 0s
"""


# A meshctl context for the control plane at %s, its files relative to the context file (in the
# directory holding `data`).
CONTEXT = "server: %s\ntokenFile: data/api-token\ncertificateAuthority: data/ca/root-cert.pem\n"


class ControlPlane:
    """One control-plane process on a data directory; port 0, learnt from its log."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.log_path = os.path.join(data_dir + ".log")
        self.proc = None
        self.log = None
        self.address = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [CONTROL_PLANE, "--data-dir", self.data_dir, "--api-address", "127.0.0.1:0",
             "--xds-address", "127.0.0.1:0", "--log-level", "info"],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(self.log_path, "rb") as f:
                found = re.findall(rb"API on (127\.0\.0\.1:\d+)", f.read())
            # The API is logged before the CA writes its root (the meshctl context's CA file).
            if len(found) > self.starts_seen() and os.path.exists(
                    os.path.join(self.data_dir, "ca", "root-cert.pem")):
                self.address = found[-1].decode()
                self._starts = len(found)
                return self
            if self.proc.poll() is not None:
                raise AssertionError("control plane exited: " + open(self.log_path).read())
            time.sleep(0.05)
        raise AssertionError("control plane did not start: " + open(self.log_path).read())

    def starts_seen(self):
        return getattr(self, "_starts", 0)

    def stop(self, sig=signal.SIGTERM):
        code = self.proc.returncode if self.proc else None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            code = self.proc.wait(timeout=10)
        if self.log and not self.log.closed:
            self.log.close()
        return code

    def token(self):
        with open(os.path.join(self.data_dir, "api-token")) as f:
            return f.read().strip()

    def request(self, method, path, body=None, token=None):
        return cp_api.request(self.address, method, path, body=body, token=token,
                              ca_file=cp_api.root_file(self.data_dir))


class ControlPlaneTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.cp = ControlPlane(os.path.join(self.tmp.name, "data")).start()
        self.context = os.path.join(self.tmp.name, "meshctl.yaml")
        with open(self.context, "w") as f:
            f.write(CONTEXT % self.cp.address)

    def tearDown(self):
        self.cp.stop(signal.SIGKILL)
        self.tmp.cleanup()

    def meshctl(self, *args, stdin=None, expect=0):
        env = dict(os.environ, MESHCTL_CONFIG=self.context)
        p = subprocess.run([MESHCTL] + list(args), input=stdin, capture_output=True, text=True,
                           env=env, timeout=20)
        if expect is not None:
            self.assertEqual(p.returncode, expect,
                             "meshctl %s\nstdout:\n%s\nstderr:\n%s" % (args, p.stdout, p.stderr))
        return p

    def write(self, name, text):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def revision(self):
        status, body = self.cp.request("GET", "/apis/meshlet.io/v1/services",
                                       token=self.cp.token())
        self.assertEqual(status, 200, body)
        return int(json.loads(body)["metadata"]["resourceVersion"])

    def test_token_file_and_auth(self):
        path = os.path.join(self.cp.data_dir, "api-token")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertRegex(self.cp.token(), r"^[0-9a-f]{64}$")
        self.assertEqual(self.cp.request("GET", "/healthz")[0], 200)
        status, body = self.cp.request("GET", "/apis/meshlet.io/v1/services")
        self.assertEqual(status, 401)
        self.assertEqual(json.loads(body)["reason"], "Unauthorized")
        self.assertEqual(self.cp.request("GET", "/apis/meshlet.io/v1/services", token="x" * 64)[0],
                         401)
        self.assertEqual(self.cp.request("GET", "/apis/meshlet.io/v1/services",
                                         token=self.cp.token())[0], 200)
        # meshctl with a wrong token: a readable error and exit code 3.
        p = self.meshctl("--token", "nope", "get", "services", expect=3)
        self.assertIn("refused the token", p.stderr)
        p = self.meshctl("check")
        self.assertIn("token          accepted", p.stdout)
        # The same token after a restart.
        token = self.cp.token()
        self.cp.stop()
        self.cp.start()
        self.assertEqual(self.cp.token(), token)

    def test_apply_get_round_trip_and_diff(self):
        p = self.meshctl("apply", "-f", self.write("multi.yaml", MULTI_DOC))
        self.assertEqual(p.stdout, "service.meshlet.io/reviews created\n"
                                   "trafficpolicy.meshlet.io/reviews created\n")
        p = self.meshctl("apply", "-f", EXAMPLES)
        self.assertIn("httproute.meshlet.io/reviews created", p.stdout)
        # The same Service from another file: its meshlet.io/applied-from annotation now names
        # that file, a change.
        self.assertIn("service.meshlet.io/reviews configured", p.stdout)
        self.assertIn("trafficpolicy.meshlet.io/reviews configured", p.stdout)
        self.assertNotIn("Warning", p.stderr)  # every backend's Service exists by then
        p = self.meshctl("apply", "-f", EXAMPLES)
        self.assertNotIn("created", p.stdout)
        self.assertNotIn("configured", p.stdout)
        self.assertIn("service.meshlet.io/reviews unchanged", p.stdout)

        p = self.meshctl("get", "svc")
        self.assertRegex(p.stdout, r"(?m)^NAME\s+PORTS")
        self.assertRegex(p.stdout, r"(?m)^reviews\s+9080/HTTP")

        yaml_out = self.meshctl("get", "httproute", "reviews", "-o", "yaml").stdout
        self.assertIn("kind: HTTPRoute", yaml_out)
        self.assertIn("resourceVersion:", yaml_out)
        # What `get -o yaml` prints applies back unchanged, and diff sees no difference.
        p = self.meshctl("apply", "-f", "-", stdin=yaml_out)
        self.assertEqual(p.stdout, "httproute.meshlet.io/reviews unchanged\n")
        self.meshctl("diff", "-f", "-", stdin=yaml_out, expect=0)
        listing = self.meshctl("get", "hr", "-A", "-o", "yaml").stdout
        self.assertEqual(listing.count("kind: HTTPRoute"), 2)
        self.meshctl("diff", "-f", "-", stdin=listing, expect=0)

        # diff shows what apply would change, and changes nothing.
        changed = self.write("changed.yaml", MULTI_DOC.replace("attempts: 2", "attempts: 5"))
        before = self.revision()
        p = self.meshctl("diff", "-f", changed, expect=1)
        # apply replaces the whole spec: the diff shows the example's fields going away too.
        self.assertIn("\n-    attempts: 3\n", p.stdout)
        self.assertIn("\n+    attempts: 5\n", p.stdout)
        self.assertIn("\n-  loadBalancer: LEAST_REQUEST\n", p.stdout)
        self.assertIn("--- live TrafficPolicy/default/reviews", p.stdout)
        self.assertEqual(self.revision(), before)
        new = self.write("new.yaml", MULTI_DOC.replace("name: reviews", "name: ratings-x")
                         .replace("target: reviews", "target: ratings-x"))
        p = self.meshctl("diff", "-f", new, expect=1)
        self.assertIn("--- /dev/null", p.stdout)
        self.assertIn("+  name: ratings-x", p.stdout)

        # JSON output is the API's object.
        obj = json.loads(self.meshctl("get", "tp", "reviews", "-o", "json").stdout)
        self.assertEqual(obj["spec"]["retries"]["attempts"], 3)

        p = self.meshctl("describe", "svc", "reviews")
        self.assertIn("kind: Service", p.stdout)
        self.assertRegex(p.stdout, r"(?m)^TrafficPolicy\s+reviews$")
        self.assertRegex(p.stdout, r"(?m)^HTTPRoute\s+reviews$")
        self.assertIn("<none registered>", p.stdout)

        p = self.meshctl("delete", "httproute", "reviews")
        self.assertIn("deleted", p.stdout)
        p = self.meshctl("get", "httproute", "reviews", expect=1)
        self.assertIn("not found", p.stderr)

    def test_invalid_policy_is_refused_with_field_path_and_nothing_stored(self):
        before = self.revision()
        path = self.write("invalid.yaml", INVALID)
        p = self.meshctl("apply", "-f", path, expect=1)
        self.assertIn("invalid.yaml (document 2)", p.stderr)
        self.assertIn("spec.retries.attempts: must be between 0 and 10", p.stderr)
        self.assertIn("spec.timeouts.request: must be greater than 0", p.stderr)
        self.assertIn("nothing applied", p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertEqual(self.revision(), before)  # not even the valid first document
        # A syntax error names file, line and column.
        bad = self.write("bad.yaml", "kind: Service\nmetadata: {name: a}\nspec:\n  portz: []\n")
        p = self.meshctl("apply", "-f", bad, expect=1)
        self.assertIn("bad.yaml:4:3: spec.portz: unknown field", p.stderr)
        # An unknown kind is reported where the kind is: line 9, the second line of document 2.
        kinds = self.write("kinds.yaml", INVALID.split("---\n")[0] + "---\n"
                           "apiVersion: meshlet.io/v1\nkind: Gizmo\nmetadata: {name: b}\n")
        p = self.meshctl("apply", "-f", kinds, expect=1)
        self.assertIn('kinds.yaml:9:7: kind: unknown kind "Gizmo"', p.stderr)
        # The API refuses it on its own too (clients other than meshctl).
        status, body = self.cp.request(
            "PUT", "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/broken",
            body=INVALID.split("---\n")[1].encode(), token=self.cp.token())
        self.assertEqual(status, 422)
        fields = [c["field"] for c in json.loads(body)["details"]["causes"]]
        self.assertEqual(fields, ["spec.timeouts.request", "spec.retries.attempts"])
        self.assertEqual(self.revision(), before)

    def test_stale_resource_version_conflicts(self):
        self.meshctl("apply", "-f", self.write("multi.yaml", MULTI_DOC))
        stale = self.meshctl("get", "tp", "reviews", "-o", "yaml").stdout
        # Someone else changes it in between.
        self.meshctl("apply", "-f", self.write("v2.yaml",
                                               MULTI_DOC.replace("attempts: 2", "attempts: 4")))
        p = self.meshctl("apply", "-f", "-", stdin=stale.replace("attempts: 2", "attempts: 1"),
                         expect=1)
        self.assertIn("conflict", p.stderr)
        self.assertIn("is stale", p.stderr)
        obj = json.loads(self.meshctl("get", "tp", "reviews", "-o", "json").stdout)
        self.assertEqual(obj["spec"]["retries"]["attempts"], 4)
        # Over the API directly: 409.
        status, body = self.cp.request(
            "PUT", "/apis/meshlet.io/v1/namespaces/default/trafficpolicies/reviews",
            body=stale.encode(), token=self.cp.token())
        self.assertEqual(status, 409, body)

    def test_dry_run_stores_nothing(self):
        before = self.revision()
        p = self.meshctl("apply", "-f", self.write("multi.yaml", MULTI_DOC), "--dry-run")
        self.assertIn("service.meshlet.io/reviews created (dry run)", p.stdout)
        self.assertEqual(self.revision(), before)
        self.meshctl("get", "svc", "reviews", expect=1)
        self.meshctl("apply", "-f", self.write("multi.yaml", MULTI_DOC))
        p = self.meshctl("delete", "svc", "reviews", "--dry-run")
        self.assertIn("deleted (dry run)", p.stdout)
        self.meshctl("get", "svc", "reviews")
        p = self.meshctl("delete", "-f", self.write("multi.yaml", MULTI_DOC))
        self.assertEqual(p.stdout, "service.meshlet.io/reviews deleted\n"
                                   "trafficpolicy.meshlet.io/reviews deleted\n")
        self.meshctl("get", "tp", "reviews", expect=1)

    def test_data_survives_kill_9(self):
        self.meshctl("apply", "-f", EXAMPLES)
        listing = self.meshctl("get", "hr", "-A", "-o", "yaml").stdout
        revision = self.revision()
        self.assertEqual(self.cp.stop(signal.SIGKILL), -signal.SIGKILL)
        self.cp.start()
        with open(self.context, "w") as f:
            f.write(CONTEXT % self.cp.address)
        self.assertEqual(self.meshctl("get", "hr", "-A", "-o", "yaml").stdout, listing)
        self.assertEqual(self.revision(), revision)
        # Revisions keep going up after the restart.
        self.meshctl("apply", "-f", self.write("multi.yaml",
                                               MULTI_DOC.replace("attempts: 2", "attempts: 7")))
        self.assertGreater(self.revision(), revision)

    def restart(self, sig=signal.SIGTERM):
        self.cp.stop(sig)
        self.cp.start()
        with open(self.context, "w") as f:
            f.write(CONTEXT % self.cp.address)

    def service_addresses(self):
        """Service name -> (addresses, allocated) as `meshctl get svc -A -o json` shows them."""
        out = {}
        for item in json.loads(self.meshctl("get", "svc", "-A", "-o", "json").stdout)["items"]:
            declared = item["spec"].get("addresses", [])
            allocated = item.get("status", {}).get("addresses", [])
            out[item["metadata"]["name"]] = (declared or allocated, not declared)
        return out

    def test_service_addresses_are_stable_across_restarts_and_not_reused_early(self):
        services = self.write("svcs.yaml", "---\n".join(SERVICE % name
                                                        for name in ("alpha", "beta", "gamma")))
        self.meshctl("apply", "-f", services)
        allocated = {"alpha": (["240.240.0.1"], True), "beta": (["240.240.0.2"], True),
                     "gamma": (["240.240.0.3"], True)}
        self.assertEqual(self.service_addresses(), allocated)
        # The API's object marks them as allocated: status, not spec.
        status, body = self.cp.request("GET", "/apis/meshlet.io/v1/namespaces/default/services/"
                                       "alpha", token=self.cp.token())
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["status"], {"addresses": ["240.240.0.1"]})
        self.assertNotIn("addresses", json.loads(body)["spec"])
        p = self.meshctl("get", "svc")
        self.assertRegex(p.stdout, r"(?m)^NAME\s+PORTS\s+ADDRESSES\s+SELECTOR")
        self.assertRegex(p.stdout, r"(?m)^beta\s+80/HTTP\s+240\.240\.0\.2\s+<none>")
        p = self.meshctl("describe", "svc", "gamma")
        self.assertIn("Addresses: 240.240.0.3 (allocated from the MeshConfig ranges)", p.stdout)

        # A clean stop, then a crash: the same addresses, and applying the same file again
        # changes nothing.
        self.restart(signal.SIGTERM)
        self.assertEqual(self.service_addresses(), allocated)
        self.restart(signal.SIGKILL)
        self.assertEqual(self.service_addresses(), allocated)
        p = self.meshctl("apply", "-f", services)
        self.assertEqual(p.stdout.count("unchanged"), 3, p.stdout)

        # beta's address is released, but not handed out again while the range has fresh ones,
        # even across a crash right after the delete.
        self.meshctl("delete", "svc", "beta")
        self.restart(signal.SIGKILL)
        self.meshctl("apply", "-f", "-", stdin=SERVICE % "delta")
        self.assertEqual(self.service_addresses()["delta"], (["240.240.0.4"], True))

        # Declaring another Service's address is refused, naming both.
        p = self.meshctl("apply", "-f", "-", expect=1,
                         stdin=(SERVICE % "epsilon") + "  addresses: [240.240.0.1]\n")
        self.assertIn('Service "epsilon" is invalid: spec.addresses[0]: 240.240.0.1 is already an '
                      "address of Service default/alpha (allocated)", p.stderr)
        self.meshctl("get", "svc", "epsilon", expect=1)
        p = self.meshctl("apply", "-f", "-", expect=1,
                         stdin=(SERVICE % "epsilon") + "  addresses: [127.0.0.9]\n")
        self.assertIn("spec.addresses[0]: 127.0.0.9 is not allowed (loopback)", p.stderr)
        self.meshctl("apply", "-f", "-", stdin=(SERVICE % "epsilon") + "  addresses: [10.96.0.9]\n")
        self.assertEqual(self.service_addresses()["epsilon"], (["10.96.0.9"], False))

        # A small range fills up: the Service is stored without an address, with a warning; a
        # wider range gives it one, and that survives a restart too.
        mesh = "apiVersion: meshlet.io/v1\nkind: MeshConfig\nmetadata: {name: mesh}\n" \
               "spec: {serviceAddressRange: %s}\n"
        self.meshctl("apply", "-f", "-", stdin=mesh % "10.200.0.0/30")
        self.meshctl("apply", "-f", "-", stdin=SERVICE % "zeta")  # 10.200.0.1
        self.meshctl("apply", "-f", "-", stdin=SERVICE % "eta")  # 10.200.0.2, the last one
        p = self.meshctl("apply", "-f", "-", stdin=SERVICE % "theta")
        self.assertIn("service.meshlet.io/theta created", p.stdout)
        self.assertIn("Service default/theta gets no address from 10.200.0.0/30", p.stderr)
        self.assertRegex(self.meshctl("get", "svc", "theta").stdout,
                         r"(?m)^theta\s+80/HTTP\s+<none>")
        self.meshctl("apply", "-f", "-", stdin=mesh % "10.200.0.0/24")
        self.restart(signal.SIGKILL)
        addresses = self.service_addresses()
        self.assertEqual(addresses["zeta"], (["10.200.0.1"], True))
        self.assertEqual(addresses["eta"], (["10.200.0.2"], True))
        self.assertEqual(addresses["theta"], (["10.200.0.3"], True))
        self.assertEqual(addresses["alpha"], (["240.240.0.1"], True))  # not renumbered
        # The range is validated like the rest.
        p = self.meshctl("apply", "-f", "-", expect=1, stdin=mesh % "224.1.0.0/16")
        self.assertIn('spec.serviceAddressRange: "224.1.0.0/16" overlaps 224.0.0.0/4 (multicast '
                      "addresses)", p.stderr)

    def test_registry_proxies_and_clean_exit(self):
        status, body = self.cp.request("GET", "/api/v1/workloads", token=self.cp.token())
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["items"], [])
        p = self.meshctl("get", "workloads")
        self.assertIn("No workloads registered", p.stderr)
        # One release everywhere: the binary's --version, meshctl's and the API's.
        release = subprocess.run([CONTROL_PLANE, "--version"], capture_output=True, text=True,
                                 check=True).stdout.split()[-1]
        p = self.meshctl("version")
        self.assertIn("meshctl %s\n" % release, p.stdout)
        self.assertIn("control-plane %s (revision default) at" % release, p.stdout)
        self.assertIn("proxies: none connected", p.stdout)
        self.assertEqual(self.cp.stop(signal.SIGTERM), 0)
        p = self.meshctl("check", expect=3)
        self.assertIn("not reachable", p.stderr)

    def test_command_line_errors(self):
        p = subprocess.run([CONTROL_PLANE, "--api-address", "nonsense"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--api-address", p.stderr)
        p = subprocess.run([CONTROL_PLANE, "--data-dir", "/proc/forbidden/x"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--data-dir", p.stderr)
        p = self.meshctl("get", "gizmos", expect=2)
        self.assertIn("unknown kind", p.stderr)
        p = self.meshctl("apply", expect=2)
        self.assertIn("apply needs -f FILE|DIR|-", p.stderr)

    def test_context_file_keys_are_strict(self):
        # A misspelt key is not ignored (which left meshctl without a token, and the user with
        # "refused the token"): the error names the file, the line, the key and the known keys.
        for key in ("token_file", "tokenfile"):
            with open(self.context, "w") as f:
                f.write("server: %s\n%s: data/api-token\n" % (self.cp.address, key))
            p = self.meshctl("get", "svc", expect=2)
            self.assertIn("context file %s:2:1: %s: unknown field" % (self.context, key), p.stderr)
            self.assertIn("server, token, tokenFile, namespace, certificateAuthority, "
                          "certificateAuthorityData, serverIdentity, revision", p.stderr)
            self.assertEqual(p.stdout, "")
        with open(self.context, "w") as f:
            f.write((CONTEXT + "namespace: shop\n") % self.cp.address)
        p = self.meshctl("get", "svc")
        self.assertIn("No services found in namespace shop", p.stderr)


# Every command and the flags its help lists (docs/meshctl.md).
COMMAND_FLAGS = {
    "apply": ["-f, --filename", "--dry-run", "-n, --namespace"],
    "get": ["-n, --namespace", "-A, --all-namespaces", "-o, --output"],
    "describe": ["-n, --namespace"],
    "delete": ["-f, --filename", "-n, --namespace", "--dry-run"],
    "diff": ["-f, --filename", "-n, --namespace"],
    "inject": ["-f, --filename", "--proxy-image", "--control-plane", "--trust-domain", "--mode",
               "--identity", "--trace-collector", "--podman", "--cni", "--revision",
               "--tag", "--gateway-class", "-o, --output"],
    "upgrade": ["--revision", "-n, --namespace", "--dry-run", "--check-proxies", "--force",
                "--rollout-timeout", "--control-plane-namespace", "--kubeconfig", "--context",
                "--kubernetes-api", "--kubernetes-ca-file", "--kubernetes-token-file",
                "--kubernetes-exec-timeout"],
    "tag": ["--revision", "--overwrite", "--force", "--dry-run", "--control-plane-namespace",
            "--kubeconfig", "--context", "--kubernetes-api", "--kubernetes-ca-file",
            "--kubernetes-token-file", "--kubernetes-exec-timeout"],
    "install": ["--set", "-o, --output", "--crds", "--secrets", "--create",
                "--renew-etcd-certificates", "--rotate-store-key", "--finish", "--store-key-file",
                "--kubernetes-api", "--kubernetes-token-file", "--kubernetes-ca-file",
                "--kubeconfig"],
    "uninstall": ["--set", "-o, --output", "--crds", "--keep-data"],
    "proxy-status": ["-o, --output"],
    "proxy-config": ["-o, --output", "--control-plane-only", "--lookup"],
    "token": ["-n, --namespace", "--service-account", "--ttl", "--single-use", "-o, --output"],
    "operator-token": ["--role", "--ttl", "-o, --output"],
    "multicluster": ["--remote-context", "--token-name", "-o, --output"],
    "traces": ["--service", "--operation", "--min-duration", "--status", "--limit",
               "-o, --output"],
    "trace": ["-o, --output"],
    "explain": ["-o, --output", "--from", "--to", "--method", "-H, --header", "-n, --namespace"],
    "trust-bundle": ["--configmap", "-n, --namespace", "--name"],
    "ca": ["-o, --output", "--secret", "--cert", "--key", "--roots", "--intermediate",
           "--renewals-per-second", "--renewal-jitter", "--renewal-retry", "--bundle-ack-timeout",
           "--status", "--abort", "--wait"],
    "stat": ["--window", "-o, --output", "--history", "--step", "--routes", "--route",
             "--workload"],
    "top": ["--interval", "--limit", "--window", "--once"],
    "tap": ["-n, --namespace", "--rate", "--duration", "--headers", "--direction", "--method",
            "--authority", "--path", "-o, --output"],
    "dashboard": [],
    "context": ["--ca-fingerprint", "-n, --namespace"],
    "check": ["--pre", "-f, --filename"],
    "version": ["--client"],
    "help": [],
}


class MeshctlCommandLineTest(unittest.TestCase):
    """meshctl's help and usage errors; no control plane needed."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def meshctl(self, *args, expect=0):
        # No context file anywhere: help must not need one.
        env = {k: v for k, v in os.environ.items() if k != "MESHCTL_CONFIG"}
        env["HOME"] = self.tmp.name
        p = subprocess.run([MESHCTL] + list(args), capture_output=True, text=True, env=env,
                           timeout=20)
        self.assertEqual(p.returncode, expect,
                         "meshctl %s\nstdout:\n%s\nstderr:\n%s" % (args, p.stdout, p.stderr))
        return p

    @staticmethod
    def listed_flags(help_text):
        """{flag: its value placeholder or ""} from the Flags section of a command's help."""
        section = help_text.split("\nFlags:\n", 1)[1].split("\n\n", 1)[0]
        flags = {}
        # A flag's line starts "  -o, --output" or "      --podman"; wrapped help text is
        # indented further and may start with a flag's name too.
        for m in re.finditer(r"(?m)^  (?:(-\w), |    )(--[\w-]+)(?: (\S+))?", section):
            flags[m.group(2)] = (m.group(1), m.group(3) or "")
        return flags

    @staticmethod
    def sample(placeholder):
        """A value the flag accepts, from the placeholder help shows."""
        choices = placeholder.split("|")  # the values themselves: json, yaml|json, HOST:PORT|off
        for choice in choices:
            if choice.islower():
                return choice
        return {"DURATION": "1s", "N": "3", "HOST:PORT": "cp.mesh:15012",
                "KEY=VALUE": "namespace=mesh", "NAME:VALUE": "x-user:ann",
                "TAG=REVISION": "prod=canary"}.get(choices[0], "x")

    def test_every_command_has_its_own_help(self):
        listing = self.meshctl("help").stdout
        # Every command the listing shows is in the table above (and so checked here).
        commands = listing.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
        self.assertEqual(sorted(re.findall(r"(?m)^  (\S+)", commands)), sorted(COMMAND_FLAGS))
        for command, flags in COMMAND_FLAGS.items():
            self.assertRegex(listing, r"(?m)^  %s\s" % re.escape(command))
            text = self.meshctl("help", command).stdout
            with self.subTest(command=command):
                self.assertEqual(self.meshctl(command, "--help").stdout, text)
                self.assertEqual(self.meshctl(command, "-h").stdout, text)
                self.assertEqual(self.meshctl(command, "-h").stderr, "")
                self.assertNotEqual(text, listing)
                self.assertRegex(text, r"\nUsage:\n  meshctl %s( |\n)" % re.escape(command))
                for flag in flags + ["-h, --help"]:
                    self.assertRegex(text, r"(?m)^  \s*%s\b" % re.escape(flag))
                self.assertRegex(text, r"\nExamples:\n(  #.*\n)?  .*meshctl %s\b"
                                 % re.escape(command))
                # Every flag the help lists is one the command accepts: given before --help,
                # an unknown one would be a usage error (exit 2) instead of the help.
                listed = self.listed_flags(text)
                self.assertEqual(sorted(listed), sorted(f.split(" ")[-1]
                                                        for f in flags + ["--help"]))
                for name, (shorthand, placeholder) in listed.items():
                    if name == "--help":
                        continue
                    value = [self.sample(placeholder)] if placeholder else []
                    for spelled in filter(None, (name, shorthand)):
                        self.assertEqual(self.meshctl(command, spelled, *value, "--help").stdout,
                                         text)
        self.assertIn("Exit codes:", listing)

    def test_usage_errors_exit_2(self):
        p = self.meshctl("help", "nosuch", expect=2)
        self.assertIn('unknown command "nosuch"', p.stderr)
        for command in COMMAND_FLAGS:
            self.assertIn(command, p.stderr.split("known commands:")[1])
        self.assertEqual(p.stdout, "")
        self.assertIn('unknown command "nosuch"', self.meshctl("nosuch", expect=2).stderr)
        p = self.meshctl("apply", expect=2)
        self.assertIn("apply needs -f FILE|DIR|-", p.stderr)
        self.assertIn("meshctl help apply", p.stderr)
        p = self.meshctl("get", "--ttl", "1h", "svc", expect=2)
        self.assertIn("unknown flag --ttl for get", p.stderr)
        self.meshctl("get", "svc", "-o", "wide", expect=2)
        p = self.meshctl("trace", expect=2)
        self.assertIn("usage: meshctl trace ID", p.stderr)
        # Without a command: the list of commands, on stderr.
        p = self.meshctl(expect=2)
        self.assertIn("Commands:", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_a_kubernetes_api_server_not_reached_is_exit_3(self):
        # As tag and upgrade have it (docs/meshctl.md#exit-codes): install --create writes
        # Secrets through the API server, here a port nothing listens on.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        token, ca = os.path.join(self.tmp.name, "token"), os.path.join(self.tmp.name, "ca.pem")
        with open(token, "w") as f:
            f.write("t\n")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=api", "-days", "1",
                        "-keyout", os.path.join(self.tmp.name, "ca.key"), "-out", ca],
                       check=True, capture_output=True)
        p = self.meshctl("install", "--set", "etcd=bundled", "--secrets", "--create",
                         "--kubernetes-api", "https://127.0.0.1:%d" % port,
                         "--kubernetes-ca-file", ca, "--kubernetes-token-file", token, expect=3)
        self.assertIn("reading Secret meshlet-system/", p.stderr)

    def test_inject_sample_pods(self):
        """The real binary on examples/pods: every workload gets the sidecar, the rest is as it
        was, and injecting the output again gives the same bytes."""
        for name in sorted(os.listdir(PODS)):
            if name.endswith(".yaml"):
                with open(os.path.join(PODS, name)) as f:
                    self.assertNotIn("meshlet", f.read().replace("meshlet-testapp", ""), name)
        listing = json.loads(self.meshctl("inject", "-f", PODS, "-o", "json").stdout)
        self.assertEqual(listing["kind"], "List")
        kinds = [(i["kind"], i["metadata"]["name"]) for i in listing["items"]]
        self.assertEqual(kinds, [
            ("ServiceAccount", "productpage"), ("Service", "productpage"),
            ("Deployment", "productpage-v1"),
            ("ServiceAccount", "ratings"), ("Service", "ratings"), ("Deployment", "ratings-v1"),
            ("ServiceAccount", "reviews"), ("Service", "reviews"), ("Deployment", "reviews-v1"),
            ("Deployment", "reviews-v2")])
        for item in listing["items"]:
            if item["kind"] != "Deployment":
                self.assertNotIn("template", item.get("spec", {}))
                continue
            pod = item["spec"]["template"]
            app = pod["metadata"]["labels"]["app"]
            spec = pod["spec"]
            self.assertEqual([c["name"] for c in spec["initContainers"]],
                             ["meshlet-init", "meshlet-proxy"])
            self.assertEqual([c["name"] for c in spec["containers"]], [app])
            self.assertEqual([v["name"] for v in spec["volumes"]],
                             ["meshlet-trust", "meshlet-token", "meshlet-data"])
            init, proxy = spec["initContainers"]
            self.assertEqual(init["args"][0], "init")
            self.assertEqual(init["securityContext"]["capabilities"]["add"],
                             ["NET_ADMIN", "NET_RAW"])
            self.assertEqual(init["securityContext"]["runAsUser"], 0)
            self.assertEqual(proxy["restartPolicy"], "Always")
            self.assertEqual(proxy["securityContext"]["runAsUser"], 1337)
            self.assertEqual(proxy["startupProbe"]["httpGet"], {"path": "/ready", "port": 15020})
            self.assertIn("--node-service=%s" % app, proxy["args"])
            self.assertIn("--node-port=9080", proxy["args"])
            self.assertIn("--capture-check=$(POD_IP):15008", proxy["args"])
            self.assertNotIn("io.podman.annotations.init.container.type",
                             pod["metadata"]["annotations"])
            self.assertIn("--node-label=version=%s" % pod["metadata"]["labels"]["version"],
                          proxy["args"])
            status = json.loads(pod["metadata"]["annotations"]["sidecar.meshlet.io/status"])
            self.assertEqual(status["initContainers"], ["meshlet-init", "meshlet-proxy"])
            self.assertEqual(pod["metadata"]["annotations"]
                             ["kubectl.kubernetes.io/default-container"], app)

        # YAML out, injected again: the same bytes; and the same objects as the JSON output.
        injected = self.meshctl("inject", "-f", PODS).stdout
        path = os.path.join(self.tmp.name, "injected.yaml")
        with open(path, "w") as f:
            f.write(injected)
        self.assertEqual(self.meshctl("inject", "-f", path).stdout, injected)
        self.assertEqual(json.loads(self.meshctl("inject", "-f", path, "-o", "json").stdout),
                         listing)

        # Classic sidecars for podman: the proxy is the first container, and the pod has podman's
        # init container type; the same from stdin.
        p = subprocess.run([MESHCTL, "inject", "-f", "-", "--mode", "classic", "--podman",
                            "-o", "json"],
                           input=open(os.path.join(PODS, "ratings.yaml")).read(),
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        deployment = json.loads(p.stdout)["items"][2]
        spec = deployment["spec"]["template"]["spec"]
        self.assertEqual([c["name"] for c in spec["containers"]], ["meshlet-proxy", "ratings"])
        self.assertEqual([c["name"] for c in spec["initContainers"]], ["meshlet-init"])
        self.assertEqual(deployment["spec"]["template"]["metadata"]["annotations"]
                         ["io.podman.annotations.init.container.type"], "always")

        # A broken manifest: every problem, nothing on stdout, exit 1.
        bad = os.path.join(self.tmp.name, "bad.yaml")
        with open(bad, "w") as f:
            f.write(injected.replace("containerPort: 9080", "containerPort: 15006", 1))
        p = self.meshctl("inject", "-f", bad, expect=1)
        self.assertEqual(p.stdout, "")
        self.assertRegex(p.stderr, r"error: %s:\d+:\d+: Deployment \"productpage-v1\": "
                         r"spec.template.spec.containers\[0\].ports\[0\].containerPort: 15006 is "
                         r"the sidecar's" % re.escape(bad))
        self.assertIn("nothing written", p.stderr)


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, EXAMPLES, PODS = (os.path.abspath(a) for a in sys.argv[1:5])
    unittest.main(argv=[sys.argv[0]] + sys.argv[5:], verbosity=2)
