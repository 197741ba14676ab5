"""The control plane fills in its injection webhook's caBundle, and the trust-bundle ConfigMap of
injected namespaces, through the Kubernetes API.

Usage: webhook_ca_bundle_test.py CONTROL_PLANE MESHCTL WEBHOOK_YAML [unittest args]

A fake API server (HTTPS on 127.0.0.1, its certificate from a "cluster CA", the control plane's
bearer token checked) holds the MutatingWebhookConfiguration of k8s/base/webhook.yaml, with an
empty caBundle as `kubectl apply` leaves it, and answers GET and PATCH (application/
json-patch+json, applied with python3-jsonpatch, a failed "test" answered 422 as the API server
does). The control plane runs with its CA's own certificate for discovery and the webhook and
--kubernetes-api pointing at the fake. Shown:
- both webhooks' caBundle becomes the root `meshctl trust-bundle` prints, and with that caBundle
  a client verifying the webhook Service's name reaches the webhook, as the API server would;
- a re-applied manifest (caBundle reset) is repaired at the next check;
- a PATCH whose resourceVersion test fails (someone changed the object in between) is retried
  and succeeds;
- a control plane looking for a configuration that does not exist says so once and counts it;
- meshlet_cp_webhook_ca_bundle_checks_total counts updated, current and not_found checks;
- the namespaces labelled meshlet.io/inject=enabled get the ConfigMap meshlet-trust (ca.pem: the
  same root) that injected pods mount: created where missing, its ca.pem set where stale (with a
  merge patch, other keys kept), unlabelled namespaces and kube-system left alone;
  meshlet_cp_trust_bundle_configmaps_total counts created, updated and current.
"""

import base64
import copy
import http.server
import json
import os
import re
import socket
import ssl
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

import jsonpatch
import yaml

from fake_kubernetes_api import JsonApiHandler
import cp_api
from mesh_util import make_ca, make_server_cert, serve_https, start_control_plane, stop_process

CONTROL_PLANE = MESHCTL = WEBHOOK_YAML = None  # set from argv
TOKEN = "control-plane-own-token"
PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"


