"""Injected pods against the Pod Security Standards (pod_security.py): with meshlet-init (today's
mode) every injected pod fails `baseline` (NET_ADMIN, NET_RAW); with `meshctl inject --cni` a pod
that met `restricted` still does, for every workload kind (Pod, Deployment, StatefulSet,
DaemonSet, ReplicaSet, Job, CronJob) and both sidecar modes, and the sample apps
(examples/pods) get no violation from injection that they did not have.

Usage: pod_security_test.py MESHCTL EXAMPLES_PODS_DIR
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

from pod_security import baseline, restricted, violations

MESHCTL = PODS = None

# An app container that meets `restricted` by itself (no pod-level settings, so the injected
# proxy must bring its own).
APP = {"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}],
       "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                           "allowPrivilegeEscalation": False,
                           "capabilities": {"drop": ["ALL"]},
                           "seccompProfile": {"type": "RuntimeDefault"}}}


def template(labels):
    return {"metadata": {"labels": labels}, "spec": {"containers": [APP]}}


def workloads():
    """A restricted pod of every workload kind injection handles."""
    labels = {"app": "shop"}
    selector = {"matchLabels": labels}
    job_template = dict(template(labels))
    job_template["spec"] = dict(job_template["spec"], restartPolicy="Never")
    return [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "shop-0", "namespace": "shop", "labels": labels},
         "spec": {"containers": [APP]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop"},
         "spec": {"selector": selector, "template": template(labels)}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "shop-db"},
         "spec": {"selector": selector, "serviceName": "shop-db", "template": template(labels)}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "shop-agent"},
         "spec": {"selector": selector, "template": template(labels)}},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "shop-rs"},
         "spec": {"selector": selector, "template": template(labels)}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "shop-migrate"},
         "spec": {"template": job_template}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "shop-report"},
         "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": job_template}}}},
    ]


def inject(path, *flags):
    result = subprocess.run([MESHCTL, "inject", "-f", path, "-o", "json", *flags],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"meshctl inject {' '.join(flags)}: {result.stderr}")
    out = json.loads(result.stdout)
    return out["items"] if out.get("kind") == "List" else [out]


def all_violations(objects, level):
    found = {}
    for obj in objects:
        found.update(violations(obj, level))
    return found


class CheckerTest(unittest.TestCase):
    """The checks themselves catch what the standard names."""

    def test_each_rule_catches_its_case(self):
        ok = {"containers": [APP]}
        self.assertEqual(restricted({}, ok), [])
        bad = {
            "hostNetwork": True,
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "image": "x",
                            "ports": [{"containerPort": 80, "hostPort": 80}],
                            "securityContext": {"privileged": True,
                                                "capabilities": {"add": ["NET_ADMIN"]},
                                                "seccompProfile": {"type": "Unconfined"}}}]}
        found = baseline({}, bad)
        for expected in ("spec.hostNetwork: true", "volumes[h]: hostPath",
                         "containers[c]: privileged", "containers[c]: hostPort 80",
                         "containers[c]: adds capabilities ['NET_ADMIN']",
                         "containers[c].securityContext.seccompProfile: Unconfined"):
            self.assertIn(expected, found)
        plain = {"containers": [{"name": "c", "image": "x"}]}
        self.assertEqual(baseline({}, plain), [])
        self.assertEqual(sorted(restricted({}, plain)), sorted([
            "containers[c]: allowPrivilegeEscalation is not false",
            "containers[c]: runAsNonRoot is not true",
            "containers[c]: seccompProfile is not RuntimeDefault or Localhost",
            "containers[c]: capabilities do not drop ALL"]))
        # Pod-level settings count for every container; a container's own wins.
        pod_level = {"securityContext": {"runAsNonRoot": True,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "c", "image": "x", "securityContext": {
                         "allowPrivilegeEscalation": False, "runAsNonRoot": False,
                         "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}
        self.assertEqual(restricted({}, pod_level), ["containers[c]: runAsNonRoot is not true"])


class InjectedPodsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.path = os.path.join(cls.tmp, "workloads.yaml")
        with open(cls.path, "w") as f:
            yaml.safe_dump_all(workloads(), f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_the_inputs_meet_restricted(self):
        found = all_violations(workloads(), "restricted")
        self.assertEqual(len(found), 7)
        self.assertEqual({k: v for k, v in found.items() if v}, {})

    def test_with_meshlet_init_every_pod_fails_baseline(self):
        found = all_violations(inject(self.path), "baseline")
        self.assertEqual(len(found), 7)
        for name, problems in found.items():
            self.assertEqual(problems, [
                "initContainers[meshlet-init]: adds capabilities ['NET_ADMIN', 'NET_RAW']"], name)

    def test_cni_mode_meets_restricted_for_every_kind_and_sidecar_mode(self):
        for mode in ("native", "classic"):
            injected = inject(self.path, "--cni", "--mode", mode)
            found = all_violations(injected, "restricted")
            self.assertEqual(len(found), 7)
            self.assertEqual({k: v for k, v in found.items() if v}, {}, mode)
            for obj in injected:  # the proxy is really there
                text = json.dumps(obj)
                self.assertIn('"name": "meshlet-proxy"', text)
                self.assertNotIn("meshlet-init", text.replace('\\"', ""))

    def test_a_gateways_proxy_meets_restricted(self):
        """The Deployment `meshctl inject --gateway-class` writes for a Gateway (what the control
        plane deploys in a cluster), for Kubernetes and for podman."""
        path = os.path.join(self.tmp, "gateway.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all([
                {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                 "metadata": {"name": "edge", "namespace": "shop"},
                 "spec": {"gatewayClassName": "meshlet", "listeners": [
                     {"name": "web", "port": 80, "protocol": "HTTP"},
                     {"name": "tls", "port": 443, "protocol": "HTTPS"}]}},
                {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                 "metadata": {"name": "other", "namespace": "shop"},
                 "spec": {"gatewayClassName": "theirs", "listeners": [
                     {"name": "web", "port": 80, "protocol": "HTTP"}]}}], f)
        for flags in ((), ("--podman", "--mode", "classic", "--identity", "join-token")):
            out = inject(path, "--gateway-class", "meshlet", *flags)
            self.assertEqual([(o["kind"], o["metadata"]["name"]) for o in out], [
                ("Gateway", "edge"), ("ServiceAccount", "edge-meshlet"),
                ("Deployment", "edge-meshlet"), ("Service", "edge-meshlet"),
                ("Gateway", "other")], flags)
            found = all_violations(out, "restricted")
            self.assertEqual(found, {"Deployment edge-meshlet": []}, flags)
            proxy = out[2]["spec"]["template"]["spec"]["containers"][0]
            self.assertIn("--gateway=shop/edge", proxy["args"])
            self.assertEqual([p["port"] for p in out[3]["spec"]["ports"]], [80, 443])
        # The same Gateways in a List (what kubectl get -o yaml writes): the proxy's objects at
        # the List's end.
        with open(path) as f:
            items = [o for o in yaml.safe_load_all(f) if o]
        with open(path, "w") as f:
            yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
        out = inject(path, "--gateway-class", "meshlet")
        self.assertEqual([(o["kind"], o["metadata"]["name"]) for o in out], [
            ("Gateway", "edge"), ("Gateway", "other"), ("ServiceAccount", "edge-meshlet"),
            ("Deployment", "edge-meshlet"), ("Service", "edge-meshlet")])

    def test_cni_mode_adds_no_violation_to_the_sample_apps(self):
        before, after = {}, {}
        for name in sorted(os.listdir(PODS)):
            if not name.endswith(".yaml"):
                continue
            path = os.path.join(PODS, name)
            with open(path) as f:
                for obj in yaml.safe_load_all(f):
                    if obj:
                        before.update(violations(obj, "restricted"))
            after.update(all_violations(inject(path, "--cni"), "restricted"))
        self.assertTrue(after)
        for name, problems in after.items():
            self.assertLessEqual(set(problems), set(before[name]), name)


def main():
    global MESHCTL, PODS
    if len(sys.argv) != 3:
        sys.exit("usage: pod_security_test.py MESHCTL EXAMPLES_PODS_DIR")
    MESHCTL, PODS = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    result = unittest.main(argv=[sys.argv[0]], exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
