"""The injection webhook of the real control plane, as the Kubernetes API server calls it.

Usage: webhook_test.py CONTROL_PLANE MESHCTL VALIDATE_MJS [unittest args]

The control plane starts without TLS flags, so its CA issues the certificate that both the
discovery port and the webhook (--webhook-address 127.0.0.1:0) serve. Requests are HTTPS to
meshlet-control-plane.meshlet-system.svc (the name a MutatingWebhookConfiguration's service
reference makes the API server check), verified with the root `meshctl trust-bundle` prints, over
HTTP/1.1 (Python) and HTTP/2 (curl). Shown:
- the pods of a CronJob's run and of a Deployment's ReplicaSet, without app labels, get the
  service name `meshctl inject` gives their CronJob and Deployment (not the run's or ReplicaSet's);
- for a Pod, a Deployment, a StatefulSet, a Job and a CronJob (real AdmissionReview v1 JSON), the
  response is allowed with a JSONPatch that python3-jsonpatch applies to the object sent, and the
  result is exactly what `meshctl inject` makes of the same object (one injection, two
  front ends) and validates against the official Kubernetes schemas with unknown fields refused
  (tests/k8s/validate.mjs), native sidecars included; reviewing the patched object again gives no
  patch;
- kube-system and meshlet-system, an opted-out pod, an UPDATE and a Service are allowed untouched;
  a dry run gets the same answer; a pod injection refuses is refused (400) with its message;
  malformed reviews (not JSON, deeply nested, wrong kind, no uid) are refused with a clear
  message and never crash or hang the webhook, which still answers afterwards;
- meshlet_cp_webhook_reviews_total counts each verdict;
- a control plane started with --revision canary serves its webhook for the revision's Service
  name, injects unlabelled pods and pods labelled meshlet.io/rev=canary pointed at its own
  control plane (exactly as `meshctl inject --revision canary`), and leaves a pod labelled for
  another revision unchanged.
"""

import base64
import copy
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import jsonpatch

import cp_api
from mesh_util import start_control_plane, stop_process

