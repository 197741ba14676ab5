"""The CA in the real control-plane binary, with real peers: a join token from the REST API
(urllib, and `meshctl token create`), a certificate from CertificateService over gRPC (python3-grpcio, stubs generated at test
time with protoc), the key and CSR from the openssl CLI, the result checked with `openssl verify`.
Also: a token presented for another identity is refused, a single-use token works once, and
tokens and the generated root survive a restart."""

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

CONTROL_PLANE = os.path.abspath(sys.argv[1])
MESHCTL = os.path.abspath(sys.argv[2])
CA_PROTO = os.path.abspath(sys.argv[3])
del sys.argv[1:4]

import grpc  # noqa: E402

ID = "spiffe://cluster.local/ns/default/sa/frontend"


def generate_stubs(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    proto_root = os.path.dirname(os.path.dirname(CA_PROTO))
    subprocess.run(["protoc", "--proto_path=" + proto_root, "--python_out=" + out_dir,
                    CA_PROTO], check=True)
    sys.path.insert(0, out_dir)
    from xds import ca_pb2  # noqa: E402
    return ca_pb2


class ControlPlane:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.log_path = data_dir + ".log"
        self.proc = None

    def start(self):
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [CONTROL_PLANE, "--data-dir", self.data_dir, "--api-address", "127.0.0.1:0",
             "--xds-plaintext", "--xds-address", "127.0.0.1:0", "--cert-ttl", "1h",
             "--log-level", "info"], stdout=log, stderr=log)
        log.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read()
            api = re.findall(rb"API on (127\.0\.0\.1:\d+)", text)
            ads = re.findall(rb"ADS on (127\.0\.0\.1:\d+)", text)
            if api and ads and b"ca: issuing" in text:
                self.api, self.ads = api[-1].decode(), ads[-1].decode()
                return self
            if self.proc.poll() is not None:
                raise AssertionError("control plane exited: " + open(self.log_path).read())
            time.sleep(0.05)
        raise AssertionError("control plane did not start: " + open(self.log_path).read())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def root(self):
        return os.path.join(self.data_dir, "ca", "root-cert.pem")

    def post(self, path, body):
        with open(os.path.join(self.data_dir, "api-token")) as f:
            token = f.read().strip()
        req = urllib.request.Request(
            "https://%s%s" % (self.api, path), data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        # The API's certificate comes from the CA whose root is in the data directory.
        context = ssl.create_default_context(cafile=self.root())
        context.check_hostname = False
        try:
            with urllib.request.urlopen(req, timeout=5, context=context) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


class ControlPlaneCaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.pb = generate_stubs(os.path.join(cls.tmp, "stubs"))
        cls.cp = ControlPlane(os.path.join(cls.tmp, "data")).start()
        # The workload's key and a CSR asking for names the CA must ignore.
        cls.key = os.path.join(cls.tmp, "key.pem")
        cls.csr = os.path.join(cls.tmp, "req.csr")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", cls.key], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "req", "-new", "-key", cls.key, "-subj", "/CN=admin",
                        "-addext", "subjectAltName=URI:spiffe://cluster.local/ns/x/sa/admin",
                        "-out", cls.csr], check=True, capture_output=True)
        with open(cls.csr) as f:
            cls.csr_pem = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.cp.stop()

    def create_certificate(self, **fields):
        request = self.pb.CreateCertificateRequest(csr_pem=self.csr_pem, **fields)
        with grpc.insecure_channel(self.cp.ads) as channel:
            call = channel.unary_unary(
                "/meshlet.ca.v1.CertificateService/CreateCertificate",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=self.pb.CreateCertificateResponse.FromString)
            return call(request, timeout=5)

    def token(self, **extra):
        status, body = self.cp.post("/api/v1/tokens", dict(
            {"namespace": "default", "serviceAccount": "frontend", "ttl": "1h"}, **extra))
        self.assertEqual(status, 201, body)
        return body["token"]

    def verify(self, response):
        chain = os.path.join(self.tmp, "chain.pem")
        bundle = os.path.join(self.tmp, "bundle.pem")
        with open(chain, "w") as f:
            f.write(response.certificate_chain_pem)
        with open(bundle, "w") as f:
            f.write(response.trust_bundle_pem)
        subprocess.run(["openssl", "verify", "-CAfile", bundle, chain], check=True,
                       capture_output=True)
        # The bundle is the root the control plane generated in its data directory.
        with open(os.path.join(self.cp.data_dir, "ca", "root-cert.pem")) as f:
            self.assertEqual(f.read(), response.trust_bundle_pem)
        text = subprocess.run(["openssl", "x509", "-in", chain, "-noout", "-text"], check=True,
                              capture_output=True, text=True).stdout
        self.assertIn("URI:" + ID, text)
        self.assertNotIn("admin", text)
        lifetime = response.not_after_unix_seconds - time.time()
        self.assertTrue(3590 <= lifetime <= 3600, lifetime)  # --cert-ttl 1h

    def test_join_token_issues_the_bound_identity(self):
        response = self.create_certificate(join_token=self.token(), spiffe_id=ID)
        self.assertEqual(response.spiffe_id, ID)
        self.verify(response)
        self.assertIn("issued certificate %s for %s" % (response.serial_number, ID),
                      self.cp.log())

    def test_token_for_another_identity_is_refused_and_logged(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self.create_certificate(join_token=self.token(),
                                    spiffe_id="spiffe://cluster.local/ns/payments/sa/ledger")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("not the requested ns/payments/sa/ledger", caught.exception.details())
        self.assertRegex(self.cp.log(), r"refused \(identity_mismatch\)")

    def test_single_use_token_works_once(self):
        token = self.token(singleUse=True)
        self.create_certificate(join_token=token)
        with self.assertRaises(grpc.RpcError) as caught:
            self.create_certificate(join_token=token)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

    def test_no_credential_is_unauthenticated(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self.create_certificate()
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_bad_token_request_names_the_field(self):
        status, body = self.cp.post("/api/v1/tokens", {"namespace": "default",
                                                       "serviceAccount": "frontend",
                                                       "ttl": "forever"})
        self.assertEqual(status, 422, body)
        self.assertEqual(body["details"]["causes"][0]["field"], "ttl")

    def meshctl(self, *args):
        return subprocess.run(
            [MESHCTL, "--server", self.cp.api, "--token-file",
             os.path.join(self.cp.data_dir, "api-token"), "--ca-file", self.cp.root(), *args],
            capture_output=True, text=True, timeout=10)

    def test_meshctl_token_create(self):
        result = self.meshctl("token", "create", "--namespace", "default", "--service-account",
                              "frontend", "--ttl", "30m", "--single-use")
        self.assertEqual(result.returncode, 0, result.stderr)
        token = result.stdout.strip()
        self.assertRegex(token, r"^mjt1\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$")
        self.assertIn("single use", result.stderr)
        self.assertEqual(self.create_certificate(join_token=token, spiffe_id=ID).spiffe_id, ID)
        with self.assertRaises(grpc.RpcError):
            self.create_certificate(join_token=token)

        bad = self.meshctl("token", "create", "--namespace", "default", "--service-account",
                           "frontend", "--ttl", "forever")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("--ttl", bad.stderr)
        missing = self.meshctl("token", "create", "--namespace", "default")
        self.assertEqual(missing.returncode, 2)
        self.assertIn("--service-account", missing.stderr)

    def test_tokens_and_root_survive_a_restart(self):
        token = self.token()
        before = self.create_certificate(join_token=token)
        self.cp.stop()
        self.cp.start()
        after = self.create_certificate(join_token=token)
        self.assertEqual(after.trust_bundle_pem, before.trust_bundle_pem)
        self.assertNotEqual(after.serial_number, before.serial_number)
        # Only the hash of the secret is on disk.
        secret = token.rsplit(".", 1)[1]
        for root, _, files in os.walk(self.cp.data_dir):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    self.assertNotIn(secret.encode(), f.read(), name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
