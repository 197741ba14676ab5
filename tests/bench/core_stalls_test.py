#!/usr/bin/env python3
"""core_stalls.py: the probe reports a late wake-up with when it happened, and only late ones;
the command line refuses cores that are not there and prints a line per core probed."""

import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import core_stalls  # noqa: E402


class FakeConn:
    def send(self, value):
        self.value = value


class ProbeTest(unittest.TestCase):
    def test_a_wake_up_held_back_is_reported_and_on_time_ones_are_not(self):
        real_sleep = time.sleep
        calls = []

        def sleep(seconds):
            calls.append(seconds)
            # The 50th sleep is held back 30 ms, as a core taken by another process would.
            real_sleep(0.030 if len(calls) == 50 else seconds)

        core_stalls.time.sleep = sleep
        try:
            conn = FakeConn()
            core = sorted(os.sched_getaffinity(0))[0]
            core_stalls.probe(core, 0.2, 0.015, conn)
        finally:
            core_stalls.time.sleep = real_sleep
        self.assertEqual(len(conn.value), 1, conn.value)
        at_ms, late_ms = conn.value[0]
        self.assertGreaterEqual(late_ms, 30.0)
        self.assertLess(at_ms, 200.0)

    def test_command_line(self):
        script = os.path.join(HERE, "core_stalls.py")
        core = sorted(os.sched_getaffinity(0))[0]
        r = subprocess.run([sys.executable, script, "--cpus", str(core), "--duration", "0.2"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^core %d: \d+ wake-ups later than 1.5 ms \(worst " % core)
        r = subprocess.run([sys.executable, script, "--cpus", "4096"], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--cpus: cores [4096] are not available here", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
