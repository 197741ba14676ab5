"""Certificate renewal with the current workload certificate over the control plane's TLS port.

Usage: ca_renewal_test.py CONTROL_PLANE SIDECAR MESHCTL CA_PROTO [unittest args]

The control plane serves discovery and its CA on a TLS port (a server certificate made here with
the openssl CLI) and issues 4-second certificates. Shown:
- a sidecar started with a join token valid for 3 seconds keeps renewing long after the token
  expired: its renewals present its workload certificate (the CA logs the attestation
  `certificate`) and never fail;
- `meshctl token revoke` of one sidecar's join token, long used up: that sidecar's next renewal
  is refused (counted as `revoked`, the sidecar shows why) while another sidecar's, from another
  token, goes on;
- with python3-grpcio presenting a certificate for identity A: a request for A without any
  token is renewed; a request for identity B is refused with PERMISSION_DENIED and counted as
  `identity_mismatch`; a client without a certificate and without a token is UNAUTHENTICATED;
- a root rotation step (certs/README.md step 1): a second control plane restarted with a new root
  in --ca-trust-bundle pushes the two-root bundle over xDS to a running sidecar, which rebuilds
  its mTLS contexts with it, without a restart and before any renewal.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import grpc

import cp_api
import sidecar_test
from mesh_util import (create_join_token, make_ca, make_server_cert, make_workload_cert, openssl,
                       peer_accepted, start_control_plane, stop_process, trust_bundle_roots)
from sidecar_test import wait_for

CONTROL_PLANE = MESHCTL = CA_PROTO = None  # set from argv
A_ID = "spiffe://cluster.local/ns/default/sa/frontend"
B_ID = "spiffe://cluster.local/ns/default/sa/payments"


def read(path):
    with open(path) as f:
        return f.read()


def make_key_and_csr(directory, name):
    key = os.path.join(directory, name + "-key.pem")
    csr = os.path.join(directory, name + ".csr")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=ignored", "-out", csr)
    with open(key, "rb") as k, open(csr) as c:
        return k.read(), c.read()


class CaRenewalTest(unittest.TestCase):
    @classmethod
    def start_control_plane(cls, data, log_path, *args):
        return start_control_plane(
            CONTROL_PLANE, log_path, "--data-dir", data, "--api-address", "127.0.0.1:0",
            "--xds-tls-cert", os.path.join(cls.tmp, "server.pem"),
            "--xds-tls-key", os.path.join(cls.tmp, "server-key.pem"), *args)

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        stubs = os.path.join(cls.tmp, "stubs")
        os.makedirs(stubs)
        subprocess.run(["protoc", "--proto_path=" + os.path.dirname(os.path.dirname(CA_PROTO)),
                        "--python_out=" + stubs, CA_PROTO], check=True)
        sys.path.insert(0, stubs)
        from xds import ca_pb2
        cls.pb = ca_pb2
        # The discovery port's own server certificate (not the workload CA's).
        t = cls.tmp
        server_ca = make_ca(t, "server-ca")
        cls.server_ca = server_ca[0]
        make_server_cert(t, "server", server_ca, san="IP:127.0.0.1,DNS:localhost")

        data = os.path.join(t, "cp-data")
        cls.cp_log = os.path.join(t, "cp.log")
        cls.cp, cls.api, cls.ads = cls.start_control_plane(
            data, cls.cp_log, "--xds-address", "127.0.0.1:0", "--cert-ttl", "4s",
            "--cert-max-ttl", "4s")
        with open(os.path.join(data, "api-token")) as f:
            cls.api_token = f.read().strip()
        with open(cls.server_ca, "rb") as f:
            cls.server_ca_pem = f.read()

    @classmethod
    def tearDownClass(cls):
        stop_process(cls.cp)

    @classmethod
    def log(cls):
        with open(cls.cp_log) as f:
            return f.read()

    def join_token(self, service_account, ttl, api=None, api_token=None):
        return create_join_token(api or self.api, api_token or self.api_token, service_account,
                                 ttl)

    def create_certificate(self, csr_pem, client=None, **fields):
        """CreateCertificate over TLS; `client` = (key PEM, chain PEM) to present, or None."""
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.server_ca_pem,
            private_key=client[0] if client else None,
            certificate_chain=client[1] if client else None)
        with grpc.secure_channel(self.ads, credentials) as channel:
            call = channel.unary_unary(
                "/meshlet.ca.v1.CertificateService/CreateCertificate",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=self.pb.CreateCertificateResponse.FromString)
            return call(self.pb.CreateCertificateRequest(csr_pem=csr_pem, **fields), timeout=5)

    def test_sidecar_renews_after_its_join_token_expired(self):
        workdir = tempfile.mkdtemp(dir=self.tmp)
        token_file = os.path.join(workdir, "join-token")
        with open(token_file, "w") as f:
            f.write(self.join_token("frontend", "3s") + "\n")
        token_expires = time.time() + 3
        sidecar = sidecar_test.Sidecar(
            workdir, "{}\n", f"--join-token-file={token_file}", f"--ca-address={self.ads}",
            f"--xds-ca={self.server_ca}", "--node-namespace=default",
            "--node-service-account=frontend", concurrency=1)
        try:
            def certs():
                return json.loads(sidecar.get("/certs")[1])
            # 4-second certificates renew every ~2 s: wait for three renewals after the token
            # expired (each with a new serial), whatever the jitter.
            serials = set()

            def renewed_after_expiry():
                current = certs()["workload_certificate"]
                if time.time() > token_expires + 1:
                    serials.add(current["serial"])
                return len(serials) >= 3
            self.assertTrue(wait_for(renewed_after_expiry, timeout=20),
                            f"{serials} {certs()}\n{self.log()}")
            rotation = certs()["rotation"]
            self.assertEqual(rotation["last_error"], "", rotation)
            self.assertEqual(certs()["workload_certificate"]["identity"], A_ID)
            issued = re.findall(r"issued certificate \w+ for (\S+) \((\w+),", self.log())
            self.assertEqual(issued[0], (A_ID, "join_token"), issued)
            renewals = [i for i in issued if i == (A_ID, "certificate")]
            self.assertGreaterEqual(len(renewals), 3, issued)
            print(f"\nrenewals by certificate: {len(renewals)} (token expired after 3 s)",
                  file=sys.stderr)
        finally:
            sidecar.stop()

    def start_sidecar(self, service_account, token):
        workdir = tempfile.mkdtemp(dir=self.tmp)
        token_file = os.path.join(workdir, "join-token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        return sidecar_test.Sidecar(
            workdir, "{}\n", f"--join-token-file={token_file}", f"--ca-address={self.ads}",
            f"--xds-ca={self.server_ca}", "--node-namespace=default",
            f"--node-service-account={service_account}", concurrency=1)

    def metric(self, series):
        req = urllib.request.Request(cp_api.url(self.api, "/metrics"),
                                     headers={"Authorization": "Bearer " + self.api_token})
        with cp_api.urlopen(req, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(series + " "):
                    return float(line.split()[-1])
        return 0.0

    def test_a_revoked_join_token_ends_the_renewals_that_descend_from_it(self):
        revoked_token = self.join_token("frontend", "1m")
        kept = self.start_sidecar("payments", self.join_token("payments", "1m"))
        cut = self.start_sidecar("frontend", revoked_token)
        try:
            def rotation(sidecar):
                return json.loads(sidecar.get("/certs")[1])

            def serial(sidecar):
                return rotation(sidecar)["workload_certificate"]["serial"]
            # Both renewed at least once with their certificates (4 s, renewed every ~2 s).
            first = {s: serial(s) for s in (kept, cut)}
            self.assertTrue(wait_for(lambda: all(serial(s) != first[s] for s in (kept, cut)),
                                     timeout=15), self.log())
            refused_before = self.metric('meshlet_ca_requests_refused_total{reason="revoked"}')

            p = subprocess.run([MESHCTL, "--server", self.api, "--token", self.api_token,
                                "--ca-file", cp_api.ca_file_for(self.api), "token", "revoke",
                                revoked_token],
                               capture_output=True, text=True, timeout=20)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("revoked", p.stdout)

            # The next renewal of `cut` is refused, and it says why.
            self.assertTrue(wait_for(lambda: "was revoked" in rotation(cut)["rotation"]["last_error"],
                                     timeout=10), f"{rotation(cut)}\n{self.log()}")
            self.assertGreater(
                self.metric('meshlet_ca_requests_refused_total{reason="revoked"}'), refused_before)
            frozen = serial(cut)
            # `kept` renews on (two more certificates), `cut` gets none.
            after = serial(kept)
            self.assertTrue(wait_for(lambda: serial(kept) != after, timeout=10))
            after = serial(kept)
            self.assertTrue(wait_for(lambda: serial(kept) != after, timeout=10))
            self.assertEqual(rotation(kept)["rotation"]["last_error"], "")
            self.assertEqual(serial(cut), frozen)
        finally:
            kept.stop()
            cut.stop()

    def test_a_certificate_for_a_cannot_obtain_b(self):
        key_a, csr_a = make_key_and_csr(self.tmp, "a")
        first = self.create_certificate(csr_a, join_token=self.join_token("frontend", "1m"),
                                        spiffe_id=A_ID)
        self.assertEqual(first.spiffe_id, A_ID)
        client = (key_a, first.certificate_chain_pem.encode())

        # The same identity renews with the certificate alone.
        _, csr_renew = make_key_and_csr(self.tmp, "a2")
        renewed = self.create_certificate(csr_renew, client=client, spiffe_id=A_ID)
        self.assertEqual(renewed.spiffe_id, A_ID)
        self.assertNotEqual(renewed.serial_number, first.serial_number)

        # Another identity: refused, logged, counted.
        _, csr_b = make_key_and_csr(self.tmp, "b")
        with self.assertRaises(grpc.RpcError) as caught:
            self.create_certificate(csr_b, client=client, spiffe_id=B_ID)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.PERMISSION_DENIED,
                         caught.exception.details())
        self.assertIn("identity_mismatch", self.log())
        self.assertNotIn(f"for {B_ID}", self.log())

        # Neither a certificate nor a token.
        with self.assertRaises(grpc.RpcError) as caught:
            self.create_certificate(csr_b, spiffe_id=B_ID)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_root_rotation_reaches_a_running_sidecar_over_xds(self):
        data = os.path.join(self.tmp, "rotation-data")
        log_path = os.path.join(self.tmp, "rotation-cp.log")
        ads = f"127.0.0.1:{sidecar_test.free_port()}"
        cp, api, _ = self.start_control_plane(data, log_path, "--xds-address", ads)
        new_root = make_ca(self.tmp, "new-root")
        # A peer whose certificate chains only to the new root.
        new_peer = make_workload_cert(self.tmp, "new-peer", new_root,
                                      "spiffe://cluster.local/ns/default/sa/new-peer")
        with open(os.path.join(data, "api-token")) as f:
            api_token = f.read().strip()
        workdir = tempfile.mkdtemp(dir=self.tmp)
        inbound = sidecar_test.free_port()
        token_file = os.path.join(workdir, "join-token")
        with open(token_file, "w") as f:
            f.write(self.join_token("frontend", "10m", api, api_token) + "\n")
        sidecar = None
        try:
            sidecar = sidecar_test.Sidecar(
                workdir, "{}\n", f"--xds={ads}", f"--xds-ca={self.server_ca}",
                "--node-id=frontend-0", "--node-service=frontend", "--node-namespace=default",
                "--node-service-account=frontend", "--node-address=127.0.0.1", "--node-port=8080",
                f"--node-label=meshlet.io/inbound-port={inbound}",
                f"--node-label=meshlet.io/outbound-port={sidecar_test.free_port()}",
                f"--join-token-file={token_file}", concurrency=1)

            def new_peer_accepted():
                return peer_accepted(inbound, *new_peer)

            def bundle_roots():
                return trust_bundle_roots(sidecar)

            def inbound_generation():
                for user in json.loads(sidecar.get("/certs")[1]).get("used_by", []):
                    if user.get("listener") == "inbound":
                        return user["context_generation"]
                return 0
            self.assertTrue(wait_for(lambda: bundle_roots() == 1 and inbound_generation() > 0,
                                     timeout=10), sidecar.log())
            generation = inbound_generation()
            serial = json.loads(sidecar.get("/certs")[1])["workload_certificate"]["serial"]
            self.assertFalse(new_peer_accepted())

            # Step 1 of a root rotation: same signing root, the new root added to the bundle.
            stop_process(cp)
            cp, _, _ = self.start_control_plane(data, log_path, "--xds-address", ads,
                                                "--ca-trust-bundle", new_root[0])
            self.assertTrue(wait_for(lambda: bundle_roots() == 2, timeout=15),
                            sidecar.log() + read(log_path))
            # The listener's mTLS context was rebuilt with the new bundle (new connections), by
            # the same process, with the same certificate (no renewal was needed).
            self.assertTrue(wait_for(lambda: inbound_generation() > generation, timeout=5))
            # Peers are verified against the pushed bundle: the new root's peer is accepted now.
            self.assertTrue(new_peer_accepted())
            self.assertIsNone(sidecar.proc.poll())
            self.assertEqual(
                json.loads(sidecar.get("/certs")[1])["workload_certificate"]["serial"], serial)
        finally:
            if sidecar is not None:
                sidecar.stop()
            stop_process(cp)


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    MESHCTL = os.path.abspath(sys.argv.pop(1))
    CA_PROTO = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
