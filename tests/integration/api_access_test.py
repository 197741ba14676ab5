"""The control plane's API as attackers meet it: TLS, operator roles, Kubernetes users.

Usage: api_access_test.py CONTROL_PLANE MESHCTL [unittest args]

Attacks, each refused and counted:
  - the API token sniffed on the wire: tshark captures the API's port on loopback while meshctl
    reads, writes and creates an operator token; neither token appears in the capture (with
    --api-plaintext, to show the capture sees them, both do, and the control plane warned)
  - plain HTTP to the API: no HTTP answer
  - meshctl with a wrong pinned CA, or a wrong server identity: refused before any token leaves,
    with an error naming the CA and identity it expected; `meshctl context set` pins the CA by
    its fingerprint and refuses a wrong one
  - a client presenting a certificate from another CA: the handshake is refused
  - a viewer's token writing policy: 403; an editor's creating a join token: 403; a revoked
    operator token: 401; each counted (meshlet_cp_api_forbidden_total,
    meshlet_cp_api_auth_failures_total); the viewer still reads and the dashboard answers it
  - Kubernetes users (a fake API server answering TokenReview and SubjectAccessReview): a user
    bound to meshlet-editor writes policy and is refused join tokens; an unknown token is 401;
    the reviews name the user and the verb on meshes.meshlet.io
  - every write, let in or refused, is one JSON line of DATA_DIR/audit.log (mode 0600): who,
    with which credential and role, what, when, the answer; never a token
  - a write from a web page of another origin (Origin, Sec-Fetch-Site): 403, counted
  - connections that never send a request (or never finish their TLS handshake) on the API,
    the webhook, the OTLP and Zipkin receivers and the discovery port: closed by the request or
    handshake timeout and counted per server

Tests needing tshark (root) print SKIP without it.
"""

import itertools
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import cp_api
from fake_kubernetes_api import JsonApiHandler
from mesh_util import (make_ca, make_server_cert, make_workload_cert, serve_https,
                       start_control_plane, stop_process)

CONTROL_PLANE = MESHCTL = None  # set from argv

SERVICE = """\
apiVersion: meshlet.io/v1
kind: Service
metadata:
  name: %s
spec:
  ports: [{port: 80}]
"""


def metric(api, name, labels=""):
    """The value of `name{labels}` in the control plane's /metrics (0 when absent)."""
    status, body = cp_api.request(api, "GET", "/metrics")
    assert status == 200, body
    prefix = name + ("{" + labels + "}" if labels else "")
    for line in body.splitlines():
        if line.startswith(prefix + " "):
            return int(float(line.split()[-1]))
    return 0


