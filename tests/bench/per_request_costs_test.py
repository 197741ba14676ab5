"""per_request_costs.py writes nothing where it is started.

Usage: per_request_costs_test.py SIDECAR

Runs `per_request_costs.py --tool strace` (a few hundred requests through meshlet) from an empty
directory, with TMPDIR pointing at another empty directory, and checks that the starting
directory stays empty, that the strace summary lands in the temporary directory the last line
names (kept: it is the result), and that the proxies' working files are gone. With --out the
summary goes there instead. Prints a SKIP line when nginx (the upstream), h2load or strace is not
installed, or when strace may not trace here.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "per_request_costs.py")
SIDECAR = None  # from argv
sys.path.insert(0, HERE)
import proxy_compare as pc  # noqa: E402


class PerRequestCostsOutputTest(unittest.TestCase):
    def setUp(self):
        base = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.addCleanup(shutil.rmtree, base, ignore_errors=True)
        self.cwd = os.path.join(base, "cwd")
        self.tmp = os.path.join(base, "tmp")
        os.makedirs(self.cwd)
        os.makedirs(self.tmp)

    def run_script(self, *args):
        env = dict(os.environ, TMPDIR=self.tmp)
        r = subprocess.run([sys.executable, SCRIPT, "--sidecar", SIDECAR, "--proxy", "meshlet",
                            "--proto", "h1", "--tool", "strace", "-n", "300", *args],
                           cwd=self.cwd, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"meshlet h1: system calls/request \d+\.\d+")
        self.assertEqual(os.listdir(self.cwd), [], "written into the current directory")
        m = re.search(r"^strace summary in (\S+)$", r.stdout, re.MULTILINE)
        self.assertIsNotNone(m, r.stdout)
        return m.group(1)

    def test_results_go_to_a_temporary_directory_and_nothing_stays_behind(self):
        trace = self.run_script()
        # The result is kept, in a directory of its own under TMPDIR; the working directory
        # (configurations, logs) is gone.
        out = os.path.dirname(trace)
        self.assertEqual(os.path.dirname(out), self.tmp)
        self.assertEqual(os.listdir(self.tmp), [os.path.basename(out)])
        self.assertEqual(os.listdir(out), ["strace.meshlet.h1.txt"])
        self.assertGreater(os.path.getsize(trace), 0)

    def test_out_names_where_results_go(self):
        out = os.path.join(self.tmp, "results")
        trace = self.run_script("--out", out)
        self.assertEqual(trace, os.path.join(out, "strace.meshlet.h1.txt"))
        self.assertTrue(os.path.isfile(trace))
        self.assertEqual(os.listdir(self.tmp), ["results"])


def strace_works():
    """strace may be installed but not allowed to trace (no ptrace in some sandboxes)."""
    r = subprocess.run(["strace", "-f", "-o", os.devnull, "true"], capture_output=True)
    return r.returncode == 0


def main():
    global SIDECAR
    SIDECAR = os.path.abspath(sys.argv.pop(1))
    for tool in ("nginx", "h2load", "strace"):
        if pc.find_tool(tool) is None:
            print(f"SKIP per_request_costs_test: {tool} not installed")
            return 0
    if not strace_works():
        print("SKIP per_request_costs_test: strace cannot trace here")
        return 0
    program = unittest.main(exit=False, verbosity=2)
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
