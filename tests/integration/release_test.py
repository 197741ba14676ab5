"""One release version everywhere: VERSION, every binary's report of it, the image tags the
examples, the Kubernetes manifests and the end-to-end tests' manifests name, and a CHANGELOG
section for it.

Usage: release_test.py VERSION CHANGELOG SIDECAR CONTROL_PLANE MESHCTL PODS_DIR K8S_DIR E2E_DIR
"""

import glob
import os
import re
import subprocess
import sys
import unittest

VERSION_FILE = CHANGELOG = SIDECAR = CONTROL_PLANE = MESHCTL = PODS = K8S = E2E = None  # argv
RELEASE_PATTERN = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$")
# An image of the project with its tag: "localhost/meshlet-proxy:0.2.0", "meshlet-testapp:1.0".
IMAGE = re.compile(r"\bmeshlet-(proxy|control-plane|testapp):([0-9A-Za-z._-]+)")


def release():
    with open(VERSION_FILE) as f:
        return f.read().strip()


class ReleaseTest(unittest.TestCase):
    def test_version_file_names_one_release(self):
        with open(VERSION_FILE) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1, "VERSION holds one line")
        self.assertRegex(lines[0], RELEASE_PATTERN)

    def test_every_binary_reports_it(self):
        for argv, prefix in (([SIDECAR, "--version"], "meshlet sidecar "),
                             ([CONTROL_PLANE, "--version"], "meshlet control-plane "),
                             ([MESHCTL, "version", "--client"], "meshctl ")):
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            self.assertEqual(out, prefix + release() + "\n", argv)

    def test_image_tags_in_examples_and_manifests_are_the_release(self):
        files = sorted(glob.glob(os.path.join(PODS, "*.yaml")) +
                       glob.glob(os.path.join(K8S, "**", "*.yaml"), recursive=True) +
                       glob.glob(os.path.join(E2E, "**", "*.yaml"), recursive=True))
        self.assertTrue(any(f.startswith(E2E) for f in files), "no manifest of %s" % E2E)
        self.assertTrue(files)
        seen = 0
        for path in files:
            with open(path) as f:
                text = f.read()
            for m in IMAGE.finditer(text):
                seen += 1
                self.assertEqual(m.group(2), release(), "%s: %s" % (path, m.group(0)))
            for m in re.finditer(r"^\s*newTag:\s*(\S+)", text, re.M):
                seen += 1
                self.assertEqual(m.group(1), release(), "%s: newTag %s" % (path, m.group(1)))
        self.assertGreater(seen, 0, "no image tag found to compare")

    def test_changelog_has_a_section_for_it(self):
        with open(CHANGELOG) as f:
            headings = re.findall(r"^## (\S+)", f.read(), re.M)
        self.assertEqual(headings[0], release(), "the newest section is the release being built")
        for h in headings:
            self.assertRegex(h, RELEASE_PATTERN)


if __name__ == "__main__":
    (VERSION_FILE, CHANGELOG, SIDECAR, CONTROL_PLANE, MESHCTL, PODS, K8S, E2E) = (
        os.path.abspath(a) for a in sys.argv[1:9])
    unittest.main(argv=[sys.argv[0]] + sys.argv[9:], verbosity=2)