class ApiTestCase(unittest.TestCase):
    """A control plane (API on 127.0.0.1, its CA pinned from its log) for the class."""

    extra_flags = ()

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.data = os.path.join(cls.tmp, "data")
        cls.log = os.path.join(cls.tmp, "cp.log")
        cls.cp, cls.api, _ = start_control_plane(
            CONTROL_PLANE, cls.log, "--data-dir", cls.data, "--api-address", "127.0.0.1:0",
            "--xds-address", "127.0.0.1:0", "--webhook-address=off", "--otlp-address=",
            "--zipkin-address=", *cls.extra_flags)
        cls.token_file = os.path.join(cls.data, "api-token")
        with open(cls.token_file) as f:
            cls.token = f.read().strip()

    @classmethod
    def tearDownClass(cls):
        stop_process(cls.cp)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def meshctl(self, *args, token=None, token_file=None, expect=0, ca_file=None, stdin=None,
                context=None):
        """meshctl against the control plane: the bootstrap token unless another is given."""
        cmd = [MESHCTL]
        if context is None:
            cmd += ["--server", self.api, "--ca-file", ca_file or cp_api.ca_file_for(self.api)]
            if token is not None:
                cmd += ["--token", token]
            else:
                cmd += ["--token-file", token_file or self.token_file]
        env = {k: v for k, v in os.environ.items() if k != "MESHCTL_CONFIG"}
        env["HOME"] = self.tmp
        if context is not None:
            env["MESHCTL_CONFIG"] = context
        p = subprocess.run(cmd + list(args), input=stdin, capture_output=True, text=True,
                           env=env, timeout=30)
        if expect is not None:
            self.assertEqual(p.returncode, expect,
                             f"meshctl {args}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        return p

    def operator_token(self, name, role):
        p = self.meshctl("operator-token", "create", name, "--role", role)
        return p.stdout.strip()


class TlsTest(ApiTestCase):
    def test_plain_http_gets_no_answer(self):
        host, port = self.api.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            try:
                answer = s.recv(4096)
            except ConnectionResetError:
                answer = b""
        self.assertFalse(answer.startswith(b"HTTP/"), answer)

    def test_a_wrong_pinned_ca_or_identity_is_refused_before_the_token_leaves(self):
        other = make_ca(self.tmp, "other-ca")
        p = self.meshctl("get", "svc", ca_file=other[0], expect=3)
        self.assertIn(f"TLS with {self.api} failed", p.stderr)
        self.assertIn("not issued by a trusted CA", p.stderr)
        self.assertIn(f"meshctl verifies the control plane with the CA file {other[0]}",
                      p.stderr)
        p = self.meshctl("--server-identity", "spiffe://cluster.local/ns/default/sa/web", "get",
                         "svc", expect=3)
        self.assertIn("is not allowed; expected one of [spiffe://cluster.local/ns/default/sa/web]",
                      p.stderr)
        # No CA at all: a usage error saying how to pin one, for the commands that send no token
        # (check, version) as for the others (docs/meshctl.md#exit-codes).
        env = {k: v for k, v in os.environ.items() if k != "MESHCTL_CONFIG"}
        env["HOME"] = self.tmp
        for command in (["get", "svc"], ["check"], ["version"], ["trust-bundle"]):
            p = subprocess.run([MESHCTL, "--server", self.api, "--token-file", self.token_file,
                                *command], capture_output=True, text=True, env=env, timeout=30)
            self.assertEqual(p.returncode, 2, f"{command}: {p.stderr}")
            self.assertIn("no CA to verify the control plane", p.stderr)
            self.assertIn("meshctl context set --ca-fingerprint", p.stderr)

    def test_context_set_pins_the_ca_by_its_fingerprint(self):
        context = os.path.join(self.tmp, "pinned.yaml")
        base = ["--context-file", context, "context", "set", "--server", self.api,
                "--token-file", self.token_file]
        # Nothing pinned and no fingerprint: it says what the server presents, writes nothing;
        # no CA to verify the server with is exit 2, as for any command.
        p = self.meshctl(*base, context=context, expect=2)
        fingerprint = cp_api.logged_fingerprints(self.log)[0]
        self.assertIn(f"presents {fingerprint}", p.stderr)
        self.assertFalse(os.path.exists(context))
        # A wrong fingerprint: a server that did not verify (exit 3), nothing written.
        p = self.meshctl(*base, "--ca-fingerprint", "sha256:" + "ab" * 32, context=context,
                         expect=3)
        self.assertIn(f"presents the CA {fingerprint}, not the pinned sha256:{'ab' * 32}",
                      p.stderr)
        self.assertFalse(os.path.exists(context))
        # The right one, as openssl prints it: pinned, the file private.
        openssl_form = ":".join(fingerprint[7:][i:i + 2].upper() for i in range(0, 64, 2))
        p = self.meshctl(*base, "--ca-fingerprint", "SHA256 Fingerprint=" + openssl_form,
                         context=context)
        self.assertIn(f"CA {fingerprint}", p.stdout)
        self.assertEqual(os.stat(context).st_mode & 0o777, 0o600)
        p = self.meshctl("get", "svc", context=context)
        self.assertIn("No services found", p.stderr)
        self.assertIn(fingerprint, self.meshctl("context", "show", context=context).stdout)

    def test_a_client_certificate_from_another_ca_is_refused(self):
        other = make_ca(self.tmp, "client-ca")
        cert = make_workload_cert(self.tmp, "intruder", other,
                                  "spiffe://cluster.local/ns/default/sa/intruder")
        context = cp_api.ssl_context(cp_api.ca_file_for(self.api))
        context.load_cert_chain(*cert)
        host, port = self.api.rsplit(":", 1)
        with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)) as caught:
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                with context.wrap_socket(raw) as tls:
                    # TLS 1.3: the server's verdict on the client certificate arrives after the
                    # client's handshake ends, with the first read.
                    tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    tls.recv(4096)
        self.assertIn("unknown ca", str(caught.exception).lower())
        # Without a client certificate (meshctl, browsers): served.
        self.assertEqual(cp_api.request(self.api, "GET", "/healthz")[0], 200)


