"""Unit tests of harness.py's Suite: how a suite's exit status follows its lines, without podman.

Usage: harness_test.py [unittest args]
"""

import contextlib
import io
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class FakeRun:
    """Stands in for harness.Run: entering it fails with `error`, or succeeds."""
    error = None

    def __init__(self, **_):
        pass

    def __enter__(self):
        if self.error:
            raise self.error
        return self

    def __exit__(self, *_):
        return False

    def dump(self):
        pass

    def leftovers(self):
        return []


class SuiteTest(unittest.TestCase):
    def setUp(self):
        self.real_run = harness.Run
        harness.Run = FakeRun

    def tearDown(self):
        harness.Run = self.real_run
        FakeRun.error = None

    def main(self, body):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = harness.Suite("unit").main(body)
        return status, out.getvalue()

    def test_a_run_that_cannot_be_made_fails_the_suite(self):
        FakeRun.error = harness.E2EError("the specified runroot is longer than 50 characters")
        status, out = self.main(lambda run, suite: None)
        self.assertEqual(status, 1, out)
        self.assertIn("FAIL  run", out)
        self.assertIn("runroot is longer", out)

    def test_a_failed_scenario_is_reported_once(self):
        def body(run, suite):
            suite.report(False, "a", "broken", 0)
            raise harness.E2EError("stop")
        status, out = self.main(body)
        self.assertEqual(status, 1, out)
        self.assertEqual(out.count("FAIL"), 1, out)

    def test_passing_lines_pass(self):
        status, out = self.main(lambda run, suite: suite.report(True, "a", "fine", 0))
        self.assertEqual(status, 0, out)


if __name__ == "__main__":
    unittest.main()
