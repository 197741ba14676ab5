"""Gateway API documents read two ways must agree: the official schemas (validate.mjs on
@kubernetes-models/gateway-api, unknown fields refused) and meshlet's parser and validation
(policycheck, what meshctl apply runs before it sends anything).

Usage: gateway_schema_test.py VALIDATE_MJS POLICYCHECK VALID_YAML INVALID_YAML [REPO FILE...]

- every document of VALID_YAML passes both;
- every document of INVALID_YAML fails both, each naming the field its `# field: NAME` comment
  says is wrong;
- every Gateway API document in the repository's YAML files and the YAML code blocks of its
  Markdown files (REPO FILE...) passes both.
Without node or tests/k8s/node_modules it prints SKIP, unless MESHLET_REQUIRE_K8S_SCHEMA=1.
"""

import os
import re
import subprocess
import sys
import tempfile
import unittest

import yaml

import k8s_schema

CHECKER = POLICYCHECK = VALID = INVALID = None
REPO_FILES = []
GATEWAY = "gateway.networking.k8s.io/"


def documents(text):
    """The YAML documents of `text` as (source text, parsed) pairs, empty ones left out."""
    out = []
    for part in re.split(r"^---\s*$", text, flags=re.M):
        parsed = yaml.safe_load(part)
        if parsed:
            out.append((part, parsed))
    return out


def markdown_yaml_blocks(text):
    return re.findall(r"^```ya?ml\n(.*?)^```", text, flags=re.M | re.S)


def split_report(output):
    """validate.mjs's or policycheck's output as one (ok, text) per object, in order."""
    reports = []
    for line in output.splitlines():
        if line.startswith("ok   ") or line.startswith("FAIL "):
            reports.append([line.startswith("ok"), line + "\n"])
        elif reports:
            reports[-1][1] += line + "\n"
    return [tuple(r) for r in reports]


def schema_check(objects):
    """(accepted, report) per object, from one validate.mjs run."""
    _, output = CHECKER.validate(objects)
    reports = split_report(output)
    assert len(reports) == len(objects), output
    return reports


def meshlet_check(texts):
    """(accepted, report) per document text, from one policycheck run."""
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i, text in enumerate(texts):
            files.append(os.path.join(d, f"{i:03d}.yaml"))
            with open(files[-1], "w") as f:
                f.write(text)
        r = subprocess.run([POLICYCHECK] + files, capture_output=True, text=True, timeout=60)
    if r.returncode not in (0, 1):
        raise AssertionError(f"policycheck exited {r.returncode}: {r.stderr}")
    reports = split_report(r.stdout)
    assert len(reports) == len(texts), r.stdout
    return reports


class GatewaySchemaTest(unittest.TestCase):
    def setUp(self):
        reason = CHECKER.skip_reason()
        if reason is None and not os.path.isdir(os.path.join(
                os.path.dirname(CHECKER.script), "node_modules", "@kubernetes-models",
                "gateway-api")):
            reason = "needs @kubernetes-models/gateway-api (npm ci in tests/k8s)"
            if os.environ.get("MESHLET_REQUIRE_K8S_SCHEMA") == "1":
                raise AssertionError(reason)
        if reason:
            self.skipTest(reason)

    def both_accept(self, sources, texts, objects):
        for source, schema, meshlet in zip(sources, schema_check(objects), meshlet_check(texts)):
            with self.subTest(source=source):
                self.assertTrue(schema[0], f"{source}: the official schema refuses it:\n{schema[1]}")
                self.assertTrue(meshlet[0], f"{source}: meshlet refuses it:\n{meshlet[1]}")

    def test_valid_documents_pass_both(self):
        with open(VALID) as f:
            docs = documents(f.read())
        self.assertGreaterEqual(len(docs), 3)
        self.both_accept([f"{VALID} document {i + 1}" for i in range(len(docs))],
                         [text for text, _ in docs], [obj for _, obj in docs])

    def test_invalid_documents_fail_both_at_their_field(self):
        with open(INVALID) as f:
            docs = documents(f.read())
        self.assertGreaterEqual(len(docs), 19)
        schema = schema_check([obj for _, obj in docs])
        meshlet = meshlet_check([text for text, _ in docs])
        for (text, obj), (schema_ok, schema_report), (meshlet_ok, meshlet_report) in zip(
                docs, schema, meshlet):
            field = re.search(r"^# field: (\S+)$", text, flags=re.M).group(1)
            with self.subTest(name=obj["metadata"]["name"]):
                self.assertFalse(schema_ok, f"the official schema accepts it:\n{text}")
                self.assertIn(field, schema_report.split("\n", 1)[1])
                self.assertFalse(meshlet_ok, f"meshlet accepts it:\n{text}")
                self.assertIn(field, meshlet_report.split("\n", 1)[1])

    def test_gateway_documents_in_the_repository_pass_both(self):
        sources, texts, objects = [], [], []
        for path in REPO_FILES:
            with open(path) as f:
                text = f.read()
            blocks = markdown_yaml_blocks(text) if path.endswith(".md") else [text]
            for block in blocks:
                for part, obj in documents(block):
                    if (isinstance(obj, dict)
                            and str(obj.get("apiVersion", "")).startswith(GATEWAY)
                            and obj.get("kind") in ("HTTPRoute", "GRPCRoute", "ReferenceGrant")):
                        sources.append(f"{path} ({obj['kind']} {obj.get('metadata', {}).get('name')})")
                        texts.append(part)
                        objects.append(obj)
        # docs/control-plane.md shows Gateway API routes: the scan finds them.
        self.assertGreater(len(objects), 0)
        self.both_accept(sources, texts, objects)


if __name__ == "__main__":
    CHECKER = k8s_schema.Checker(sys.argv[1])
    POLICYCHECK, VALID, INVALID = sys.argv[2:5]
    REPO_FILES = sys.argv[5:]
    unittest.main(argv=sys.argv[:1], verbosity=2)
