"""The Kubernetes CertificateSigningRequest API as the fake API server serves it, with the
external signer process the CSR signer's tests run (csr_signer.py): a request for the signer's
signerName is approved and signed, one it refuses is Denied with its message and gets no
certificate, one for another signerName is left alone, and the API refuses a certificate on a
request nobody approved and keeps the approval out of reach of status writes."""

import base64
import json
import os
import ssl
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csr_signer import CSR_PATH, CsrSigner
from fake_kubernetes_api import FakeApiServer
from mesh_util import make_ca, make_server_cert

SIGNER = "example.com/meshlet-workloads"
TOKEN = "control-plane-token"


def workload_csr(spiffe_id):
    """A PEM CSR over a new P-256 key with `spiffe_id` as its URI SAN."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


class KubernetesCsrApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t = cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cluster_ca = make_ca(t, "cluster-ca")
        cls.fake = FakeApiServer(make_server_cert(t, "apiserver", cluster_ca),
                                 [TOKEN, "signer-token"])
        cls.context = ssl.create_default_context(cafile=cluster_ca[0])
        cls.context.check_hostname = False
        signer_ca = make_ca(t, "external-signer-ca")
        with open(signer_ca[0]) as cert, open(signer_ca[1]) as key:
            cls.signer_ca_pem = cert.read()
            cls.signer = CsrSigner(
                cls.fake.address, "signer-token", cls.signer_ca_pem, key.read(), SIGNER,
                deny=lambda csr: ("the test signer refuses ns/denied"
                                  if "/ns/denied/" in csr["metadata"]["annotations"]["id"]
                                  else None),
                cafile=cluster_ca[0]).start()

    @classmethod
    def tearDownClass(cls):
        cls.signer.stop()
        cls.fake.stop()

    def call(self, method, path, body=None):
        """(HTTP code, JSON answer) of a request with the control plane's token."""
        req = urllib.request.Request(
            self.fake.address + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=10) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def create(self, name, spiffe_id, signer_name=SIGNER):
        code, created = self.call("POST", CSR_PATH, {
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name, "annotations": {"id": spiffe_id}},
            "spec": {"request": base64.b64encode(workload_csr(spiffe_id)).decode(),
                     "signerName": signer_name, "expirationSeconds": 600,
                     "usages": ["digital signature", "client auth", "server auth"]},
            "status": {"certificate": "bm90IHNpZ25lZA=="}})
        self.assertEqual(code, 201, created)
        return created

    def wait(self, name, done, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            code, csr = self.call("GET", f"{CSR_PATH}/{name}")
            self.assertEqual(code, 200, csr)
            if done(csr):
                return csr
            time.sleep(0.1)
        self.fail(f"{name}: {csr}")

    def test_an_approved_request_gets_a_certificate_of_the_signers_ca(self):
        spiffe_id = "spiffe://cluster.local/ns/default/sa/reviews"
        created = self.create("reviews-1", spiffe_id)
        self.assertNotIn("status", created)  # written through the status subresource only
        self.assertEqual(created["spec"]["username"], "token:" + TOKEN[:8])
        csr = self.wait("reviews-1", lambda c: (c.get("status") or {}).get("certificate"))
        self.assertEqual([c["type"] for c in csr["status"]["conditions"]], ["Approved"])
        pem = base64.b64decode(csr["status"]["certificate"]).decode()
        end = "-----END CERTIFICATE-----\n"
        leaf_pem, ca_pem = [block + end for block in pem.split(end)[:-1]]
        self.assertEqual(ca_pem, self.signer_ca_pem)
        leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
        self.assertEqual(leaf.issuer, ca.subject)
        ca.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes,
                               ec.ECDSA(leaf.signature_hash_algorithm))
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(sans.get_values_for_type(x509.UniformResourceIdentifier), [spiffe_id])
        self.assertFalse(leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        lifetime = leaf.not_valid_after - leaf.not_valid_before
        self.assertEqual(lifetime.total_seconds(), 600 + 300)  # expirationSeconds, backdated 5 min

    def test_a_denied_request_says_why_and_gets_no_certificate(self):
        self.create("denied-1", "spiffe://cluster.local/ns/denied/sa/default")
        csr = self.wait("denied-1", lambda c: (c.get("status") or {}).get("conditions"))
        time.sleep(0.5)  # a certificate would come on the next event
        _, csr = self.call("GET", f"{CSR_PATH}/denied-1")
        self.assertEqual(csr["status"]["conditions"][0]["type"], "Denied")
        self.assertEqual(csr["status"]["conditions"][0]["message"],
                         "the test signer refuses ns/denied")
        self.assertNotIn("certificate", csr["status"])
        with self.signer.cond:
            self.assertIn("denied-1", self.signer.denied)
            self.assertNotIn("denied-1", self.signer.signed)

    def test_other_signer_names_are_left_alone_and_the_api_guards_approval(self):
        self.create("other-1", "spiffe://cluster.local/ns/default/sa/other",
                    signer_name="kubernetes.io/kube-apiserver-client")
        # Not approved: the API refuses a certificate.
        code, answer = self.call("PUT", f"{CSR_PATH}/other-1/status", {
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "other-1"}, "status": {"certificate": "eA=="}})
        self.assertEqual(code, 422, answer)
        # A status write cannot approve it either.
        code, answer = self.call("PUT", f"{CSR_PATH}/other-1/status", {
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "other-1"},
            "status": {"conditions": [{"type": "Approved", "status": "True"}]}})
        self.assertEqual(code, 200, answer)
        self.assertEqual(answer["status"]["conditions"], [])
        # The approval subresource writes the conditions only, never the spec.
        code, answer = self.call("PATCH", f"{CSR_PATH}/other-1/approval", {
            "spec": {"signerName": SIGNER},
            "status": {"conditions": [{"type": "Denied", "status": "True"}]}})
        self.assertEqual(code, 415, answer)  # merge patches need their Content-Type
        code, answer = self.call("PUT", f"{CSR_PATH}/other-1/approval", {
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "other-1"}, "spec": {"signerName": SIGNER},
            "status": {"conditions": [{"type": "Denied", "status": "True"}]}})
        self.assertEqual(code, 200, answer)
        self.assertEqual(answer["spec"]["signerName"], "kubernetes.io/kube-apiserver-client")
        self.assertEqual(answer["status"]["conditions"][0]["type"], "Denied")
        with self.signer.cond:
            self.assertNotIn("other-1", self.signer.signed + self.signer.denied)

    def test_discovery_lists_the_subresources(self):
        code, listed = self.call("GET", "/apis/certificates.k8s.io/v1")
        self.assertEqual(code, 200, listed)
        self.assertEqual(sorted(r["name"] for r in listed["resources"]),
                         ["certificatesigningrequests", "certificatesigningrequests/approval",
                          "certificatesigningrequests/status"])


if __name__ == "__main__":
    unittest.main()
