"""The discovery port's certificate, issued by the control plane's own CA, with the real binaries.

Usage: discovery_certificate_test.py CONTROL_PLANE SIDECAR MESHCTL [unittest args]

The control plane starts without any TLS flag and with 4-second certificates (--cert-ttl 4s), so
its CA issues the discovery port's certificate to the control plane itself and renews it about
every 2 s. Shown:
- `meshctl trust-bundle` prints the generated root (<data-dir>/ca/root-cert.pem), and
  `--configmap` the meshlet-trust ConfigMap injected pods mount, holding it under ca.pem;
- a sidecar started as injection starts it (--xds-ca with that bundle, --xds-server-identity
  spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane) gets its configuration, ACKed
  in proxy status; a sidecar expecting another identity is refused and never registers;
- `openssl s_client` verifies the certificate with the root and sees its URI SAN and DNS SANs; a
  client checking a DNS name finds the Service's names in it, and no other;
- each renewal serves a new certificate (new serial) while a connected sidecar stays on its one
  stream, and the expiry gauge follows the served certificate.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import yaml

import cp_api
import sidecar_test
from mesh_util import create_join_token, start_control_plane, stop_process
from xds_util import XdsSidecar, free_port, wait_for

CONTROL_PLANE = SIDECAR = MESHCTL = None  # set from argv
CONTROL_PLANE_ID = "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane"
DNS_NAMES = ["meshlet-control-plane", "meshlet-control-plane.meshlet-system",
             "meshlet-control-plane.meshlet-system.svc",
             "meshlet-control-plane.meshlet-system.svc.cluster.local"]


def read(path):
    with open(path) as f:
        return f.read()


class DiscoveryCertificateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.data = os.path.join(cls.tmp, "cp-data")
        cls.cp_log = os.path.join(cls.tmp, "cp.log")
        # No --xds-tls-cert, no --xds-plaintext.
        cls.cp, cls.api, ads = start_control_plane(
            CONTROL_PLANE, cls.cp_log, "--data-dir", cls.data, "--api-address", "127.0.0.1:0",
            "--xds-address", "127.0.0.1:0", "--xds-listen-host", "127.0.0.1", "--cert-ttl", "4s",
            "--otlp-address=", "--zipkin-address=")
        cls.ads_port = int(ads.rsplit(":", 1)[1])
        cls.token = read(os.path.join(cls.data, "api-token")).strip()
        cls.root = os.path.join(cls.data, "ca", "root-cert.pem")
        # What an operator does: the bundle from meshctl is the sidecars' --xds-ca.
        cls.bundle = os.path.join(cls.tmp, "ca.pem")
        with open(cls.bundle, "w") as f:
            f.write(cls.meshctl("trust-bundle"))
        cls.sidecars = []

    @classmethod
    def tearDownClass(cls):
        for sidecar in cls.sidecars:
            sidecar.kill()
        stop_process(cls.cp)

    @classmethod
    def meshctl(cls, *args):
        p = subprocess.run([MESHCTL, "--server", cls.api, "--token", cls.token, "--ca-file",
                            cp_api.ca_file_for(cls.api), *args],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"meshctl {args} exited {p.returncode}: {p.stderr}")
        return p.stdout

    def api_get(self, path):
        status, body = cp_api.request(self.api, "GET", path, token=self.token)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body}")
        return body

    def proxies(self):
        return {p["id"]: p for p in json.loads(self.api_get("/api/v1/proxies"))["items"]}

    def metric(self, name):
        for line in self.api_get("/metrics").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def sidecar(self, node_id, identity=CONTROL_PLANE_ID, wait_ready=True):
        # The discovery port takes only sidecars that present their workload certificate: one
        # from the CA on the same port, bought with a join token, for an hour (the control plane's
        # own is short here, and a stream ends with the certificate it was opened with).
        token_file = os.path.join(self.tmp, f"{node_id}.token")
        with open(token_file, "w") as f:
            f.write(create_join_token(self.api, self.token, "web", "10m"))
        s = XdsSidecar(SIDECAR, self.tmp, self.ads_port, node_id, ca=self.bundle,
                       wait_ready=wait_ready,
                       extra=[f"--xds-server-identity={identity}", "--node-port=8080",
                              "--node-service-account=web", f"--join-token-file={token_file}",
                              f"--ca-address=127.0.0.1:{self.ads_port}", "--cert-ttl=1h",
                              "--node-address=127.0.0.1",
                              f"--node-label=meshlet.io/inbound-port={free_port()}",
                              f"--node-label=meshlet.io/outbound-port={free_port()}"])
        self.sidecars.append(s)
        return s

    def converged(self, node_id):
        proxy = self.proxies().get(node_id)
        return proxy is not None and proxy["types"] and all(
            t["state"] == "ACKED" for t in proxy["types"].values())

    def served(self, *extra):
        """openssl s_client against the discovery port, verifying with the root: (its output,
        the served leaf as PEM)."""
        # The server's HTTP/2 SETTINGS follow the handshake on stdout: not text.
        p = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.ads_port}", "-alpn", "h2",
             "-CAfile", self.root, *extra],
            input="", capture_output=True, text=True, errors="replace", timeout=10)
        leaf = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                         p.stdout, re.S)
        self.assertIsNotNone(leaf, p.stdout + p.stderr)
        return p.stdout, leaf.group(0)

    def x509(self, pem, *args):
        return subprocess.run(["openssl", "x509", "-noout", *args], input=pem,
                              capture_output=True, text=True, check=True).stdout

    def serial(self):
        return self.x509(self.served()[1], "-serial").strip()

    def test_trust_bundle_is_the_generated_root(self):
        root = read(self.root)
        self.assertEqual(read(self.bundle), root)
        self.assertEqual(self.api_get("/api/v1/trust-bundle"), root)
        config_map = yaml.safe_load(self.meshctl("trust-bundle", "--configmap", "-n", "shop"))
        self.assertEqual(config_map, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "meshlet-trust", "namespace": "shop"},
            "data": {"ca.pem": root}})

    def test_an_injected_style_sidecar_verifies_the_control_plane_and_is_configured(self):
        sidecar = self.sidecar("web-0.default")
        self.assertTrue(wait_for(lambda: self.converged("web-0.default"), timeout=10),
                        json.dumps(self.proxies()) + sidecar.log())
        self.assertTrue(sidecar.xds()["connected"])
        self.assertEqual(sidecar.xds()["updates_refused"], 0, sidecar.log())

    def test_a_sidecar_expecting_another_identity_is_refused(self):
        # It checks the CA on the same port first, so it never gets a certificate, never opens a
        # discovery stream, and gives up saying why.
        impostor = "spiffe://cluster.local/ns/meshlet-system/sa/someone-else"
        token_file = os.path.join(self.tmp, "wary.token")
        with open(token_file, "w") as f:
            f.write(create_join_token(self.api, self.token, "web", "10m"))
        p = subprocess.run(
            [SIDECAR, f"--xds=127.0.0.1:{self.ads_port}", "--node-id=wary-0.default",
             "--node-service=web", "--node-namespace=default", "--node-service-account=web",
             f"--xds-ca={self.bundle}", f"--xds-server-identity={impostor}",
             f"--join-token-file={token_file}", f"--ca-address=127.0.0.1:{self.ads_port}",
             "--ca-startup-timeout=3s", f"--admin-address=127.0.0.1:{free_port()}"],
            capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(impostor, p.stderr)
        self.assertIn(CONTROL_PLANE_ID, p.stderr)
        self.assertNotIn("wary-0.default", self.proxies())

    def test_openssl_sees_the_spiffe_id_and_dns_names(self):
        out, leaf = self.served("-verify_return_error")
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertIn("ALPN protocol: h2", out)
        text = self.x509(leaf, "-ext", "subjectAltName,extendedKeyUsage")
        names = re.search(r"Subject Alternative Name: critical\n\s*(.*)\n", text).group(1)
        self.assertEqual(names.split(", "),
                         [f"URI:{CONTROL_PLANE_ID}"] + [f"DNS:{n}" for n in DNS_NAMES])
        self.assertIn("TLS Web Server Authentication", text)
        # A client that checks a host name (rather than the SPIFFE id) finds the Service's.
        out, _ = self.served("-verify_hostname", "meshlet-control-plane.meshlet-system.svc")
        self.assertIn("Verify return code: 0 (ok)", out)
        out, _ = self.served("-verify_hostname", "meshlet-control-plane.other.svc")
        self.assertIn("Verify return code: 62 (hostname mismatch)", out)

    def test_renewals_serve_new_certificates_without_disturbing_a_connected_sidecar(self):
        sidecar = self.sidecar("api-0.default")
        self.assertTrue(wait_for(lambda: self.converged("api-0.default"), timeout=10),
                        json.dumps(self.proxies()) + sidecar.log())
        streams = sidecar.xds()["streams_started"]
        since = self.proxies()["api-0.default"]["connectedSince"]
        renewals = self.metric("meshlet_cp_serving_certificate_renewals_total")
        serials = set()
        deadline = time.time() + 12
        while len(serials) < 3 and time.time() < deadline:
            serials.add(self.serial())
            time.sleep(0.2)
        self.assertGreaterEqual(len(serials), 3, read(self.cp_log))
        # The sidecar's stream, made with an earlier certificate, is the one it still has.
        self.assertTrue(sidecar.xds()["connected"])
        self.assertEqual(sidecar.xds()["streams_started"], streams, sidecar.log())
        self.assertEqual(self.proxies()["api-0.default"]["connectedSince"], since)
        self.assertTrue(self.converged("api-0.default"))
        self.assertGreaterEqual(self.metric("meshlet_cp_serving_certificate_renewals_total"),
                                renewals + 2)
        self.assertEqual(self.metric("meshlet_cp_serving_certificate_renewal_failures_total"), 0)
        expiry = self.metric("meshlet_cp_serving_certificate_expiry_timestamp_seconds")
        self.assertTrue(time.time() - 1 <= expiry <= time.time() + 5, expiry)
        print(f"\n{len(serials)} serving certificates seen; the sidecar kept stream {streams}",
              file=sys.stderr)


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    SIDECAR = sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    MESHCTL = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