CONTROL_PLANE = MESHCTL = CHECKER = None  # set from argv
SERVICE_NAME = "meshlet-control-plane.meshlet-system.svc"

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"generateName": "web-5d9-", "namespace": "shop", "labels": {"app": "web"}},
       "spec": {"serviceAccountName": "web", "containers": [
           {"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}]}}


def template(labels):
    return {"metadata": {"labels": labels},
            "spec": {"serviceAccountName": "web",
                     "containers": [{"name": "web", "image": "web:1",
                                     "ports": [{"containerPort": 8080}]}]}}


def job_template():
    t = template({"app": "batch"})
    t["spec"]["restartPolicy"] = "Never"
    return t


OBJECTS = {
    "Pod": POD,
    "Deployment": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                            "template": template({"app": "web"})}},
    "StatefulSet": {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                    "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                             "template": template({"app": "db"})}},
    "Job": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
            "spec": {"template": job_template()}},
    "CronJob": {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
                "spec": {"schedule": "0 1 * * *",
                         "jobTemplate": {"spec": {"template": job_template()}}}},
}


def review(obj, namespace="shop", operation="CREATE", uid="0df28fbd-5f5f-11e8-b7cc-42010a800002",
           **extra):
    group, _, version = obj.get("apiVersion", "v1").rpartition("/")
    request = {"uid": uid, "kind": {"group": group, "version": version, "kind": obj["kind"]},
               "resource": {"group": group, "version": version,
                            "resource": obj["kind"].lower() + "s"},
               "namespace": namespace, "operation": operation,
               "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
               "object": obj, "oldObject": None, "dryRun": False,
               "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}
    request.update(extra)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


class WebhookServer(unittest.TestCase):
    """A control plane with its webhook, and requests to it; the tests are the subclasses'."""
    # The name the API server checks the webhook's certificate for, and the control plane's
    # flags beyond those of every test.
    service_name = SERVICE_NAME
    flags = ()
    meshctl_flags = ()

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.data = os.path.join(cls.tmp, "cp-data")
        log = os.path.join(cls.tmp, "cp.log")
        cls.cp, cls.api, _ = start_control_plane(
            CONTROL_PLANE, log, "--data-dir", cls.data, "--api-address", "127.0.0.1:0",
            "--xds-address", "127.0.0.1:0", "--webhook-address", "127.0.0.1:0",
            "--otlp-address=", "--zipkin-address=", *cls.flags)
        deadline = time.time() + 10
        while True:
            with open(log) as f:
                m = re.search(r"webhook: sidecar injection on https://127\.0\.0\.1:(\d+)/inject",
                              f.read())
            if m:
                cls.port = int(m.group(1))
                break
            if time.time() > deadline or cls.cp.poll() is not None:
                stop_process(cls.cp)
                with open(log) as f:
                    raise AssertionError("the webhook did not start: " + f.read()[-2000:])
            time.sleep(0.05)
        with open(os.path.join(cls.data, "api-token")) as f:
            cls.token = f.read().strip()
        cls.root = os.path.join(cls.tmp, "ca.pem")
        with open(cls.root, "w") as f:
            f.write(cls.meshctl("trust-bundle"))
        cls.context = ssl.create_default_context(cafile=cls.root)

    @classmethod
    def tearDownClass(cls):
        stop_process(cls.cp)

    @classmethod
    def meshctl(cls, *args, stdin=None):
        p = subprocess.run([MESHCTL, "--server", cls.api, "--token", cls.token, "--ca-file",
                            cp_api.ca_file_for(cls.api), *cls.meshctl_flags, *args],
                           input=stdin, capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"meshctl {args} exited {p.returncode}: {p.stderr}")
        return p.stdout

    def post(self, body, path="/inject", method="POST"):
        """(status, body) of an HTTPS request that verifies the Service's name."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                           timeout=10)
        # Connected by hand: the name checked is the Service's, the address loopback.
        conn.sock = self.context.wrap_socket(
            socket.create_connection(("127.0.0.1", self.port), timeout=10),
            server_hostname=self.service_name)
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        out = resp.read().decode()
        conn.close()
        return resp.status, out

    def respond(self, body):
        status, text = self.post(body)
        self.assertEqual(status, 200, text)
        answer = json.loads(text)
        self.assertEqual((answer["apiVersion"], answer["kind"]),
                         ("admission.k8s.io/v1", "AdmissionReview"))
        return answer["response"]

    def metric(self, verdict):
        text = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {self.token}",
                               "--cacert", cp_api.ca_file_for(self.api), "--resolve",
                               f"meshlet-control-plane:{self.api.rsplit(':', 1)[1]}:127.0.0.1",
                               f"https://meshlet-control-plane:{self.api.rsplit(':', 1)[1]}"
                               "/metrics"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r'^meshlet_cp_webhook_reviews_total\{verdict="%s"\} (\d+)' % verdict, text,
                      re.M)
        return int(m.group(1)) if m else 0

    def meshctl_inject(self, obj):
        out = subprocess.run([MESHCTL, "inject", "-f", "-", "-o", "json"],
                             input=json.dumps(obj), capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)


class WebhookTest(WebhookServer):
    def test_each_kind_patched_as_meshctl_injects_it(self):
        before = self.metric("injected")
        results = []
        for kind, obj in OBJECTS.items():
            with self.subTest(kind=kind):
                response = self.respond(review(obj))
                self.assertEqual(response["uid"], "0df28fbd-5f5f-11e8-b7cc-42010a800002")
                self.assertTrue(response["allowed"])
                self.assertEqual(response["patchType"], "JSONPatch")
                patch = json.loads(base64.b64decode(response["patch"]))
                patched = jsonpatch.apply_patch(copy.deepcopy(obj), patch)
                self.assertEqual(patched, self.meshctl_inject(obj))
                results.append(patched)
                # The proxy is in the template, as a native sidecar by default.
                spec = patched["spec"] if kind == "Pod" else (
                    patched["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                    if kind == "CronJob" else patched["spec"]["template"]["spec"])
                names = [c["name"] for c in spec["initContainers"]]
                self.assertEqual(names, ["meshlet-init", "meshlet-proxy"])
                self.assertEqual(spec["initContainers"][1]["restartPolicy"], "Always")
                # Injected objects come back untouched.
                again = self.respond(review(patched))
                self.assertTrue(again["allowed"])
                self.assertNotIn("patch", again)
        self.assertEqual(self.metric("injected") - before, len(OBJECTS))
        reason = CHECKER.skip_reason()
        if reason:
            print(f"SKIP: the schema check of the patched objects: {reason}")
            return
        ok, report = CHECKER.validate(results)
        self.assertTrue(ok, report)
        self.assertEqual(report.count("ok   "), len(OBJECTS), report)

    def test_controllers_pods_named_as_meshctl_inject_names_the_controller(self):
        # Without app labels: a CronJob's run and a Deployment's ReplicaSet name their pods after
        # themselves, which change every run and rollout; both front ends name the controller.
        def node_service(obj):
            found = re.findall(r'"--node-service=([^"]*)"', json.dumps(obj))
            self.assertEqual(len(found), 1, found)
            return found[0]

        def pod(generate_name, owner_kind, owner_name, labels):
            return {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"generateName": generate_name, "namespace": "shop",
                                 "labels": labels,
                                 "ownerReferences": [{
                                     "apiVersion": "batch/v1" if owner_kind == "Job" else "apps/v1",
                                     "kind": owner_kind, "name": owner_name, "controller": True,
                                     "blockOwnerDeletion": True,
                                     "uid": "0b6bd2e0-2f3c-4b5e-9a51-0f4a3f8e5b71"}]},
                    "spec": job_template()["spec"]}
        cronjob = copy.deepcopy(OBJECTS["CronJob"])
        cronjob["metadata"]["name"] = "nightly-report"
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"] = {}
        deployment = copy.deepcopy(OBJECTS["Deployment"])
        deployment["metadata"]["name"] = "orders"
        deployment["spec"]["template"]["metadata"]["labels"] = {"tier": "backend"}
        deployment["spec"]["selector"]["matchLabels"] = {"tier": "backend"}
        for controller, created in (
                (cronjob, pod("nightly-report-29403540-", "Job", "nightly-report-29403540",
                              {"job-name": "nightly-report-29403540"})),
                (deployment, pod("orders-5c8d7f9b6-", "ReplicaSet", "orders-5c8d7f9b6",
                                 {"tier": "backend", "pod-template-hash": "5c8d7f9b6"}))):
            with self.subTest(kind=controller["kind"]):
                name = controller["metadata"]["name"]
                self.assertEqual(node_service(self.meshctl_inject(controller)), name)
                response = self.respond(review(created))
                patched = jsonpatch.apply_patch(
                    copy.deepcopy(created), json.loads(base64.b64decode(response["patch"])))
                self.assertEqual(node_service(patched), name)
                # meshctl inject of the pod itself names it the same way.
                self.assertEqual(node_service(self.meshctl_inject(created)), name)

    def test_http2_with_curl(self):
        out = subprocess.run(
            ["curl", "-sS", "--http2", "--cacert", self.root, "--resolve",
             f"{SERVICE_NAME}:{self.port}:127.0.0.1", "-H", "Content-Type: application/json",
             "--data-binary", "@-", "-w", "\n%{http_version}",
             f"https://{SERVICE_NAME}:{self.port}/inject"],
            input=json.dumps(review(POD)), capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        body, _, version = out.stdout.rpartition("\n")
        self.assertEqual(version, "2")
        self.assertTrue(json.loads(body)["response"]["allowed"])

    def test_what_is_left_alone(self):
        before = self.metric("untouched")
        for namespace in ("kube-system", "meshlet-system"):
            response = self.respond(review(POD, namespace=namespace))
            self.assertTrue(response["allowed"])
            self.assertNotIn("patch", response)
        opted_out = copy.deepcopy(POD)
        opted_out["metadata"]["annotations"] = {"sidecar.meshlet.io/inject": "false"}
        self.assertNotIn("patch", self.respond(review(opted_out)))
        self.assertNotIn("patch", self.respond(review(POD, operation="UPDATE")))
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"ports": [{"port": 80}]}}
        self.assertNotIn("patch", self.respond(review(service)))
        self.assertEqual(self.metric("untouched") - before, 5)

    def test_dry_run_gets_the_same_answer(self):
        normal = self.respond(review(POD))
        dry = self.respond(review(POD, dryRun=True))
        self.assertEqual(dry, normal)

    def test_a_pod_injection_refuses_is_refused_with_the_reason(self):
        bad = copy.deepcopy(POD)
        bad["metadata"]["annotations"] = {"sidecar.meshlet.io/proxyCPU": "lots"}
        response = self.respond(review(bad))
        self.assertFalse(response["allowed"])
        self.assertEqual(response["status"]["code"], 400)
        self.assertIn("sidecar.meshlet.io/proxyCPU", response["status"]["message"])

    def test_malformed_reviews_get_a_clear_refusal(self):
        before = self.metric("malformed")
        cases = [
            (b'{"apiVersion": "admission.k8s.io/v1", "kind": ', "the request body is not JSON"),
            (b"plain words", "the request body is not a JSON object"),
            (b"[" * 100000, "nests deeper than 64 levels"),
            (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                         "request": {"uid": "u"}}), "expected apiVersion admission.k8s.io/v1"),
            (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                         "request": {"operation": "CREATE"}}), "request.uid: missing"),
        ]
        for body, message in cases:
            response = self.respond(body)
            self.assertFalse(response["allowed"])
            self.assertIn(message, response["status"]["message"])
        self.assertEqual(self.metric("malformed") - before, len(cases))
        # Still answering.
        self.assertTrue(self.respond(review(POD))["allowed"])
        status, _ = self.post(b"", path="/inject", method="GET")
        self.assertEqual(status, 405)
        status, text = self.post(b"", path="/healthz", method="GET")
        self.assertEqual((status, text), (200, "ok\n"))


class CniWebhookTest(WebhookServer):
    """The webhook of a control plane started with --inject-capture cni injects as `meshctl
    inject --cni` does: no meshlet-init, the status annotation marks the pod for meshlet-cni."""
    flags = ("--inject-capture", "cni")

    def test_injects_for_the_cni_plugin(self):
        response = self.respond(review(POD))
        self.assertTrue(response["allowed"])
        patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"])))
        patched = patch.apply(copy.deepcopy(POD))
        names = [c["name"] for c in patched["spec"].get("initContainers", [])]
        self.assertNotIn("meshlet-init", names)
        status = patched["metadata"]["annotations"]["sidecar.meshlet.io/status"]
        self.assertIn('"capture":"cni"', status)
        out = subprocess.run([MESHCTL, "inject", "-f", "-", "-o", "json", "--cni"],
                             input=json.dumps(POD), capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(patched, json.loads(out.stdout))


class RevisionWebhookTest(WebhookServer):
    """The webhook of a control plane started with --revision canary: its certificate is for
    the revision's Service name, it injects unlabelled pods and pods labelled for it with
    sidecars pointed at the revision's control plane (as `meshctl inject --revision canary`
    does), and leaves pods labelled for another revision unchanged."""
    service_name = "meshlet-control-plane-canary.meshlet-system.svc"
    flags = ("--revision", "canary")
    # The revision's API carries the revision's identity, which --revision implies.
    meshctl_flags = ("--revision", "canary")

    def test_injects_its_own_pods_for_its_control_plane(self):
        labelled = copy.deepcopy(POD)
        labelled["metadata"]["labels"]["meshlet.io/rev"] = "canary"
        for pod in (POD, labelled):
            response = self.respond(review(pod))
            self.assertTrue(response["allowed"])
            patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"])))
            patched = patch.apply(copy.deepcopy(pod))
            proxy = next(c for c in patched["spec"]["initContainers"]
                         if c["name"] == "meshlet-proxy")
            env = {e["name"]: e.get("value") for e in proxy["env"]}
            self.assertEqual(env["MESHLET_CONTROL_PLANE"],
                             "meshlet-control-plane-canary.meshlet-system.svc:15012")
            self.assertIn("--xds-server-identity=spiffe://cluster.local/ns/meshlet-system/sa/"
                          "meshlet-control-plane-canary", proxy["args"])
            self.assertIn("--node-label=meshlet.io/rev=canary", proxy["args"])
            annotations = patched["metadata"]["annotations"]
            self.assertEqual(annotations["sidecar.meshlet.io/revision"], "canary")
            self.assertEqual(annotations["sidecar.meshlet.io/serviceAccount"], "web")
            # One injection, two front ends.
            out = subprocess.run([MESHCTL, "inject", "-f", "-", "-o", "json", "--revision",
                                  "canary"], input=json.dumps(pod), capture_output=True,
                                 text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(patched, json.loads(out.stdout))

    def test_leaves_another_revisions_pods_unchanged(self):
        other = copy.deepcopy(POD)
        other["metadata"]["labels"]["meshlet.io/rev"] = "0-2-0"
        response = self.respond(review(other))
        self.assertTrue(response["allowed"])
        self.assertNotIn("patch", response)
        # Whoever created the pod is told why (kubectl prints an admission warning).
        self.assertEqual(response.get("warnings"), [
            "meshlet: not injected: the pod's label meshlet.io/rev names revision 0-2-0, not "
            "this control plane's (canary); that revision's webhook injects it (check the "
            "webhook configurations' selectors)"])
        # Labelled for this revision it would have been injected: the label made the difference.
        other["metadata"]["labels"]["meshlet.io/rev"] = "canary"
        self.assertIn("patch", self.respond(review(other)))

    def test_a_tags_pods_come_on_the_tags_path_and_get_this_revision(self):
        # A pod labelled with the tag prod, which points at this revision: the tag's
        # configuration sends it to /inject/tag/prod, where it is this revision's pod.
        tagged = copy.deepcopy(POD)
        tagged["metadata"]["labels"]["meshlet.io/rev"] = "prod"
        status, text = self.post(json.dumps(review(tagged)).encode(), path="/inject/tag/prod")
        self.assertEqual(status, 200, text)
        response = json.loads(text)["response"]
        self.assertTrue(response["allowed"])
        patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"])))
        patched = patch.apply(copy.deepcopy(tagged))
        self.assertEqual(patched["metadata"]["annotations"]["sidecar.meshlet.io/revision"],
                         "canary")
        proxy = next(c for c in patched["spec"]["initContainers"] if c["name"] == "meshlet-proxy")
        env = {e["name"]: e.get("value") for e in proxy["env"]}
        self.assertEqual(env["MESHLET_CONTROL_PLANE"],
                         "meshlet-control-plane-canary.meshlet-system.svc:15012")
        # The label stays the user's: the tag, not the revision.
        self.assertEqual(patched["metadata"]["labels"]["meshlet.io/rev"], "prod")
        # On the revision's own path (or another tag's) the same pod is another revision's.
        for path in ("/inject", "/inject/tag/stable"):
            status, text = self.post(json.dumps(review(tagged)).encode(), path=path)
            response = json.loads(text)["response"]
            self.assertTrue(response["allowed"])
            self.assertNotIn("patch", response)
            self.assertIn("names revision prod", response["warnings"][0])
        # The tag "default": pods no label puts on a revision.
        status, text = self.post(json.dumps(review(POD)).encode(), path="/inject/tag/default")
        self.assertIn("patch", json.loads(text)["response"])
        # A path that names no tag.
        status, _ = self.post(json.dumps(review(POD)).encode(), path="/inject/tag/Not_A_Tag")
        self.assertEqual(status, 404)


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL = (os.path.abspath(a) for a in sys.argv[1:3])
    sys.path.insert(0, os.path.dirname(os.path.realpath(sys.argv[3])))
    import k8s_schema  # noqa: E402 (tests/k8s)
    CHECKER = k8s_schema.Checker(sys.argv[3])
    del sys.argv[1:4]
    unittest.main(verbosity=2)
