"""The sidecar's certificate machinery (CertificateManager + the gRPC CA client) against the real
control-plane binary: a join token from the REST API, 4-second certificates, three rotations at
about half the lifetime, each a new key and serial that `openssl verify` accepts."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

CONTROL_PLANE = os.path.abspath(sys.argv[1])
FETCH = os.path.abspath(sys.argv[2])
del sys.argv[1:3]

ID = "spiffe://cluster.local/ns/default/sa/frontend"


class RotationTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.data = os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "cp.log")
        with open(self.log_path, "wb") as log:
            self.cp = subprocess.Popen(
                [CONTROL_PLANE, "--data-dir", self.data, "--api-address", "127.0.0.1:0",
                 "--api-plaintext", "--xds-plaintext", "--xds-address", "127.0.0.1:0"],
                stdout=log, stderr=log)
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(self.log_path) as f:
                text = f.read()
            api = re.findall(r"API on (127\.0\.0\.1:\d+)", text)
            ads = re.findall(r"ADS on (127\.0\.0\.1:\d+)", text)
            if api and ads and "ca: issuing" in text:
                self.api, self.ads = api[-1], ads[-1]
                return
            self.assertIsNone(self.cp.poll(), text)
            time.sleep(0.05)
        self.fail("control plane did not start: " + open(self.log_path).read())

    def tearDown(self):
        self.cp.send_signal(signal.SIGTERM)
        self.cp.wait(timeout=10)

    def test_three_rotations(self):
        with open(os.path.join(self.data, "api-token")) as f:
            api_token = f.read().strip()
        req = urllib.request.Request(
            "http://%s/api/v1/tokens" % self.api, method="POST",
            data=json.dumps({"namespace": "default", "serviceAccount": "frontend",
                             "ttl": "10m"}).encode(),
            headers={"Authorization": "Bearer " + api_token})
        with urllib.request.urlopen(req, timeout=5) as r:
            join_token = json.loads(r.read())["token"]
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        started = time.time()
        result = subprocess.run(
            [FETCH, "--ca", self.ads, "--join-token", join_token, "--spiffe-id", ID,
             "--ttl-seconds", "4", "--rotations", "3", "--out-dir", out],
            capture_output=True, text=True, timeout=30)
        elapsed = time.time() - started
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        lines = re.findall(r"rotation (\d) serial ([0-9A-Fa-f]+) not_after (\d+)", result.stdout)
        self.assertEqual(len(lines), 3, result.stdout)
        self.assertEqual(len({serial for _, serial, _ in lines}), 3)
        # Renewal at 50 % +- 10 % of a 3-4 s remaining lifetime: two intervals of 1.2-2.4 s.
        self.assertGreater(elapsed, 2.0)
        self.assertLess(elapsed, 8.0)
        keys = set()
        for n, _, not_after in lines:
            cert = os.path.join(out, "cert-%s.pem" % n)
            bundle = os.path.join(out, "bundle-%s.pem" % n)
            # Checked as of a second before it expires: the first 4-second certificate may have
            # expired by now, which is the point of rotating it.
            verify = subprocess.run(["openssl", "verify", "-attime", str(int(not_after) - 1),
                                     "-CAfile", bundle, cert], capture_output=True, text=True)
            self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
            text = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-text"],
                                  check=True, capture_output=True, text=True).stdout
            self.assertIn("URI:" + ID, text)
            keys.add(subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"],
                                    check=True, capture_output=True, text=True).stdout)
        self.assertEqual(len(keys), 3, "every rotation must use a new key")


if __name__ == "__main__":
    unittest.main(verbosity=2)
