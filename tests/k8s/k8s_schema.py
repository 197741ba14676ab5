"""Runs validate.mjs (beside this file) on Kubernetes objects, for the Python tests.

    checker = k8s_schema.Checker(path_to_validate_mjs)
    if checker.skip_reason(): ...                # node or node_modules missing
    ok, report = checker.validate([obj, ...])    # dicts; report is validate.mjs's output

Without node, or without node_modules (./dev test runs npm ci in tests/k8s), skip_reason() says
so; MESHLET_REQUIRE_K8S_SCHEMA=1 (./dev test sets it) turns that into an AssertionError.
"""

import json
import os
import shutil
import subprocess


class Checker:
    def __init__(self, validate_mjs):
        # The source tree's copy: node_modules is found next to it.
        self.script = os.path.realpath(validate_mjs)
        self.node = shutil.which("node")

    def skip_reason(self):
        missing = []
        if self.node is None:
            missing.append("node")
        modules = os.path.join(os.path.dirname(self.script), "node_modules", "kubernetes-models")
        if not os.path.isdir(modules):
            missing.append("tests/k8s/node_modules (npm ci in tests/k8s)")
        if not missing:
            return None
        reason = "needs " + " and ".join(missing)
        if os.environ.get("MESHLET_REQUIRE_K8S_SCHEMA") == "1":
            raise AssertionError(reason + " (MESHLET_REQUIRE_K8S_SCHEMA=1)")
        return reason

    def validate(self, objects):
        """(all valid, validate.mjs's report) for a list of objects (dicts)."""
        text = "\n---\n".join(json.dumps(o) for o in objects)
        r = subprocess.run([self.node, self.script, "-"], input=text, capture_output=True,
                           text=True, timeout=120)
        if r.returncode not in (0, 1):
            raise AssertionError(f"validate.mjs exited {r.returncode}: {r.stderr}")
        return r.returncode == 0, r.stdout
