"""The strict schema check of tests/k8s, and what `meshctl inject` writes, checked with it.

Usage: schema_test.py VALIDATE_MJS MESHCTL [unittest args]

validate.mjs must refuse what the API server refuses (else the other checks prove nothing): an
unknown field at any depth, a bad enum value, a malformed quantity, a string port, an init
container restartPolicy other than Always; and accept a native sidecar. Then every object
`meshctl inject` writes for examples/pods validates: native sidecars (default), classic, both in
CNI mode (--cni), and the podman form with join tokens.
"""

import copy
import json
import os
import subprocess
import sys
import unittest

import k8s_schema

CHECKER = MESHCTL = None
PODS = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "examples", "pods")

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web", "labels": {"app": "web"},
                    "annotations": {"sidecar.meshlet.io/status": "{}"}},
       "spec": {"initContainers": [{"name": "proxy", "image": "p", "restartPolicy": "Always"}],
                "containers": [{"name": "web", "image": "web:1",
                                "ports": [{"containerPort": 8080}],
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}


class SchemaTest(unittest.TestCase):
    def setUp(self):
        reason = CHECKER.skip_reason()
        if reason:
            self.skipTest(reason)

    def assertValid(self, objects):
        ok, report = CHECKER.validate(objects)
        self.assertTrue(ok, report)
        return report

    def test_the_validator_refuses_what_the_api_server_refuses(self):
        self.assertIn("ok   Pod web", self.assertValid([POD]))
        bad = []
        for path, value in [(("spec", "containers", 0, "imagePullPolicyy"), "Always"),
                            (("metadata", "lables"), {}),
                            (("spec", "containers", 0, "imagePullPolicy"), "Sometimes"),
                            (("spec", "containers", 0, "resources", "requests", "memory"), "1 GB"),
                            (("spec", "containers", 0, "ports", 0, "containerPort"), "http"),
                            (("spec", "initContainers", 0, "restartPolicy"), "OnFailure")]:
            obj = copy.deepcopy(POD)
            node = obj
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            ok, report = CHECKER.validate([obj])
            self.assertFalse(ok, f"{path}={value!r} passed:\n{report}")
            self.assertIn("/" + "/".join(str(p) for p in path), report)
            bad.append(report)

    def inject(self, *flags):
        r = subprocess.run([MESHCTL, "inject", "-f", PODS, "-o", "json", *flags],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        return doc["items"] if doc.get("kind") == "List" else [doc]

    def test_meshctl_inject_output_validates(self):
        for flags in ([], ["--mode", "classic"], ["--cni"], ["--cni", "--mode", "classic"],
                      ["--mode", "classic", "--podman", "--identity", "join-token"]):
            with self.subTest(flags=flags):
                objects = self.inject(*flags)
                self.assertGreaterEqual(len(objects), 10)
                report = self.assertValid(objects)
                self.assertIn("ok   Deployment reviews-v2", report)


if __name__ == "__main__":
    CHECKER = k8s_schema.Checker(sys.argv[1])
    MESHCTL = os.path.abspath(sys.argv[2])
    del sys.argv[1:3]
    unittest.main(verbosity=2)
