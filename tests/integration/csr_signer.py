"""An external signer for certificates.k8s.io/v1 CertificateSigningRequests, as a cluster's
signer controller works: it lists and watches the requests of one signerName on an API server
(fake_kubernetes_api.py in tests), denies those `deny(csr)` says to deny, approves the others
through the approval subresource, and writes the certificate it issues with its CA to the status
subresource. Requests of other signerNames, and requests already decided, are left alone.

The issued certificate keeps the request's public key and its SubjectAlternativeName extension
(URI SANs: a workload's SPIFFE id), is a leaf (CA:FALSE, digitalSignature, serverAuth and
clientAuth) valid for spec.expirationSeconds (default one hour), and status.certificate holds it
followed by the signer's CA certificate.

Threading: start() runs the watch on a daemon thread; stop() ends it. `signed` and `denied` (names
of the requests) are read under `cond`.

As a program (the e2e tests run it in the API server pod's network):

    csr_signer.py --api URL --token-file F --ca-cert F --ca-key F --signer-name NAME [--cafile F]

signs every request of NAME until its stdin closes, printing "watching" once started and
"signed NAME SPIFFE-ID" for each certificate it writes.
"""

import argparse
import base64
import datetime
import json
import ssl
import sys
import threading
import time
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


class CsrSigner:
    def __init__(self, api_url, token, ca_cert_pem, ca_key_pem, signer_name,
                 deny=lambda csr: None, cafile=None):
        """`deny(csr)` -> a message to deny the request with, or None to sign it."""
        self.api_url, self.token, self.signer_name, self.deny = api_url, token, signer_name, deny
        self.ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
        self.ca_cert_pem = ca_cert_pem
        self.ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), None)
        self.context = ssl.create_default_context(cafile=cafile)
        if cafile is None:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self.cond = threading.Condition()
        self.signed, self.denied = [], []
        self.stopping = False
        self.on_signed = None  # called with (name, the request) after each certificate
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        with self.cond:
            self.stopping = True
        self.thread.join(timeout=10)

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method, headers={
            "Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        return urllib.request.urlopen(req, context=self.context, timeout=10)

    def run(self):
        while True:
            with self.cond:
                if self.stopping:
                    return
            try:
                with self.request("GET", CSR_PATH) as answer:
                    listed = json.load(answer)
                for csr in listed["items"]:
                    self.handle(csr)
            except (OSError, ValueError) as e:  # the API server not answering yet: again
                print("listing the requests: %s" % e, file=sys.stderr, flush=True)
                time.sleep(0.5)
                continue
            rv = listed["metadata"]["resourceVersion"]
            try:
                with self.request("GET", f"{CSR_PATH}?watch=true&resourceVersion={rv}"
                                         f"&timeoutSeconds=1") as stream:
                    for line in stream:
                        event = json.loads(line)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self.handle(event["object"])
            except (OSError, ValueError):
                pass  # the watch ended: list again

    def handle(self, csr):
        spec, status = csr["spec"], csr.get("status") or {}
        decided = {c["type"] for c in status.get("conditions", [])}
        if spec.get("signerName") != self.signer_name or "Denied" in decided:
            return
        name = csr["metadata"]["name"]
        if "Approved" not in decided:
            reason = self.deny(csr)
            condition = {"type": "Denied" if reason else "Approved", "status": "True",
                         "reason": "TestSignerDenied" if reason else "TestSignerApproved",
                         "message": reason or "approved by the test signer"}
            with self.request("PUT", f"{CSR_PATH}/{name}/approval", {
                    "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                    "metadata": {"name": name}, "status": {"conditions": [condition]}}):
                pass
            if reason:
                with self.cond:
                    self.denied.append(name)
                    self.cond.notify_all()
            return  # signed on the MODIFIED event the approval makes
        if status.get("certificate"):
            return
        chain = self.issue(base64.b64decode(spec["request"]), spec.get("expirationSeconds", 3600))
        with self.request("PUT", f"{CSR_PATH}/{name}/status", {
                "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": name},
                "status": {"certificate": base64.b64encode(chain.encode()).decode()}}):
            pass
        with self.cond:
            self.signed.append(name)
            self.cond.notify_all()
        if self.on_signed is not None:
            self.on_signed(name, csr)

    def issue(self, csr_pem, lifetime_seconds):
        """The PEM leaf for the CSR `csr_pem`, followed by the CA certificate."""
        csr = x509.load_pem_x509_csr(csr_pem)
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([]))
                   .issuer_name(self.ca_cert.subject)
                   .public_key(csr.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(seconds=lifetime_seconds))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                                False, False), True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), False))
        try:
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            builder = builder.add_extension(sans.value, True)
        except x509.ExtensionNotFound:
            pass
        cert = builder.sign(self.ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode() + self.ca_cert_pem


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--api", required=True, help="the API server's https:// URL")
    p.add_argument("--token-file", required=True, help="its bearer token")
    p.add_argument("--ca-cert", required=True, help="the signer's CA certificate (PEM)")
    p.add_argument("--ca-key", required=True, help="its private key (PEM)")
    p.add_argument("--signer-name", required=True)
    p.add_argument("--cafile", help="verifies the API server's certificate")
    args = p.parse_args()
    with open(args.token_file) as t, open(args.ca_cert) as c, open(args.ca_key) as k:
        signer = CsrSigner(args.api, t.read().strip(), c.read(), k.read(), args.signer_name,
                           cafile=args.cafile)

    def signed(name, csr):
        spiffe_id = csr["metadata"].get("annotations", {}).get("meshlet.io/spiffe-id", "")
        print("signed %s %s" % (name, spiffe_id), flush=True)
    signer.on_signed = signed
    signer.start()
    print("watching %s for signer %s" % (args.api, args.signer_name), flush=True)
    sys.stdin.read()  # until the test (or its harness) closes it
    signer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
