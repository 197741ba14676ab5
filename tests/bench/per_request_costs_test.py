"""per_request_costs.py writes nothing where it is started.

Usage: per_request_costs_test.py SIDECAR LOADGEN

Runs `per_request_costs.py --tool strace` (a few hundred requests through meshlet) from an empty
directory, with TMPDIR pointing at another empty directory, and checks that the starting
directory stays empty, that the strace summary lands in the temporary directory the last line
names (kept: it is the result), and that the proxies' working files are gone. With --out the
summary goes there instead. With --hop mtls --connection-per-request: both sidecars measured, each
request over a new mTLS connection between them. With --proxy haproxy --hop mtls --tool wakeups
and the load generator sending one request at a time: HAProxy's two sides measured, each at
least one wake-up per request (a request and its answer each wake a side that had nothing else
to do). Prints a SKIP line when nginx (the upstream), h2load, strace or openssl is not installed,
or when strace may not trace here; the HAProxy case is skipped without haproxy.
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
LOADGEN = None
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

    def run_script(self, *args, proxy="meshlet", tool="strace"):
        """Runs the script; returns its output."""
        env = dict(os.environ, TMPDIR=self.tmp)
        r = subprocess.run([sys.executable, SCRIPT, "--sidecar", SIDECAR, "--proxy", proxy,
                            "--proto", "h1", "--tool", tool, "-n", "300", *args],
                           cwd=self.cwd, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(os.listdir(self.cwd), [], "written into the current directory")
        return r.stdout

    def run_one_proxy(self, *args):
        """Runs the script on one sidecar; returns the strace summary's path."""
        out = self.run_script(*args)
        self.assertRegex(out, r"meshlet h1: system calls/request \d+\.\d+")
        m = re.search(r"^strace summary in (\S+)$", out, re.MULTILINE)
        self.assertIsNotNone(m, out)
        return m.group(1)

    def test_results_go_to_a_temporary_directory_and_nothing_stays_behind(self):
        trace = self.run_one_proxy()
        # The result is kept, in a directory of its own under TMPDIR; the working directory
        # (configurations, logs) is gone.
        out = os.path.dirname(trace)
        self.assertEqual(os.path.dirname(out), self.tmp)
        self.assertEqual(os.listdir(self.tmp), [os.path.basename(out)])
        self.assertEqual(os.listdir(out), ["strace.meshlet.h1.txt"])
        self.assertGreater(os.path.getsize(trace), 0)

    def test_out_names_where_results_go(self):
        out = os.path.join(self.tmp, "results")
        trace = self.run_one_proxy("--out", out)
        self.assertEqual(trace, os.path.join(out, "strace.meshlet.h1.txt"))
        self.assertTrue(os.path.isfile(trace))
        self.assertEqual(os.listdir(self.tmp), ["results"])

    def test_a_mesh_hop_measures_both_sidecars_and_opens_a_connection_per_request(self):
        out = os.path.join(self.tmp, "results")
        text = self.run_script("--hop", "mtls", "--connection-per-request", "--out", out)
        # Each sidecar's figure, then their sum.
        figures = re.findall(r"^  (outbound|inbound|sum): (\d+\.\d+)", text, re.MULTILINE)
        self.assertEqual([name for name, _ in figures], ["outbound", "inbound", "sum"], text)
        self.assertAlmostEqual(float(figures[0][1]) + float(figures[1][1]), float(figures[2][1]),
                               delta=0.02)
        # Every request went over a connection of its own between the sidecars: the handshake
        # is part of what was measured.
        m = re.search(r"per request: (\d+\.\d+) connections from A to B", text)
        self.assertIsNotNone(m, text)
        self.assertAlmostEqual(float(m.group(1)), 1.0, delta=0.01)
        self.assertEqual(sorted(os.listdir(out)), ["strace.inbound.h1.mtls.per-request.txt",
                                                   "strace.outbound.h1.mtls.per-request.txt"])

    def test_haproxy_on_the_two_hops_one_request_at_a_time(self):
        if pc.find_tool("haproxy") is None:
            self.skipTest("haproxy not installed")
        text = self.run_script("--hop", "mtls", "--loadgen", LOADGEN, "--connections", "1",
                               "--duration", "1", proxy="haproxy", tool="wakeups")
        self.assertIn("haproxy h1 via mtls (loadgen, closed loop), 1 connection: wake-ups/request",
                      text)
        figures = re.findall(r"^  (outbound|inbound): (\d+\.\d+) \(haproxy [^)]*\); CPU "
                             r"(\d+\.\d+) us", text, re.MULTILINE)
        self.assertEqual([name for name, _, _ in figures], ["outbound", "inbound"], text)
        for name, wakeups, cpu in figures:
            # One request in flight: each side sleeps between the request and its answer.
            self.assertGreaterEqual(float(wakeups), 1.0, f"{name}: {text}")
            self.assertGreater(float(cpu), 0.0, f"{name}: {text}")
        # The wake-up tool writes no files: nothing but the temporary directory's absence.
        self.assertEqual(os.listdir(self.tmp), [])

    def test_perf_record_pinned_names_each_sidecars_cpu_by_shared_object(self):
        if not perf_record_works():
            self.skipTest("perf cannot record cpu-clock here")
        out = os.path.join(self.tmp, "profiles")
        text = self.run_script("--hop", "mtls", "--loadgen", LOADGEN, "--pin", "--duration", "1",
                               "--out", out, tool="perf-record")
        self.assertIn("CPU per request (perf record -e cpu-clock)", text)
        self.assertRegex(text, r"\d+ requests in 1 s: \d+/s")
        figures = re.findall(r"^  (outbound|inbound): (\d+\.\d+) us CPU: (.*)$", text, re.MULTILINE)
        self.assertEqual([name for name, _, _ in figures], ["outbound", "inbound"], text)
        for name, cpu, by_dso in figures:
            self.assertGreater(float(cpu), 0.0, f"{name}: {text}")
            # The sidecar's own code and the kernel both show up, each with a time per request.
            self.assertRegex(by_dso, r"sidecar \d+\.\d+", f"{name}: {text}")
            self.assertRegex(by_dso, r"\[kernel\.kallsyms\] \d+\.\d+", f"{name}: {text}")
        self.assertEqual(sorted(os.listdir(out)), ["perf.inbound.h1.mtls.data",
                                                   "perf.outbound.h1.mtls.data"])


def perf_record_works():
    """perf may be missing, or not allowed to sample (perf_event_paranoid, no perf events)."""
    if shutil.which("perf") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["perf", "record", "-q", "--no-buildid-cache", "-e", "cpu-clock", "-o",
                            os.path.join(tmp, "perf.data"), "true"], capture_output=True)
    return r.returncode == 0


def strace_works():
    """strace may be installed but not allowed to trace (no ptrace in some sandboxes)."""
    r = subprocess.run(["strace", "-f", "-o", os.devnull, "true"], capture_output=True)
    return r.returncode == 0


def main():
    global SIDECAR, LOADGEN
    SIDECAR = os.path.abspath(sys.argv.pop(1))
    LOADGEN = os.path.abspath(sys.argv.pop(1))
    for tool in ("nginx", "h2load", "strace", "openssl"):
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
