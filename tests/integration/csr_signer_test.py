"""Workload certificates signed outside the control plane, by an external signer through the
Kubernetes CertificateSigningRequest API (docs/security.md "External signers", ADR 0100).

Usage: csr_signer_test.py CONTROL_PLANE SIDECAR MAKE_CA [unittest args]

The fake Kubernetes API server serves certificates.k8s.io/v1; an external signer
(csr_signer.py, with a CA of its own the control plane never sees) watches the requests of the
signerName example.com/meshlet-workloads, approves and signs them, and denies those of service
account "denied". The real control plane runs with --ca-csr-signer-name and the signer's root in
--ca-trust-bundle; sidecars join with tokens as usual. Shown:
- frontend's and backend's certificates are the external signer's (issuer, chain verifying with
  openssl up to its root), and they call each other over mTLS with them;
- meshlet_cp_ca_csr_total{result="issued"} counts them, and every CertificateSigningRequest is
  deleted once answered;
- a workload the signer denies gets no certificate: the sidecar is told the signer's reason
  (PERMISSION_DENIED), counted as denied and as meshlet_ca_requests_refused_total
  {reason="signer_denied"};
- nothing of the signer's key reaches the control plane (it has only the public root).
About 10 s.
"""

import os
import subprocess
import sys
import unittest

import cp_api
import root_rotation_test
import sidecar_test
from csr_signer import CsrSigner
from fake_kubernetes_api import FakeApiServer
from mesh_util import call_service, make_ca, make_server_cert
from root_rotation_test import RotationHarness
from sidecar_test import wait_for

TOKEN = "control-plane-token"
SIGNER = "example.com/meshlet-workloads"


class CsrSignerTest(RotationHarness):
    def setUp(self):
        super().setUp()
        t = self.tmp
        cluster_ca = make_ca(t, "cluster-ca")
        self.fake = FakeApiServer(make_server_cert(t, "apiserver", cluster_ca),
                                  [TOKEN, "signer-token"])
        token_file = os.path.join(t, "k8s-token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.signer_ca = make_ca(t, "external-signer-ca")
        with open(self.signer_ca[0]) as cert, open(self.signer_ca[1]) as key:
            self.signer_key_pem = key.read()
            self.signer = CsrSigner(
                self.fake.address, "signer-token", cert.read(), self.signer_key_pem, SIGNER,
                deny=lambda csr: ("the test signer refuses service account denied"
                                  if csr["metadata"].get("annotations", {}).get(
                                      "meshlet.io/spiffe-id", "").endswith("/sa/denied")
                                  else None),
                cafile=cluster_ca[0]).start()
        self.start_control_plane(
            "--ca-csr-signer-name", SIGNER, "--ca-trust-bundle", self.signer_ca[0],
            "--kubernetes-api", self.fake.address, "--kubernetes-token-file", token_file,
            "--kubernetes-ca-file", cluster_ca[0], "--kubernetes-discovery=false",
            "--kubernetes-policy=false", "--webhook-address=off")
        with open(os.path.join(self.data, "api-token")) as f:
            self.api_token = f.read().strip()

    def tearDown(self):
        super().tearDown()
        self.signer.stop()
        self.fake.stop()

    def metric(self, name, labels):
        with cp_api.urlopen(f"https://{self.api}/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.split("{")[0] == name and all(f'{k}="{v}"' in line
                                                   for k, v in labels.items()):
                return float(line.rpartition(" ")[2])
        return 0

    def requests_left(self):
        """The names of the CertificateSigningRequests the fake API server still holds."""
        with self.fake.cond:
            return sorted(name for _, name in self.fake.objects["certificatesigningrequests"])

    def test_workloads_get_certificates_from_the_external_signer(self):
        for service in ("frontend", "backend"):
            self.start_sidecar(service)
        issuer = "CN=external-signer-ca"
        self.assertTrue(wait_for(lambda: set(self.issuers().values()) == {issuer}, timeout=15),
                        self.issuers())
        self.assertTrue(wait_for(lambda: all(
            call_service(self.sidecars[a].outbound, b)[0] == 200
            for a, b in (("frontend", "backend"), ("backend", "frontend"))), timeout=15),
            self.diagnostics())
        for service in self.sidecars:
            self.assertTrue(self.presented_chain_verifies(service, self.signer_ca[0]), service)
        self.assertGreaterEqual(self.metric("meshlet_cp_ca_csr_total", {"result": "issued"}), 2)
        with self.signer.cond:
            self.assertGreaterEqual(len(self.signer.signed), 2)
        self.assertTrue(wait_for(lambda: self.requests_left() == [], timeout=10),
                        self.requests_left())
        # The signer's key never reached the control plane.
        key_lines = [l for l in self.signer_key_pem.splitlines() if not l.startswith("-----")]
        with open(self.cp_log) as f:
            log = f.read()
        self.assertFalse([l for l in key_lines if l in log])
        self.assertIn(f"signed through the Kubernetes CSR API by signer {SIGNER}", log)

    def test_a_denied_request_says_why(self):
        # Without a certificate the sidecar never serves: it gives up, saying what it was told.
        with self.assertRaises(AssertionError) as refused:
            self.start_sidecar("denied")
        self.assertIn("PERMISSION_DENIED: the signer example.com/meshlet-workloads denied "
                      "CertificateSigningRequest meshlet-", str(refused.exception))
        self.assertIn("the test signer refuses service account denied", str(refused.exception))
        self.assertGreaterEqual(self.metric("meshlet_cp_ca_csr_total", {"result": "denied"}), 1)
        self.assertGreaterEqual(self.metric("meshlet_ca_requests_refused_total",
                                            {"reason": "signer_denied"}), 1)
        self.assertTrue(wait_for(lambda: self.requests_left() == [], timeout=10),
                        self.requests_left())


if __name__ == "__main__":
    root_rotation_test.CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    root_rotation_test.MAKE_CA = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