class FakeApiServer:
    """One MutatingWebhookConfiguration, by name, with GET and JSON-patch PATCH; namespaces
    (list with a labelSelector) and their ConfigMaps (GET, POST, merge-patch PATCH)."""

    def __init__(self, cert, configuration):
        self.lock = threading.Lock()
        self.configuration = configuration
        self.namespaces = {"shop": {"meshlet.io/inject": "enabled"}, "other": {},
                           "kube-system": {"meshlet.io/inject": "enabled"},
                           "stale": {"meshlet.io/inject": "enabled"}}
        self.configmaps = {("stale", "meshlet-trust"): {"data": {"ca.pem": "old", "x": "kept"}}}
        self.version = 1
        self.race_once = False  # the next PATCH finds the object changed since its GET
        self.problems, self.patches = [], []
        server = self

        class Handler(JsonApiHandler):
            def refuse(self, code, message):
                server.problems.append(message)
                self.answer(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "message": message, "code": code})

            def target(self):
                if self.headers.get("Authorization") != "Bearer " + TOKEN:
                    self.refuse(401, "wrong bearer token %r" % self.headers.get("Authorization"))
                    return None
                name = self.path[len(PATH):] if self.path.startswith(PATH) else None
                if name != server.configuration["metadata"]["name"]:
                    self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404,
                                      "message": "mutatingwebhookconfigurations %r not found" %
                                                 name})
                    return None
                return name

            def current(self):
                obj = copy.deepcopy(server.configuration)
                obj["metadata"]["resourceVersion"] = str(server.version)
                return obj

            def core(self, method, body=None):
                """/api/v1/...: namespaces and ConfigMaps. True when it answered."""
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                if parts[:2] != ["api", "v1"]:
                    return False
                if self.headers.get("Authorization") != "Bearer " + TOKEN:
                    self.refuse(401, "wrong bearer token")
                    return True
                if parts[2:] == ["namespaces"] and method == "GET":
                    selector = urllib.parse.parse_qs(query).get("labelSelector", [""])[0]
                    key, _, value = selector.partition("=")
                    items = [{"metadata": {"name": n, "labels": labels}}
                             for n, labels in server.namespaces.items()
                             if labels.get(key) == value]
                    self.answer(200, {"kind": "NamespaceList", "apiVersion": "v1",
                                      "items": items})
                    return True
                if len(parts) >= 5 and parts[2] == "namespaces" and parts[4] == "configmaps":
                    ns = parts[3]
                    if method == "POST" and len(parts) == 5:
                        obj = json.loads(body)
                        key = (ns, obj["metadata"]["name"])
                        if key in server.configmaps:
                            self.answer(409, {"kind": "Status", "code": 409})
                        else:
                            server.configmaps[key] = obj
                            self.answer(201, obj)
                        return True
                    key = (ns, parts[5]) if len(parts) == 6 else None
                    if key not in server.configmaps:
                        self.answer(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    elif method == "GET":
                        self.answer(200, server.configmaps[key])
                    elif method == "PATCH":
                        if self.headers.get("Content-Type") != "application/merge-patch+json":
                            return self.refuse(415, "content type") or True
                        patch = json.loads(body)
                        server.configmaps[key].setdefault("data", {}).update(patch["data"])
                        self.answer(200, server.configmaps[key])
                    return True
                self.answer(404, {"kind": "Status", "code": 404})
                return True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server.lock:
                    if not self.core("POST", body):
                        self.refuse(405, "POST " + self.path)

            def do_GET(self):
                with server.lock:
                    if self.core("GET"):
                        return
                    if self.target():
                        self.answer(200, self.current())

            def do_PATCH(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server.lock:
                    if self.core("PATCH", body):
                        return
                    if not self.target():
                        return
                    if self.headers.get("Content-Type") != "application/json-patch+json":
                        return self.refuse(415, "content type %r" % self.headers.get(
                            "Content-Type"))
                    if server.race_once:
                        server.race_once = False
                        server.version += 1
                    try:
                        patch = json.loads(body)
                        patched = jsonpatch.apply_patch(self.current(), patch)
                    except jsonpatch.JsonPatchTestFailed as e:
                        return self.answer(422, {"kind": "Status", "code": 422,
                                                 "message": "the server rejected our request: " +
                                                            str(e)})
                    except (ValueError, jsonpatch.JsonPatchException) as e:
                        return self.refuse(400, "bad patch %r: %s" % (body, e))
                    server.patches.append(patch)
                    del patched["metadata"]["resourceVersion"]
                    server.configuration = patched
                    server.version += 1
                    self.answer(200, self.current())

        self.httpd, self.address = serve_https(Handler, cert)

    def bundles(self):
        with self.lock:
            return [w["clientConfig"].get("caBundle", "")
                    for w in self.configuration["webhooks"]]

    def reset(self):
        """What `kubectl apply` of the manifest again does."""
        with self.lock:
            for w in self.configuration["webhooks"]:
                w["clientConfig"].pop("caBundle", None)
            self.version += 1

    def stop(self):
        self.httpd.shutdown()


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class WebhookCaBundleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t = cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cluster_ca = make_ca(t, "cluster-ca")
        cls.cluster_ca = cluster_ca[0]
        with open(WEBHOOK_YAML) as f:
            configuration = yaml.safe_load(f)
        cls.api_server = FakeApiServer(make_server_cert(t, "apiserver", cluster_ca),
                                       configuration)
        cls.token_file = os.path.join(t, "token")
        with open(cls.token_file, "w") as f:
            f.write(TOKEN + "\n")
        cls.cp, cls.log, cls.api, cls.webhook_port = cls.control_plane("main")
        with open(os.path.join(t, "main-data", "api-token")) as f:
            cls.api_token = f.read().strip()

    @classmethod
    def control_plane(cls, name, *args):
        data, log = os.path.join(cls.tmp, name + "-data"), os.path.join(cls.tmp, name + ".log")
        cp, api, _ = start_control_plane(
            CONTROL_PLANE, log, "--data-dir", data, "--api-address", "127.0.0.1:0",
            "--xds-address", "127.0.0.1:0", "--webhook-address", "127.0.0.1:0",
            "--otlp-address=", "--zipkin-address=", "--kubernetes-api", cls.api_server.address,
            "--kubernetes-token-file", cls.token_file, "--kubernetes-ca-file", cls.cluster_ca,
            "--webhook-ca-bundle-interval", "0.3s", "--trust-bundle-interval", "0.3s",
            "--kubernetes-discovery=false", "--kubernetes-policy=false", *args)
        port = None
        deadline = time.time() + 10
        while port is None and time.time() < deadline:
            with open(log) as f:
                m = re.search(r"webhook: sidecar injection on https://127\.0\.0\.1:(\d+)", f.read())
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        if port is None:
            stop_process(cp)
            raise AssertionError("the webhook did not start")
        return cp, log, api, port

    @classmethod
    def tearDownClass(cls):
        stop_process(cls.cp)
        cls.api_server.stop()

    def root(self):
        req = urllib.request.Request("https://%s/api/v1/trust-bundle" % self.api,
                                     headers={"Authorization": "Bearer " + self.api_token})
        with cp_api.urlopen(req, timeout=5) as r:
            return r.read()

    def metric(self, api, token, result):
        req = urllib.request.Request("https://%s/metrics" % api,
                                     headers={"Authorization": "Bearer " + token})
        with cp_api.urlopen(req, timeout=5) as r:
            text = r.read().decode()
        m = re.search(r'^meshlet_cp_webhook_ca_bundle_checks_total\{result="%s"\} (\d+)' % result,
                      text, re.M)
        return int(m.group(1)) if m else 0

    def test_ca_bundle_filled_repaired_and_trusted(self):
        want = base64.b64encode(self.root()).decode()
        wait_for(lambda: self.api_server.bundles() == [want, want], 10, "the caBundle")
        self.assertFalse(self.api_server.problems)
        # The API server's view: the caBundle verifies the webhook for the Service's name.
        context = ssl.create_default_context(cadata=base64.b64decode(want).decode())
        with socket.create_connection(("127.0.0.1", self.webhook_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="meshlet-control-plane.meshlet-system.svc") as tls:
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                self.assertIn(b"200", tls.recv(100))
        # Steady state: checks find it current.
        current = self.metric(self.api, self.api_token, "current")
        wait_for(lambda: self.metric(self.api, self.api_token, "current") > current, 5,
                 "a current check")

        # `kubectl apply` again empties it: repaired at the next check.
        self.api_server.reset()
        wait_for(lambda: self.api_server.bundles() == [want, want], 5, "the repair")

        # Changed between GET and PATCH: the resourceVersion test fails, the next check wins.
        self.api_server.race_once = True
        self.api_server.reset()
        wait_for(lambda: self.api_server.bundles() == [want, want], 5, "the retried patch")
        self.assertFalse(self.api_server.race_once)
        # The API server holds the patch before the control plane has read its answer and counted
        # it: wait for the count.
        wait_for(lambda: self.metric(self.api, self.api_token, "updated") >= 3, 5,
                 "three updates counted")
        self.assertGreaterEqual(self.metric(self.api, self.api_token, "failed"), 1)
        for patch in self.api_server.patches:
            self.assertEqual(patch[0]["op"], "test")
            self.assertEqual(patch[0]["path"], "/metadata/resourceVersion")
            self.assertTrue(all(op["path"].endswith("/clientConfig/caBundle") for op in patch[1:]))

    def test_trust_bundle_configmaps_of_injected_namespaces(self):
        root = self.root().decode()

        def configmaps():
            with self.api_server.lock:
                return {k: copy.deepcopy(v) for k, v in self.api_server.configmaps.items()}
        wait_for(lambda: configmaps().get(("shop", "meshlet-trust"), {}).get("data", {}).get(
            "ca.pem") == root and configmaps()[("stale", "meshlet-trust")]["data"]["ca.pem"] ==
            root, 10, "the ConfigMaps")
        maps = configmaps()
        created = maps[("shop", "meshlet-trust")]
        self.assertEqual(created["metadata"]["namespace"], "shop")
        self.assertEqual(created["metadata"]["labels"], {"app.kubernetes.io/managed-by": "meshlet"})
        self.assertEqual(maps[("stale", "meshlet-trust")]["data"]["x"], "kept")
        self.assertNotIn(("other", "meshlet-trust"), maps)
        self.assertNotIn(("kube-system", "meshlet-trust"), maps)
        self.assertEqual(self.metric_of("meshlet_cp_trust_bundle_configmaps_total", "created"), 1)
        self.assertEqual(self.metric_of("meshlet_cp_trust_bundle_configmaps_total", "updated"), 1)
        wait_for(lambda: self.metric_of("meshlet_cp_trust_bundle_configmaps_total",
                                        "current") >= 2, 5, "a round finding both current")

    def metric_of(self, name, result):
        req = urllib.request.Request("https://%s/metrics" % self.api,
                                     headers={"Authorization": "Bearer " + self.api_token})
        with cp_api.urlopen(req, timeout=5) as r:
            text = r.read().decode()
        m = re.search(r'^%s\{result="%s"\} (\d+)' % (name, result), text, re.M)
        return int(m.group(1)) if m else 0

    def test_a_missing_configuration_is_reported_once(self):
        # (Its own CA root must not fight the main control plane's over the ConfigMaps.)
        cp, log, api, _ = self.control_plane("absent", "--webhook-configuration", "nothing-here",
                                             "--trust-bundle-namespaces=")
        try:
            token = open(os.path.join(self.tmp, "absent-data", "api-token")).read().strip()
            wait_for(lambda: self.metric(api, token, "not_found") >= 3, 10, "not_found checks")
            with open(log) as f:
                text = f.read()
            self.assertEqual(text.count('no MutatingWebhookConfiguration "nothing-here"'), 1, text)
        finally:
            stop_process(cp)


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, WEBHOOK_YAML = (os.path.abspath(a) for a in sys.argv[1:4])
    del sys.argv[1:4]
    unittest.main(verbosity=2)
