"""k8s/crds/crds.yaml is what crdgen writes from the kinds' descriptors, and every schema in it is
structural (what the API server requires of a CRD): each node says its type, unless it is
int-or-string or keeps unknown fields, and no node has both properties and additionalProperties.

    crds_test.py CRDGEN CRDS_YAML
"""
import subprocess
import sys
import unittest

import yaml

CRDGEN = CRDS = None


def walk(schema, path, problems):
    if not isinstance(schema, dict):
        problems.append(f"{path}: not a map")
        return
    if "type" not in schema and not schema.get("x-kubernetes-int-or-string") and not schema.get(
            "x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: properties and additionalProperties")
    for name, child in schema.get("properties", {}).items():
        walk(child, f"{path}.{name}", problems)
    if "items" in schema:
        walk(schema["items"], f"{path}[]", problems)
    if isinstance(schema.get("additionalProperties"), dict):
        walk(schema["additionalProperties"], f"{path}{{}}", problems)


class CrdsTest(unittest.TestCase):
    def test_committed_crds_are_generated(self):
        generated = subprocess.run([CRDGEN], check=True, capture_output=True, text=True).stdout
        with open(CRDS) as f:
            committed = f.read()
        self.assertEqual(committed, generated,
                         "k8s/crds/crds.yaml is stale: bazel run //control-plane/policy:crdgen "
                         "> k8s/crds/crds.yaml")

    def test_kinds_names_scopes_and_schemas(self):
        with open(CRDS) as f:
            crds = {d["spec"]["names"]["kind"]: d for d in yaml.safe_load_all(f)}
        self.assertEqual(sorted(crds), ["AuthorizationPolicy", "ExternalService", "HTTPRoute",
                                        "MeshConfig", "RequestAuthentication",
                                        "Service", "TrafficPolicy"])
        route = crds["HTTPRoute"]
        self.assertEqual(route["metadata"]["name"], "httproutes.meshlet.io")
        self.assertEqual(route["spec"]["names"]["shortNames"], ["hr"])
        self.assertEqual(route["spec"]["scope"], "Namespaced")
        self.assertEqual(crds["MeshConfig"]["spec"]["scope"], "Cluster")
        # Status is a subresource of the kinds that have one.
        service_version = crds["Service"]["spec"]["versions"][0]
        self.assertEqual(service_version["subresources"], {"status": {}})
        self.assertNotIn("subresources", route["spec"]["versions"][0])
        spec = route["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        rule = spec["properties"]["rules"]["items"]["properties"]
        # JSON spellings, durations as strings, wrappers as their scalar, maps as
        # additionalProperties.
        self.assertEqual(rule["timeout"], {"type": "string"})
        policy = crds["TrafficPolicy"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        retries = policy["properties"]["spec"]["properties"]["retries"]["properties"]
        self.assertIn("retryOn", retries)
        self.assertEqual(retries["attempts"],
                         {"type": "integer", "minimum": 0, "maximum": 4294967295})
        selector = crds["Service"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
            "properties"]["spec"]["properties"]["selector"]
        self.assertEqual(selector, {"type": "object", "additionalProperties": {"type": "string"}})
        for kind, crd in crds.items():
            for version in crd["spec"]["versions"]:
                problems = []
                walk(version["schema"]["openAPIV3Schema"], kind, problems)
                self.assertEqual(problems, [])


if __name__ == "__main__":
    CRDGEN, CRDS = sys.argv[1], sys.argv[2]
    unittest.main(argv=sys.argv[:1])