class SniffTest(unittest.TestCase):
    """tshark on loopback while meshctl talks to the API: the tokens never show."""

    def setUp(self):
        if os.geteuid() != 0 or shutil.which("tshark") is None:
            print("SKIP: api_access_test SniffTest needs root and tshark")
            self.skipTest("needs root and tshark")
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def capture(self, *flags):
        """Starts a control plane with `flags`, captures its API port while meshctl lists,
        writes, and creates an operator token; returns (capture bytes, the tokens, the log)."""
        name = "plain" if flags else "tls"
        data, log = os.path.join(self.tmp, name + "-data"), os.path.join(self.tmp, name + ".log")
        cp, api, _ = start_control_plane(
            CONTROL_PLANE, log, "--data-dir", data, "--api-address", "127.0.0.1:0",
            "--xds-address", "127.0.0.1:0", "--webhook-address=off", "--otlp-address=",
            "--zipkin-address=", *flags)
        self.addCleanup(stop_process, cp)
        with open(os.path.join(data, "api-token")) as f:
            token = f.read().strip()
        pcap = os.path.join(self.tmp, name + ".pcap")
        port = api.rsplit(":", 1)[1]
        tshark = subprocess.Popen(["tshark", "-i", "lo", "-f", f"tcp port {port}", "-w", pcap],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: tshark.poll() is None and tshark.kill())
        started = time.time()
        line = ""
        while "Capturing on" not in line and time.time() - started < 20:
            line = tshark.stderr.readline()
        self.assertIn("Capturing on", line)
        # tshark says "Capturing on" before its filter is in place, so the first packets after
        # it can be missed (the first requests of a fast meshctl were): send probes to the port
        # until one shows in the capture file, which dumpcap writes out within about a second.
        deadline = time.time() + 20
        for probe in itertools.count():
            with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as s:
                s.sendall(b"capture-probe-%d\r\n" % probe)
            time.sleep(0.05)
            if os.path.exists(pcap):
                with open(pcap, "rb") as f:
                    if b"capture-probe-" in f.read():
                        break
            self.assertLess(time.time(), deadline, "no probe reached the capture")
        server = ("http://" + api) if flags else api
        trust = [] if flags else ["--ca-file", cp_api.ca_file_for(api)]
        base = [MESHCTL, "--server", server, "--token", token, *trust]
        for args in (["get", "svc"], ["apply", "-f", "-"],
                     ["operator-token", "create", "sniffed", "--role", "viewer"]):
            p = subprocess.run(base + args, input=SERVICE % "sniffed", capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
        operator_token = p.stdout.strip()
        self.assertTrue(operator_token.startswith("mot1.sniffed."), operator_token)
        p = subprocess.run(base[:3] + ["--token", operator_token, *trust, "get", "svc"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        time.sleep(0.5)  # the last packets reach the capture
        tshark.send_signal(signal.SIGINT)
        tshark.wait(timeout=20)
        with open(pcap, "rb") as f:
            captured = f.read()
        self.assertGreater(len(captured), 2000, "the capture holds the exchanges")
        with open(log) as f:
            return captured, (token, operator_token), f.read()

    def test_the_tokens_do_not_cross_the_wire(self):
        captured, tokens, _ = self.capture()
        for token in tokens:
            self.assertNotIn(token.encode(), captured)
            self.assertNotIn(token[-20:].encode(), captured)
        self.assertNotIn(b"Authorization", captured)

    def test_with_api_plaintext_they_do_and_the_control_plane_warned(self):
        captured, tokens, log = self.capture("--api-plaintext")
        for token in tokens:
            self.assertIn(token.encode(), captured)
        self.assertIn("API: plain HTTP (--api-plaintext)", log)


class RolesTest(ApiTestCase):
    def test_a_viewer_reads_but_may_not_write(self):
        viewer = self.operator_token("vera", "viewer")
        self.assertTrue(viewer.startswith("mot1.vera."), viewer)
        before = metric(self.api, "meshlet_cp_api_forbidden_total", 'needed="editor"')
        p = self.meshctl("apply", "-f", "-", token=viewer, stdin=SERVICE % "by-viewer", expect=1)
        self.assertIn('operator-token "vera" has the role viewer', p.stderr)
        self.assertIn("needs editor", p.stderr)
        self.assertEqual(metric(self.api, "meshlet_cp_api_forbidden_total", 'needed="editor"'),
                         before + 1)
        self.meshctl("get", "svc", "by-viewer", token=viewer, expect=1)  # nothing was written
        self.assertIn("No services", self.meshctl("get", "svc", token=viewer).stderr)
        # The dashboard: its page, and the API calls it makes with the viewer's token.
        self.assertEqual(cp_api.request(self.api, "GET", "/dashboard/")[0], 200)
        for path in ("/api/v1/traces?limit=20", "/api/v1/stat?window=1m",
                     "/api/v1/stat/history?service=a.default",
                     "/api/v1/stat/routes?service=a.default", "/api/v1/proxies",
                     "/api/v1/workloads"):
            status, body = cp_api.request(self.api, "GET", path, token=viewer)
            self.assertIn(status, (200, 503), f"{path}: {body}")  # 503: nothing serves it here
            self.assertNotIn(status, (401, 403))
        who = json.loads(cp_api.request(self.api, "GET", "/api/v1/whoami", token=viewer)[1])
        self.assertEqual((who["name"], who["credential"], who["role"]),
                         ("vera", "operator-token", "viewer"))

    def test_an_editor_writes_policy_but_may_not_create_join_tokens(self):
        editor = self.operator_token("ed", "editor")
        self.meshctl("apply", "-f", "-", token=editor, stdin=SERVICE % "by-editor")
        before = metric(self.api, "meshlet_cp_api_forbidden_total", 'needed="admin"')
        p = self.meshctl("token", "create", "-n", "default", "--service-account", "web",
                         token=editor, expect=1)
        self.assertIn("needs admin", p.stderr)
        p = self.meshctl("operator-token", "create", "escalate", "--role", "admin", token=editor,
                         expect=1)
        self.assertIn("needs admin", p.stderr)
        self.assertEqual(metric(self.api, "meshlet_cp_api_forbidden_total", 'needed="admin"'),
                         before + 2)
        # The bootstrap token stays an admin.
        self.assertTrue(self.meshctl("token", "create", "-n", "default", "--service-account",
                                     "web").stdout.startswith("mjt1."))

    def test_a_revoked_operator_token_is_401(self):
        token = self.operator_token("temp", "admin")
        self.meshctl("get", "svc", token=token)
        listed = self.meshctl("operator-token", "list").stdout
        self.assertRegex(listed, r"(?m)^temp\s+admin\s+\S+\s+api-token\s+never$")
        self.assertNotIn("mot1.", listed)
        before = metric(self.api, "meshlet_cp_api_auth_failures_total")
        self.assertIn("revoked", self.meshctl("operator-token", "revoke", "temp").stdout)
        p = self.meshctl("get", "svc", token=token, expect=3)
        self.assertIn("refused the token", p.stderr)
        self.assertIn('operator token "temp" does not exist (revoked?)', p.stderr)
        self.assertEqual(metric(self.api, "meshlet_cp_api_auth_failures_total"), before + 1)
        self.assertNotIn("temp", self.meshctl("operator-token", "list").stdout)

    def test_check_says_who_the_token_is(self):
        viewer = self.operator_token("checker", "viewer")
        self.assertIn("token          accepted: checker (operator-token), role viewer",
                      self.meshctl("check", token=viewer).stdout)
        self.assertIn("token          accepted: api-token (api-token), role admin",
                      self.meshctl("check").stdout)


class AuditAndOriginTest(ApiTestCase):
    def audit(self):
        path = os.path.join(self.data, "audit.log")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(path) as f:
            return [json.loads(line) for line in f]

    def test_every_write_let_in_or_refused_is_recorded_without_secrets(self):
        before = len(self.audit())
        editor = self.operator_token("writer", "editor")
        self.meshctl("apply", "-f", "-", token=editor, stdin=SERVICE % "audited")
        self.meshctl("token", "create", "-n", "default", "--service-account", "web", token=editor,
                     expect=1)
        self.meshctl("get", "svc", token=editor)  # reads are not recorded
        self.meshctl("operator-token", "revoke", "writer")
        self.meshctl("delete", "svc", "audited", token=editor, expect=3)
        records = self.audit()[before:]
        summary = [(r["principal"], r["credential"], r["role"], r["method"], r["path"],
                    r["status"], r["result"]) for r in records]
        self.assertEqual(summary, [
            ("api-token", "api-token", "admin", "POST", "/api/v1/operator-tokens", 201, "ok"),
            ("writer", "operator-token", "editor", "PUT",
             "/apis/meshlet.io/v1/namespaces/default/services/audited", 201, "created"),
            ("writer", "operator-token", "editor", "POST", "/api/v1/tokens", 403, "error"),
            ("api-token", "api-token", "admin", "DELETE", "/api/v1/operator-tokens/writer", 204,
             "ok"),
            ("", "", "", "DELETE", "/apis/meshlet.io/v1/namespaces/default/services/audited", 401,
             "error"),
        ])
        self.assertEqual(records[0]["object"], {"resource": "operator-tokens", "namespace": "",
                                                "name": "writer"})
        self.assertEqual(records[1]["object"], {"resource": "services", "namespace": "default",
                                                "name": "audited"})
        self.assertIn("needs admin", records[2]["error"])
        self.assertIn("does not exist (revoked?)", records[4]["error"])
        for r in records:
            self.assertRegex(r["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertTrue(r["peer"].startswith("127.0.0.1:"), r)
        with open(os.path.join(self.data, "audit.log")) as f:
            text = f.read()
        self.assertNotIn(editor, text)
        self.assertNotIn(editor.rsplit(".", 1)[1], text)
        self.assertNotIn(self.token, text)

    def test_a_write_from_a_page_of_another_origin_is_refused(self):
        before = metric(self.api, "meshlet_cp_api_cross_origin_refused_total")
        path = "/apis/meshlet.io/v1/namespaces/default/services/from-a-page"
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                        {"Origin": "http://" + self.api}):
            status, body = cp_api.request(self.api, "PUT", path, body=SERVICE % "from-a-page",
                                          token=self.token, headers=headers)
            self.assertEqual(status, 403, headers)
            self.assertIn("from a web page of another origin", body)
        self.assertEqual(metric(self.api, "meshlet_cp_api_cross_origin_refused_total"),
                         before + 3)
        self.assertEqual(self.audit()[-1]["status"], 403)
        # The API's own origin (the dashboard's), and reads from anywhere: served.
        status, body = cp_api.request(self.api, "PUT", path, body=SERVICE % "from-a-page",
                                      token=self.token,
                                      headers={"Origin": "https://" + self.api,
                                               "Sec-Fetch-Site": "same-origin"})
        self.assertEqual(status, 201, body)
        self.assertEqual(cp_api.request(self.api, "GET", path, token=self.token,
                                        headers={"Origin": "https://evil.example"})[0], 200)


class FakeKubernetes:
    """An API server answering TokenReview and SubjectAccessReview for the users it knows:
    token -> (user name, groups); user -> verbs granted on meshes.meshlet.io."""

    def __init__(self, tmp, control_plane_token, users, grants):
        self.reviews = []
        fake = self

        class Handler(JsonApiHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.reviews.append((self.path, body))
                if self.headers.get("Authorization") != "Bearer " + control_plane_token:
                    return self.answer(401, {"kind": "Status", "code": 401})
                if self.path == "/apis/authentication.k8s.io/v1/tokenreviews":
                    user = users.get(body["spec"]["token"])
                    status = ({"authenticated": True,
                               "user": {"username": user[0], "uid": "uid-" + user[0],
                                        "groups": user[1]}}
                              if user else {"authenticated": False, "error": "invalid token"})
                    return self.answer(201, {"apiVersion": "authentication.k8s.io/v1",
                                             "kind": "TokenReview", "status": status})
                if self.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
                    spec = body["spec"]
                    attributes = spec["resourceAttributes"]
                    allowed = (attributes["group"] == "meshlet.io" and
                               attributes["resource"] == "meshes" and
                               attributes["verb"] in grants.get(spec["user"], ()))
                    status = {"allowed": allowed}
                    if not allowed:
                        status["reason"] = "no RBAC policy matched"
                    return self.answer(201, {"apiVersion": "authorization.k8s.io/v1",
                                             "kind": "SubjectAccessReview", "status": status})
                self.answer(404, {"kind": "Status", "code": 404})

        self.ca = make_ca(tmp, "cluster-ca")
        self.httpd, self.address = serve_https(Handler, make_server_cert(tmp, "apiserver",
                                                                         self.ca))

    def stop(self):
        self.httpd.shutdown()


class KubernetesUsersTest(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        token_file = os.path.join(tmp, "cp-token")
        with open(token_file, "w") as f:
            f.write("control-plane-sa-token\n")
        cls.kube = FakeKubernetes(tmp, "control-plane-sa-token",
                                  users={"kate-token": ("kate", ["dev"]),
                                         "vic-token": ("vic", ["system:authenticated"])},
                                  grants={"kate": ("view", "edit"), "vic": ("view",)})
        cls.extra_flags = ("--kubernetes-api", cls.kube.address, "--kubernetes-ca-file",
                           cls.kube.ca[0], "--kubernetes-token-file", token_file,
                           "--kubernetes-discovery=false", "--api-kubernetes-cache-ttl=0s")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.kube.stop()

    def test_rbac_of_kubernetes_users_governs_meshctl(self):
        # kate is bound to meshlet-editor: writes policy, may not create join tokens.
        self.meshctl("apply", "-f", "-", token="kate-token", stdin=SERVICE % "by-kate")
        p = self.meshctl("token", "create", "-n", "default", "--service-account", "web",
                         token="kate-token", expect=1)
        self.assertIn('Kubernetes user "kate" may not admin meshes.meshlet.io', p.stderr)
        self.assertIn("meshlet-admin", p.stderr)
        # vic reads only.
        self.meshctl("get", "svc", "by-kate", token="vic-token")
        p = self.meshctl("delete", "svc", "by-kate", token="vic-token", expect=1)
        self.assertIn('Kubernetes user "vic" may not edit', p.stderr)
        # Unknown to the API server: 401.
        p = self.meshctl("get", "svc", token="someone-else", expect=3)
        self.assertIn("the Kubernetes API server refused the token: invalid token", p.stderr)
        # What the control plane asked: the user as reviewed, the verb of the role needed.
        access = [b["spec"] for path, b in self.kube.reviews
                  if path.endswith("/subjectaccessreviews")]
        self.assertIn({"user": "kate", "uid": "uid-kate", "groups": ["dev"], "extra": {},
                       "resourceAttributes": {"group": "meshlet.io", "resource": "meshes",
                                              "verb": "edit"}}, access)
        self.assertIn("admin", [a["resourceAttributes"]["verb"] for a in access])
        who = json.loads(cp_api.request(self.api, "GET", "/api/v1/whoami", token="kate-token")[1])
        self.assertEqual((who["name"], who["credential"]), ("kate", "kubernetes"))
        self.assertGreater(metric(self.api, "meshlet_cp_api_kubernetes_reviews_total",
                                  'review="access",result="ok"'), 3)
        # The bootstrap and operator tokens never reach the API server.
        reviewed = [b["spec"]["token"] for path, b in self.kube.reviews
                    if path.endswith("/tokenreviews")]
        self.assertNotIn(self.token, reviewed)


class ServerTimeoutsTest(unittest.TestCase):
    """Every server of the control plane closes connections that never send a request."""

    def test_connections_that_send_nothing_are_closed_on_every_port(self):
        tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.addCleanup(shutil.rmtree, tmp, True)
        log = os.path.join(tmp, "cp.log")
        cp, api, ads = start_control_plane(
            CONTROL_PLANE, log, "--data-dir", os.path.join(tmp, "data"), "--api-address",
            "127.0.0.1:0", "--xds-address", "127.0.0.1:0", "--webhook-address", "127.0.0.1:0",
            "--otlp-address", "127.0.0.1:0", "--zipkin-address", "127.0.0.1:0",
            "--http-request-timeout", "1s", "--http-idle-timeout", "1s",
            "--xds-handshake-timeout", "1s")
        self.addCleanup(stop_process, cp)
        with open(log) as f:
            text = f.read()
        ports = {
            "api": int(api.rsplit(":", 1)[1]),
            "xds": int(ads.rsplit(":", 1)[1]),
            "webhook": int(re.search(r"sidecar injection on https://127\.0\.0\.1:(\d+)", text)
                           .group(1)),
            "otlp": int(re.search(r"OTLP/HTTP on 127\.0\.0\.1:(\d+)", text).group(1)),
            "zipkin": int(re.search(r"Zipkin on 127\.0\.0\.1:(\d+)", text).group(1)),
        }
        sockets = {}
        for server, port in ports.items():
            sockets[server] = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.addCleanup(sockets[server].close)
        started = time.time()
        for server, s in sockets.items():
            try:
                self.assertEqual(s.recv(4096), b"", server)  # closed, nothing said
            except ConnectionResetError:
                pass
            self.assertLess(time.time() - started, 5, server)
        for server in ports:
            self.assertEqual(metric(api, "meshlet_cp_http_timeouts_total", f'server="{server}"'),
                             1, server)


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL = (os.path.abspath(a) for a in sys.argv[1:3])
    unittest.main(argv=sys.argv[:1] + sys.argv[3:], verbosity=2)
