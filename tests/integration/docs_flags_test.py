"""What the docs say about command-line flags is what the tree has:

- the flags docs/operations.md says the loopback demo starts the control plane with are those
  examples/demo/demo.py passes (the page once said `--xds-plaintext` after the demo moved to TLS);
- every flag a page quotes (a `--name` inside backticks) is one that meshlet's binaries
  (control-plane, sidecar and sidecar init, meshctl and each of its commands, meshlet-cni-agent)
  or ./dev list, or one of the few
  other tools' flags named below. The ADRs keep the flags of their time, and performance.md and
  building.md quote the benchmark tools' and Bazel's own: those are not read.

Usage: docs_flags_test.py DEMO_PY DEV CONTROL_PLANE SIDECAR MESHCTL CNI_AGENT PAGE.md...
"""

import ast
import os
import re
import subprocess
import sys
import unittest

DEMO = DEV = CONTROL_PLANE = SIDECAR = MESHCTL = CNI_AGENT = None  # argv
PAGES = []

# Flags of other programs the pages show, by the program.
OTHER_TOOLS = {
    "--client-cert-auth": "etcd",
    "--peer-client-cert-auth": "etcd",
    "--trusted-ca-file": "etcd",
    "--dport": "iptables",
    "--line-numbers": "iptables -L",
    "--format": "podman image inspect",
    "--validate": "kubectl apply",
    "--trace": "testapp get (tests/e2e/testapp)",
    "--noflush": "iptables-restore",
    "--rps": "h2load",
    "--rps-rounds": "tests/bench/resilience_cost.py",
    "--test-output": "bazel test (--test_output)",
    "--flag": "architecture.md's example of the syntax",
}
# Pages not read (above).
NOT_READ = re.compile(r"(/adr/|/performance\.md$|/building\.md$)")

# A flag as written; "--xds-*" (a family) ends with "-" and is not one.
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
CODE_SPAN = re.compile(r"`([^`\n]+)`")


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    return p.stdout + p.stderr


def flags_in(text):
    return set(FLAG.findall(text))


def meshctl_flags():
    top = run([MESHCTL, "help"])
    commands = re.findall(r"^  ([a-z][a-z-]*) ", top.split("Commands:", 1)[1].split("\n\n")[0],
                          re.M)
    assert len(commands) > 10, top
    found = flags_in(top)
    for command in commands:
        found |= flags_in(run([MESHCTL, "help", command]))
    return found


def demo_control_plane_argv():
    """The string arguments demo.py's spawn(..., "control-plane", [...]) call passes, each as
    written ("--flag", "--flag=value" or the format string before %)."""
    with open(DEMO) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "spawn"
                and len(node.args) == 3 and isinstance(node.args[1], ast.Constant)
                and node.args[1].value == "control-plane"):
            out = []
            for element in node.args[2].elts:
                if isinstance(element, ast.BinOp):  # "--x=127.0.0.1:%d" % port
                    element = element.left
                if isinstance(element, ast.Constant) and isinstance(element.value, str):
                    out.append(element.value)
            return out
    raise AssertionError(f"{DEMO}: no spawn(state, \"control-plane\", [...]) call")


def loopback_step_1(page):
    """docs/operations.md's "On loopback" section, its step 1 (the control plane)."""
    with open(page) as f:
        text = f.read()
    section = text.split("### On loopback", 1)[1]
    return section.split("\n1. ", 1)[1].split("\n2. ", 1)[0]


class DemoFlagsTest(unittest.TestCase):
    def test_operations_md_names_the_flags_demo_py_starts_the_control_plane_with(self):
        page = next(p for p in PAGES if p.endswith("docs/operations.md"))
        quoted = [word for span in CODE_SPAN.findall(loopback_step_1(page))
                  for word in span.split() if word.startswith("--")]
        argv = [a for a in demo_control_plane_argv() if a.startswith("--")]
        self.assertEqual({q.split("=", 1)[0] for q in quoted},
                         {a.split("=", 1)[0] for a in argv},
                         "operations.md, On loopback, step 1 against demo.py's control plane")
        # A value the page gives is the one the demo passes ("--zipkin-address=": none).
        for q in quoted:
            if "=" in q:
                self.assertIn(q, [a if "%" not in a else a.split("%")[0] for a in argv], q)
        cp_help = flags_in(run([CONTROL_PLANE, "--help"]))
        for a in argv:
            self.assertIn(a.split("=", 1)[0], cp_help, "demo.py passes a flag control-plane "
                          "does not list")


class PageFlagsTest(unittest.TestCase):
    def test_every_quoted_flag_exists(self):
        known = (flags_in(run([CONTROL_PLANE, "--help"])) | flags_in(run([SIDECAR, "--help"]))
                 | flags_in(run([SIDECAR, "init", "--help"])) | meshctl_flags()
                 | flags_in(run([CNI_AGENT, "--help"])))
        with open(DEV) as f:
            known |= flags_in(f.read())
        self.assertIn("--xds-plaintext", known)  # the check reads the binaries' help
        unknown = []
        for page in (p for p in PAGES if not NOT_READ.search(p)):
            with open(page) as f:
                for number, line in enumerate(f, 1):
                    for span in CODE_SPAN.findall(line):
                        for flag in flags_in(span):
                            # The flag parsers take --admin_address for --admin-address.
                            flag = flag.replace("_", "-")
                            if flag.endswith("-") or flag in OTHER_TOOLS:
                                continue
                            if flag not in known:
                                unknown.append(f"{os.path.relpath(page)}:{number}: {flag}")
        self.assertEqual(unknown, [], "flags no binary of the tree lists")


if __name__ == "__main__":
    DEMO, DEV, CONTROL_PLANE, SIDECAR, MESHCTL, CNI_AGENT = sys.argv[1:7]
    PAGES = [p for p in sys.argv[7:] if p.endswith(".md")]
    del sys.argv[1:]
    unittest.main()
