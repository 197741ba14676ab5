"""TLS and mTLS through the real sidecar binary, against independent TLS peers.

Usage: tls_test.py SIDECAR_BINARY [unittest args]

Certificates are generated at test time with the openssl CLI (a CA, a server certificate with a
SPIFFE URI SAN and a DNS SAN, and client certificates with SPIFFE ids); nothing secret is
committed. Peers: curl (HTTP/1.1 and HTTP/2 over ALPN), `openssl s_client`, Python's ssl module,
and a second sidecar. Covers listener TLS termination (PERMISSIVE and STRICT), client
certificates and allowed identities, the peer identity header and access-log field, upstream TLS
origination (HTTP/1.1, HTTP/2, TCP) with expected peer ids, configuration errors for secrets that
do not load, and certificate rotation on reload.
"""

import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import h2.config
import h2.connection
import h2.events

import sidecar_test
from sidecar_test import (EchoServer, HttpUpstream, app_routes, free_port, static_cluster,
                          wait_for)

TRUST_DOMAIN = "cluster.local"
SERVER_ID = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/server"
CLIENT_ID = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/client"
INTRUDER_ID = f"spiffe://{TRUST_DOMAIN}/ns/other/sa/intruder"


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"openssl {args}: {r.stderr}")
    return r.stdout


class Pki:
    """A throwaway CA and leaf certificates (ECDSA P-256), written under `directory`."""

    def __init__(self, directory, ca_name="meshlet-test-ca"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca_key = self.path(f"{ca_name}.key")
        self.ca = self.path(f"{ca_name}.pem")
        self._key(self.ca_key)
        openssl("req", "-x509", "-new", "-key", self.ca_key, "-subj", f"/CN={ca_name}",
                "-days", "2", "-out", self.ca,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        self.serial = 1

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, path):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", path, cwd=self.dir)

    def leaf(self, name, spiffe_id, dns="localhost", expired=False):
        """Returns (cert_path, key_path) of a leaf for `spiffe_id` (and DNS name, if any);
        `expired`: one that was valid for a day and expired yesterday."""
        key, csr, cert = self.path(f"{name}.key"), self.path(f"{name}.csr"), self.path(f"{name}.pem")
        ext = self.path(f"{name}.ext")
        sans = [f"URI:{spiffe_id}"] + ([f"DNS:{dns}"] if dns else [])
        with open(ext, "w") as f:
            f.write(("[ca]\ndefault_ca = test_ca\n"
                     "[test_ca]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial.txt\n"
                     "default_md = sha256\npolicy = any\nunique_subject = no\n"
                     "[any]\ncommonName = supplied\n[leaf]\n" if expired else "") +
                    f"subjectAltName={','.join(sans)}\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
        self._key(key)
        openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr, cwd=self.dir)
        self.serial += 1
        if expired:
            # `openssl x509` only issues from now on; `openssl ca` takes explicit dates.
            open(self.path("index.txt"), "a").close()
            with open(self.path("serial.txt"), "w") as f:
                f.write(f"{self.serial:04X}\n")
            day = 24 * 3600
            start, end = (time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - n * day))
                          for n in (2, 1))
            openssl("ca", "-batch", "-config", ext, "-extensions", "leaf", "-cert", self.ca,
                    "-keyfile", self.ca_key, "-in", csr, "-out", cert, "-notext",
                    "-startdate", start, "-enddate", end, cwd=self.dir)
        else:
            openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                    "-set_serial", str(self.serial), "-days", "1", "-extfile", ext, "-out", cert,
                    cwd=self.dir)
        return cert, key


def secret_yaml(name, cert=None, key=None, bundle=None):
    text = f"  - name: {name}\n"
    if cert:
        text += f"    certificate_chain_file: {cert}\n    private_key_file: {key}\n"
    if bundle:
        text += f"    trust_bundle_file: {bundle}\n"
    return text


def tls_listener(name, port, tls, protocol="PROTOCOL_HTTP", route="app-routes", extra=""):
    text = (f"  - name: {name}\n    address: 127.0.0.1:{port}\n    direction: INBOUND\n"
            f"    protocol: {protocol}\n    tls: {tls}\n")
    if protocol == "PROTOCOL_TCP":
        text += f"    tcp_cluster: {route}\n"
    else:
        text += f"    route_config_name: {route}\n"
    return text + extra


def plain_listener(name, port, protocol="PROTOCOL_HTTP", route="app-routes", extra=""):
    text = (f"  - name: {name}\n    address: 127.0.0.1:{port}\n    direction: OUTBOUND\n"
            f"    protocol: {protocol}\n")
    if protocol == "PROTOCOL_TCP":
        text += f"    tcp_cluster: {route}\n"
    else:
        text += f"    route_config_name: {route}\n"
    return text + extra


def config(listeners, clusters, routes="", secrets=""):
    text = "static_resources:\n  listeners:\n" + listeners + "  clusters:\n" + clusters
    if routes:
        text += "  routes:\n" + routes
    if secrets:
        text += "  secrets:\n" + secrets
    return text


def curl_status(*args):
    """Runs curl; returns (exit code, http code, body, http version)."""
    out = tempfile.NamedTemporaryFile(delete=False, dir=os.environ.get("TEST_TMPDIR"))
    out.close()
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", out.name,
                        "-w", "%{http_code} %{http_version}", *args],
                       capture_output=True, text=True)
    with open(out.name) as f:
        body = f.read()
    os.unlink(out.name)
    code, _, version = r.stdout.partition(" ")
    return r.returncode, int(code or 0), body, version


class TlsTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.pki = Pki(os.path.join(cls.tmp, "pki"))
        cls.server_cert, cls.server_key = cls.pki.leaf("server", SERVER_ID)
        cls.client_cert, cls.client_key = cls.pki.leaf("client", CLIENT_ID, dns=None)
        cls.intruder_cert, cls.intruder_key = cls.pki.leaf("intruder", INTRUDER_ID, dns=None)
        # Same names, another CA: verifies nowhere.
        cls.rogue = Pki(os.path.join(cls.tmp, "rogue"), ca_name="rogue-ca")
        cls.rogue_cert, cls.rogue_key = cls.rogue.leaf("rogue-client", CLIENT_ID, dns=None)
        cls.expired_cert, cls.expired_key = cls.pki.leaf("expired-client", CLIENT_ID, dns=None,
                                                         expired=True)

    def setUp(self):
        self.work = tempfile.mkdtemp(dir=self.tmp)
        self.sidecars = []
        self.app = HttpUpstream("app")

    def tearDown(self):
        for s in self.sidecars:
            s.stop()
        self.app.close()

    def start(self, yaml_text, *args, **kwargs):
        workdir = tempfile.mkdtemp(dir=self.work)
        s = sidecar_test.Sidecar(workdir, yaml_text, *args, **kwargs)
        self.sidecars.append(s)
        return s

    def server_secret(self, name="server-cert"):
        return secret_yaml(name, self.server_cert, self.server_key, self.pki.ca)

    def https(self, port, *args, path="/hello"):
        return curl_status("--cacert", self.pki.ca, "--resolve", f"localhost:{port}:127.0.0.1",
                           *args, f"https://localhost:{port}{path}")

    def assert_plaintext_closed(self, port):
        """A plaintext client's bytes are answered by the connection closing."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"plaintext")
            try:
                self.assertEqual(conn.recv(100), b"")
            except ConnectionResetError:
                pass

    def rejected(self, sidecar, reason, name="meshlet_downstream_cx_rejected_total"):
        return sum(int(line.rpartition(": ")[2])
                   for line in sidecar.stat_lines(name)
                   if f'reason="{reason}"' in line)

    def handshake_failures(self, sidecar, reason):
        return self.rejected(sidecar, reason, name="meshlet_downstream_tls_handshake_fail_total")


class ListenerTlsTest(TlsTestCase):
    def test_permissive_serves_https_h1_h2_and_plaintext_on_one_port(self):
        port = free_port()
        log = os.path.join(self.work, "access.log")
        sidecar = self.start(config(
            tls_listener("inbound", port, "{mode: PERMISSIVE, secret_name: server-cert}"),
            static_cluster("app", self.app.port), app_routes(), self.server_secret()),
            "--access-log=" + log)

        code, status, body, version = self.https(port, "--http1.1")
        self.assertEqual((code, status, version), (0, 200, "1.1"), body)
        headers = json.loads(body)["headers"]
        self.assertEqual(headers["x-forwarded-proto"], "https")
        self.assertNotIn("x-meshlet-peer-identity", headers)  # no client certificate

        code, status, body, version = self.https(port, "--http2")
        self.assertEqual((code, status, version), (0, 200, "2"), body)
        self.assertEqual(json.loads(body)["path"], "/hello")

        # The same port still takes plaintext (HTTP/1.1 and h2c prior knowledge).
        code, status, body, _ = curl_status(f"http://127.0.0.1:{port}/plain")
        self.assertEqual((code, status), (0, 200), body)
        self.assertEqual(json.loads(body)["headers"]["x-forwarded-proto"], "http")
        code, status, _, version = curl_status("--http2-prior-knowledge",
                                               f"http://127.0.0.1:{port}/plain")
        self.assertEqual((code, status, version), (0, 200, "2"))

        self.assertEqual(sidecar.stat("meshlet_downstream_tls_handshakes_total"), 2)
        with open(log) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(len(lines), 4)
        self.assertEqual({l["downstream_peer_identity"] for l in lines}, {""})

    def test_openssl_s_client_negotiates_h2_and_verifies(self):
        port = free_port()
        self.start(config(
            tls_listener("inbound", port, "{mode: PERMISSIVE, secret_name: server-cert}"),
            static_cluster("app", self.app.port), app_routes(), self.server_secret()))
        for alpn in ("h2", "http/1.1"):
            r = subprocess.run(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                 "localhost", "-alpn", alpn, "-CAfile", self.pki.ca, "-verify_return_error"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(f"ALPN protocol: {alpn}", r.stdout)
            self.assertIn("Verify return code: 0 (ok)", r.stdout)
            pem = r.stdout[r.stdout.index("-----BEGIN CERTIFICATE-----"):
                           r.stdout.index("-----END CERTIFICATE-----")]
            sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"],
                                  input=pem + "-----END CERTIFICATE-----\n",
                                  capture_output=True, text=True).stdout
            self.assertIn(SERVER_ID, sans)
            self.assertIn("DNS:localhost", sans)

    def test_strict_requires_an_allowed_client_identity(self):
        port = free_port()
        log = os.path.join(self.work, "access.log")
        sidecar = self.start(config(
            tls_listener("inbound", port,
                         f'{{mode: STRICT, secret_name: server-cert, allowed_peer_ids: ["{CLIENT_ID}"]}}'),
            static_cluster("app", self.app.port), app_routes(), self.server_secret()),
            "--access-log=" + log)

        # Plaintext is refused before any byte reaches the app.
        code, status, _, _ = curl_status(f"http://127.0.0.1:{port}/plain")
        self.assertNotEqual(code, 0)
        self.assertTrue(wait_for(lambda: self.rejected(sidecar, "plaintext_refused") == 1))

        # TLS without a client certificate, with one of another CA, with a wrong identity.
        self.assertNotEqual(self.https(port)[0], 0)
        self.assertNotEqual(self.https(port, "--cert", self.rogue_cert, "--key", self.rogue_key)[0],
                            0)
        self.assertNotEqual(
            self.https(port, "--cert", self.intruder_cert, "--key", self.intruder_key)[0], 0)
        self.assertTrue(wait_for(lambda: self.rejected(sidecar, "tls_handshake_error") == 3))

        # The allowed identity gets through; the app learns who called, and cannot be lied to.
        for flag, version in (("--http1.1", "1.1"), ("--http2", "2")):
            code, status, body, got = self.https(
                port, flag, "--cert", self.client_cert, "--key", self.client_key,
                "-H", f"x-meshlet-peer-identity: {INTRUDER_ID}")
            self.assertEqual((code, status, got), (0, 200, version), body)
            self.assertEqual(json.loads(body)["headers"]["x-meshlet-peer-identity"], CLIENT_ID)
        with open(log) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual([l["downstream_peer_identity"] for l in lines], [CLIENT_ID, CLIENT_ID])

    def test_refused_clients_are_told_why_and_counted(self):
        """Each refused client gets the TLS alert that says why (RFC 8446 §6.2), as
        `openssl s_client` prints it, instead of a bare close; each refusal is counted by reason
        and logged once a minute per client address."""
        port = free_port()
        sidecar = self.start(config(
            tls_listener("inbound", port,
                         f'{{mode: STRICT, secret_name: server-cert, allowed_peer_ids: ["{CLIENT_ID}"]}}'),
            static_cluster("app", self.app.port), app_routes(), self.server_secret()))
        # (case, client certificate, alert printed under TLS 1.3 and TLS 1.2, counted reason)
        cases = [
            ("identity not allowed", (self.intruder_cert, self.intruder_key),
             ("tlsv1 alert access denied",) * 2, "identity_denied"),
            # TLS 1.2 has no certificate_required alert; BoringSSL sends handshake_failure.
            ("no certificate", None,
             ("tlsv13 alert certificate required", "sslv3 alert handshake failure"),
             "no_certificate"),
            ("untrusted CA", (self.rogue_cert, self.rogue_key), ("tlsv1 alert unknown ca",) * 2,
             "untrusted"),
            ("expired", (self.expired_cert, self.expired_key),
             ("sslv3 alert certificate expired",) * 2, "expired"),
        ]
        refused = 0
        for version, index in (("-tls1_3", 0), ("-tls1_2", 1)):
            for name, cert, alerts, reason in cases:
                with self.subTest(version=version, case=name):
                    before = self.handshake_failures(sidecar, reason)
                    args = ["-cert", cert[0], "-key", cert[1]] if cert else []
                    # -ign_eof: keep reading after the handshake (TLS 1.3 clients finish first
                    # and learn of the refusal on their next read).
                    r = subprocess.run(
                        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", version,
                         "-servername", "localhost", "-CAfile", self.pki.ca, "-ign_eof", *args],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
                    self.assertNotEqual(r.returncode, 0)
                    self.assertIn(alerts[index], r.stderr)
                    self.assertNotIn("unexpected eof", r.stderr)
                    refused += 1
                    self.assertTrue(wait_for(
                        lambda: self.handshake_failures(sidecar, reason) == before + 1),
                        sidecar.stat_lines("meshlet_downstream_tls_handshake_fail_total"))
        self.assertEqual(self.rejected(sidecar, "tls_handshake_error"), refused)
        self.assertEqual(sidecar.stat("meshlet_downstream_tls_handshake_fail_total"), refused)

        # Python's ssl module sees the alert too, here from another client address.
        ctx = ssl.create_default_context(cafile=self.pki.ca)
        with socket.create_connection(("127.0.0.1", port), timeout=10,
                                      source_address=("127.0.0.2", 0)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
                with self.assertRaises(ssl.SSLError) as raised:
                    conn.recv(1)  # TLS 1.3: the client finished its handshake first
                self.assertIn("CERTIFICATE_REQUIRED", str(raised.exception))

        # One log line per client address within the minute, with what it presented and the
        # alert it was sent; the refusals that followed from 127.0.0.1 are only counted.
        def refusal_lines():
            return [l for l in sidecar.log().splitlines()
                    if "listener inbound: TLS handshake from" in l]
        self.assertTrue(wait_for(lambda: len(refusal_lines()) == 2), sidecar.log())
        first, second = refusal_lines()
        self.assertIn(" info ", first)
        self.assertIn("TLS handshake from 127.0.0.1:", first)
        self.assertIn(f"failed: identity_denied, peer {INTRUDER_ID}, "
                      f'sent alert "access denied": peer identity {INTRUDER_ID} is not allowed',
                      first)
        self.assertIn("TLS handshake from 127.0.0.2:", second)
        self.assertIn('failed: no_certificate, sent alert "certificate required"', second)

    def test_rate_limit_per_caller_identity(self):
        # A bucket of 2 requests (no refill, so the test is exact at any speed) for each client
        # certificate's SPIFFE id: one caller spending its budget leaves the other's untouched.
        # Two callers tracked at most: the third evicts the least recently used.
        port = free_port()
        sidecar = self.start(config(
            tls_listener("inbound", port, "{mode: PERMISSIVE, secret_name: server-cert}",
                         extra="    rate_limit: {burst: 2, per_principal: true, "
                               "max_principals: 2}\n"),
            static_cluster("app", self.app.port), app_routes(), self.server_secret()))
        client = ("--cert", self.client_cert, "--key", self.client_key)
        intruder = ("--cert", self.intruder_cert, "--key", self.intruder_key)
        statuses = [self.https(port, *client)[1] for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 429])
        # The limited caller is told when to come back (capped at an hour when it never will).
        r = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", "--cacert", self.pki.ca,
                            "--resolve", f"localhost:{port}:127.0.0.1", *client,
                            f"https://localhost:{port}/hello"], capture_output=True, text=True)
        self.assertRegex(r.stdout, r"^HTTP/\S+ 429")
        self.assertIn("retry-after: 3600", r.stdout.lower())
        # The other identity has its own two requests; callers without a certificate share one
        # more bucket.
        self.assertEqual([self.https(port, *intruder)[1] for _ in range(3)], [200, 200, 429])
        self.assertEqual([self.https(port)[1] for _ in range(3)], [200, 200, 429])
        flags = sum(int(line.rpartition(": ")[2])
                    for line in sidecar.stat_lines("meshlet_http_response_flags_total")
                    if 'flag="RL"' in line)
        self.assertEqual(flags, 4)
        # What the limiter tracks is visible: two callers kept, the first one evicted.
        series = 'meshlet_ratelimit_principals{scope="listener",name="inbound"}: 2'
        self.assertIn(series, sidecar.stat_lines("meshlet_ratelimit_principals"))
        self.assertEqual(sidecar.stat("meshlet_ratelimit_principal_evictions_total"), 1)

    def test_authorization_allows_one_identity_and_denies_before_routing(self):
        port = free_port()
        log = os.path.join(self.work, "access.log")
        authorization = (
            "    authorization:\n      policies:\n"
            f'      - {{name: client-only, rules: [{{principals: ["{CLIENT_ID}"]}}]}}\n'
            '      - {name: no-admin, action: DENY, rules: [{paths: ["/admin/*"]}]}\n')
        sidecar = self.start(config(
            tls_listener("inbound", port, "{mode: PERMISSIVE, secret_name: server-cert}",
                         extra=authorization),
            static_cluster("app", self.app.port), app_routes(), self.server_secret()),
            "--access-log=" + log)
        client = ("--cert", self.client_cert, "--key", self.client_key)
        intruder = ("--cert", self.intruder_cert, "--key", self.intruder_key)

        for flag in ("--http1.1", "--http2"):
            code, status, body, _ = self.https(port, flag, *client)
            self.assertEqual((code, status), (0, 200), body)
            code, status, body, _ = self.https(port, flag, *intruder)
            self.assertEqual((code, status), (0, 403), body)
            self.assertIn("RBAC: access denied", body)  # the sidecar's reply, not the app's
        # DENY wins over the ALLOW that matches the client.
        self.assertEqual(self.https(port, *client, path="/admin/users?x=1")[:2], (0, 403))
        # Plaintext on the PERMISSIVE port has no identity: not in the ALLOW list.
        self.assertEqual(curl_status(f"http://127.0.0.1:{port}/hello")[:2], (0, 403))
        # A caller with a mesh certificate learns which proxy refused it and why; one outside
        # the mesh (plaintext) does not.
        code, status, text, _ = self.https(port, "-i", *intruder)
        self.assertEqual((code, status), (0, 403), text)
        self.assertRegex(text, r"(?im)^x-meshlet-error: -; flag=AZ; reason=RBAC: access denied")
        code, status, text, _ = curl_status("-i", f"http://127.0.0.1:{port}/hello")
        self.assertEqual((code, status), (0, 403), text)
        self.assertNotIn("x-meshlet-error", text.lower())

        self.assertEqual(sidecar.stat("meshlet_http_rbac_allowed_total"), 2)
        self.assertEqual(sidecar.stat("meshlet_http_rbac_denied_total"), 6)
        with open(log) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(sorted(l["response_flags"] for l in lines), ["-"] * 2 + ["AZ"] * 6)
        self.assertEqual({l.get("error_reason") for l in lines},
                         {None, "RBAC: access denied"})

    def test_strict_tcp_listener_terminates_tls(self):
        echo = EchoServer()
        self.addCleanup(echo.close)
        port = free_port()
        sidecar = self.start(config(
            tls_listener("db", port, "{mode: STRICT, secret_name: server-cert}",
                         protocol="PROTOCOL_TCP", route="echo"),
            static_cluster("echo", echo.port), secrets=self.server_secret()))
        context = ssl.create_default_context(cafile=self.pki.ca)
        context.load_cert_chain(self.client_cert, self.client_key)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as conn:
                conn.sendall(b"over tls")
                self.assertEqual(conn.recv(100), b"over tls")
        self.assertEqual(sidecar.stat("meshlet_downstream_tls_handshakes_total"), 1)
        # Plaintext on a STRICT TCP listener never reaches the upstream.
        self.assert_plaintext_closed(port)
        self.assertTrue(wait_for(lambda: self.rejected(sidecar, "plaintext_refused") == 1))
        self.assertEqual(echo.received, len(b"over tls"))

    def test_tcp_connections_are_authorized_once_per_connection(self):
        echo = EchoServer()
        self.addCleanup(echo.close)
        port = free_port()
        # ALLOW the client's namespace on port 5432 (the destination port the listener declares),
        # DENY a rule that also names a path: on a connection the path is unknown, so the DENY
        # applies on its other field (the intruder's namespace) alone.
        authorization = (
            "    destination_port: 5432\n"
            "    authorization:\n      policies:\n"
            "      - {name: default-ns, rules: [{namespaces: [default], ports: [5432]}]}\n"
            "      - {name: no-other, action: DENY, rules: [{namespaces: [other], "
            "paths: [\"/admin/*\"]}]}\n")
        sidecar = self.start(config(
            tls_listener("db", port, "{mode: PERMISSIVE, secret_name: server-cert}",
                         protocol="PROTOCOL_TCP", route="echo", extra=authorization),
            static_cluster("echo", echo.port), secrets=self.server_secret()))

        def exchange(cert, key):
            context = ssl.create_default_context(cafile=self.pki.ca)
            context.load_cert_chain(cert, key)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as conn:
                    conn.sendall(b"ping")
                    try:
                        return conn.recv(100)
                    except (ConnectionResetError, ssl.SSLError):
                        return b""

        self.assertEqual(exchange(self.client_cert, self.client_key), b"ping")
        self.assertEqual(exchange(self.intruder_cert, self.intruder_key), b"")
        # Plaintext on the PERMISSIVE port has no identity: no ALLOW rule matches it.
        self.assert_plaintext_closed(port)
        self.assertTrue(wait_for(lambda: self.rejected(sidecar, "rbac_denied") == 2))
        self.assertEqual(echo.received, len(b"ping"))

    def test_secret_that_does_not_load_is_a_configuration_error(self):
        bad = os.path.join(self.work, "bad.pem")
        with open(bad, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                    "-----END CERTIFICATE-----\n")
        path = os.path.join(self.work, "bad.yaml")
        with open(path, "w") as f:
            f.write(config(
                tls_listener("inbound", free_port(), "{mode: PERMISSIVE, secret_name: broken}"),
                static_cluster("app", self.app.port), app_routes(),
                secret_yaml("broken", bad, self.server_key)))
        r = subprocess.run([sidecar_test.SIDECAR, "--config", path], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn('listener "inbound": tls (secret "broken")', r.stderr)

    def test_reload_rotates_the_certificate_for_new_connections(self):
        port = free_port()
        cert = os.path.join(self.work, "cert.pem")
        key = os.path.join(self.work, "key.pem")
        for src, dst in ((self.server_cert, cert), (self.server_key, key)):
            with open(src) as f, open(dst, "w") as g:
                g.write(f.read())
        sidecar = self.start(config(
            tls_listener("inbound", port, "{mode: PERMISSIVE, secret_name: rotating}",
                         extra="    detect_timeout: 30s\n"),
            static_cluster("app", self.app.port), app_routes(),
            secret_yaml("rotating", cert, key, self.pki.ca)))

        def serial():
            context = ssl.create_default_context(cafile=self.pki.ca)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as conn:
                    der = conn.getpeercert(binary_form=True)
            return subprocess.run(["openssl", "x509", "-noout", "-serial", "-inform", "DER"],
                                  input=der, capture_output=True).stdout.decode().strip()

        before = serial()
        # A connection open across the rotation keeps working.
        context = ssl.create_default_context(cafile=self.pki.ca)
        held = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                   server_hostname="localhost")
        new_cert, new_key = self.pki.leaf("server-rotated", SERVER_ID)
        for src, dst in ((new_cert, cert), (new_key, key)):
            with open(src) as f, open(dst, "w") as g:
                g.write(f.read())
        applied = sidecar.stat("meshlet_worker_config_updates_total")
        sidecar.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(
            lambda: sidecar.stat("meshlet_worker_config_updates_total") >= applied + 2))
        after = serial()
        self.assertNotEqual(before, after)
        held.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", held.recv(4096))
        held.close()


class UpstreamTlsTest(TlsTestCase):
    """A plaintext outbound sidecar originating mTLS to an inbound sidecar with STRICT mTLS."""

    def start_inbound(self):
        port = free_port()
        inbound = self.start(config(
            tls_listener("inbound", port,
                         f'{{mode: STRICT, secret_name: server-cert, allowed_peer_ids: ["{CLIENT_ID}"]}}'),
            static_cluster("app", self.app.port), app_routes(), self.server_secret()))
        return inbound, port

    def outbound_config(self, inbound_port, out_port, tcp_port, expected=SERVER_ID, extra=""):
        def tls(protocol_line=""):
            return (f"{protocol_line}    tls: {{enabled: true, secret_name: client-cert, sni: localhost,"
                    f' expected_peer_ids: ["{expected}"]}}\n')
        clusters = (static_cluster("mesh-h1", inbound_port, extra=tls())
                    + static_cluster("mesh-h2", inbound_port,
                                     extra=tls("    protocol: UPSTREAM_HTTP2\n"))
                    + static_cluster("mesh-tcp", inbound_port, extra=tls()) + extra)
        routes = """  - name: out-routes
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - match: {prefix: /h2}
        route: {cluster: mesh-h2}
      - match: {prefix: /}
        route: {cluster: mesh-h1}
"""
        return config(plain_listener("outbound", out_port, route="out-routes")
                      + plain_listener("outbound-tcp", tcp_port, protocol="PROTOCOL_TCP",
                                       route="mesh-tcp"),
                      clusters, routes,
                      secret_yaml("client-cert", self.client_cert, self.client_key, self.pki.ca))

    def test_mesh_mtls_http1_http2_and_tcp(self):
        inbound, inbound_port = self.start_inbound()
        out_port, tcp_port = free_port(), free_port()
        outbound = self.start(self.outbound_config(inbound_port, out_port, tcp_port))
        for path, version in (("/h1", "1.1"), ("/h2", "2")):
            code, status, body, _ = curl_status(f"http://127.0.0.1:{out_port}{path}")
            self.assertEqual((code, status), (0, 200), body)
            headers = json.loads(body)["headers"]
            self.assertEqual(headers["x-meshlet-peer-identity"], CLIENT_ID)
            self.assertEqual(headers["x-forwarded-proto"], "http")  # set by the outbound hop
        self.assertEqual(inbound.stat("meshlet_downstream_tls_handshakes_total"), 2)
        protocols = inbound.stat_lines("meshlet_downstream_cx_protocol_total")
        self.assertTrue(any('protocol="http2"' in l and l.endswith(": 1") for l in protocols),
                        protocols)
        # TCP proxy with TLS origination: an HTTP/1.1 request as opaque bytes.
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as conn:
            conn.sendall(b"GET /tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := conn.recv(4096):
                received += chunk
        self.assertIn(b"200 OK", received)
        self.assertIn(CLIENT_ID.encode(), received)

    def tcp_round_trip(self, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := conn.recv(4096):
                received += chunk
        return received

    def test_reconnections_resume_their_tls_session_and_keep_the_identity(self):
        inbound, inbound_port = self.start_inbound()
        out_port, tcp_port = free_port(), free_port()
        self.start(self.outbound_config(inbound_port, out_port, tcp_port))
        # Every proxied TCP connection opens its own upstream mTLS connection.
        for _ in range(3):
            received = self.tcp_round_trip(tcp_port)
            self.assertIn(b"200 OK", received)
            # A resumed session still tells the app who called.
            self.assertIn(CLIENT_ID.encode(), received)
        self.assertEqual(inbound.stat("meshlet_downstream_tls_handshakes_total"), 3)
        self.assertEqual(inbound.stat("meshlet_downstream_tls_resumed_total"), 2)

    def test_session_resumption_can_be_disabled(self):
        port = free_port()
        inbound = self.start(config(
            tls_listener("inbound", port,
                         f'{{mode: STRICT, secret_name: server-cert, allowed_peer_ids: ["{CLIENT_ID}"],'
                         ' disable_session_resumption: true}'),
            static_cluster("app", self.app.port), app_routes(), self.server_secret()))
        out_port, tcp_port = free_port(), free_port()
        self.start(self.outbound_config(port, out_port, tcp_port))
        for _ in range(2):
            self.assertIn(b"200 OK", self.tcp_round_trip(tcp_port))
        self.assertEqual(inbound.stat("meshlet_downstream_tls_handshakes_total"), 2)
        self.assertEqual(inbound.stat("meshlet_downstream_tls_resumed_total"), 0)

    def test_wrong_expected_peer_id_fails_with_503(self):
        _, inbound_port = self.start_inbound()
        out_port, tcp_port = free_port(), free_port()
        log = os.path.join(self.work, "out.log")
        outbound = self.start(self.outbound_config(
            inbound_port, out_port, tcp_port, expected=f"spiffe://{TRUST_DOMAIN}/ns/x/sa/nobody"),
            "--access-log=" + log)
        code, status, _, _ = curl_status(f"http://127.0.0.1:{out_port}/h1")
        self.assertEqual((code, status), (0, 503))
        with open(log) as f:
            self.assertIn("UF", json.loads(f.readline())["response_flags"])
        clusters = json.loads(outbound.get("/clusters")[1])
        fails = {c["name"]: c["hosts"][0]["cx_connect_fail"] for c in clusters["clusters"]}
        self.assertGreaterEqual(fails["mesh-h1"], 1)

    def https_upstream(self, cert=None, key=None):
        """Python's ssl module serving HTTPS with the server certificate (no client
        certificate): its SANs are DNS localhost and URI SERVER_ID; or `cert` and `key`."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert or self.server_cert, key or self.server_key)
        template = HttpUpstream("tls-app")
        handler = template.server.RequestHandlerClass
        template.close()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server

    def test_non_mesh_upstream_verified_with_ca_file(self):
        server = self.https_upstream()
        def sidecar_for(sni):
            out_port = free_port()
            log = os.path.join(self.work, f"non-mesh-{sni}.log")
            sidecar = self.start(config(
                plain_listener("outbound", out_port),
                static_cluster("app", server.server_address[1],
                               extra=f"    tls: {{enabled: true, ca_file: {self.pki.ca}, "
                                     f"sni: {sni}}}\n"),
                app_routes()), "--access-log=" + log)
            return sidecar, out_port, log

        # The certificate names localhost: accepted.
        _, out_port, _ = sidecar_for("localhost")
        code, status, body, _ = curl_status(f"http://127.0.0.1:{out_port}/external")
        self.assertEqual((code, status), (0, 200), body)
        self.assertEqual(json.loads(body)["upstream"], "tls-app")
        # The same trusted certificate for another host name: refused before any request byte
        # is sent (a connect failure, 503 UF).
        wrong, out_port, log = sidecar_for("api.example.com")
        code, status, body, _ = curl_status(f"http://127.0.0.1:{out_port}/external")
        self.assertEqual((code, status), (0, 503))
        # The body says which certificate was refused, and why.
        self.assertRegex(body, r'^upstream TLS handshake failed: peer certificate \S+ is not for '
                               r'"api\.example\.com" \(subjectAltName\)\n$')
        with open(log) as f:
            line = json.loads(f.readline())
        self.assertIn("UF", line["response_flags"])
        self.assertEqual(line["error_reason"], "upstream TLS handshake failed")
        clusters = json.loads(wrong.get("/clusters")[1])
        self.assertGreaterEqual(clusters["clusters"][0]["hosts"][0]["cx_connect_fail"], 1)

    def test_an_expired_upstream_certificate_is_refused_saying_so(self):
        cert, key = self.pki.leaf("expired-server", SERVER_ID, expired=True)
        server = self.https_upstream(cert, key)
        out_port = free_port()
        self.start(config(
            plain_listener("outbound", out_port),
            static_cluster("app", server.server_address[1],
                           extra=f"    tls: {{enabled: true, ca_file: {self.pki.ca}, "
                                 f"sni: localhost}}\n"),
            app_routes()))
        code, status, body, _ = curl_status(f"http://127.0.0.1:{out_port}/external")
        self.assertEqual((code, status), (0, 503), body)
        self.assertRegex(body, r'^upstream TLS handshake failed: peer certificate \S+ expired at '
                               r'\d{4}-\d\d-\d\dT')

    def test_non_mesh_upstream_verified_by_subject_alt_names_and_an_inline_ca(self):
        # As a BackendTLSPolicy is sent: the CA inline in a Secret (no file on the proxy's
        # machine), SNI the policy's hostname, the certificate checked against the listed
        # subjectAltNames instead of that hostname.
        server = self.https_upstream()
        def inline_ca(name, ca_path):
            with open(ca_path) as f:
                pem = f.read()
            return (f"  - name: {name}\n    trust_bundle_pem: |\n"
                    + "".join(f"      {line}\n" for line in pem.splitlines()))
        def sidecar_for(name, ca, sans):
            out_port = free_port()
            log = os.path.join(self.work, f"sans-{name}.log")
            sans_yaml = ", ".join(sans)
            sidecar = self.start(config(
                plain_listener("outbound", out_port),
                static_cluster("app", server.server_address[1],
                               extra=("    tls: {enabled: true, secret_name: backend-ca, "
                                      f"sni: abc.example.com, subject_alt_names: [{sans_yaml}]}}\n")),
                app_routes(), inline_ca("backend-ca", ca)), "--access-log=" + log)
            return sidecar, out_port, log

        def request(out_port):
            code, status, body, _ = curl_status(f"http://127.0.0.1:{out_port}/external")
            self.assertEqual(code, 0, body)
            return status, body

        # A listed DNS name or URI the certificate carries: accepted, although it does not name
        # the SNI host abc.example.com.
        for name, sans in (("dns", ["{dns: other.example.com}", "{dns: localhost}"]),
                           ("uri", [f'{{uri: "{SERVER_ID}"}}'])):
            sidecar, out_port, _ = sidecar_for(name, self.pki.ca, sans)
            status, body = request(out_port)
            self.assertEqual(status, 200, f"{name}: {body}")
            self.assertEqual(json.loads(body)["upstream"], "tls-app")
            self.assertEqual(sidecar.stat("meshlet_upstream_cx_tls_handshake_fail_total"), 0)

        # Refused before any request byte is sent (503 UF), counted, and the reason logged: a
        # certificate naming none of the subjectAltNames, and one of a CA not trusted.
        refusals = (
            ("wrong-name", self.pki.ca, ["{dns: abc.example.com}", '{uri: "spiffe://x/y"}'],
             "carries none of the subjectAltNames [dns:abc.example.com, uri:spiffe://x/y]"),
            ("wrong-ca", self.rogue.ca, ["{dns: localhost}"],
             "is not issued by a trusted CA"),
        )
        for name, ca, sans, reason in refusals:
            sidecar, out_port, log = sidecar_for(name, ca, sans)
            status, body = request(out_port)
            self.assertEqual(status, 503, name)
            self.assertIn(reason, body, name)
            with open(log) as f:
                self.assertIn("UF", json.loads(f.readline())["response_flags"], name)
            self.assertTrue(wait_for(
                lambda: sidecar.stat("meshlet_upstream_cx_tls_handshake_fail_total") >= 1), name)
            self.assertTrue(wait_for(lambda: reason in sidecar.log()), f"{name}: {sidecar.log()}")

    def test_non_mesh_upstream_needs_a_host_name(self):
        # ca_file alone would accept any certificate the CA ever issued: refused at start.
        path = os.path.join(self.work, "no-sni.yaml")
        with open(path, "w") as f:
            f.write(config(plain_listener("outbound", free_port()),
                           static_cluster("app", free_port(),
                                          extra=f"    tls: {{enabled: true, ca_file: {self.pki.ca}}}\n"),
                           app_routes()))
        r = subprocess.run([sidecar_test.SIDECAR, "--config", path], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("tls.sni: required when the upstream is verified by ca_file alone", r.stderr)


class DetectionTimingTest(TlsTestCase):
    """When a PROTOCOL_AUTO listener with TLS gives up waiting for a connection's first bytes and
    hands it to tcp_cluster (here an echo server, so a misrouted request comes back as itself):
    not while a TLS handshake is under way, not when the client chose HTTP by ALPN, and not when
    the wait ran out while the sidecar was not running (the process stopped, as in a stall of the
    whole machine) — only after real silence. A handshake that never finishes is closed after
    tls_handshake_timeout."""

    DETECT = 0.3  # detect_timeout, seconds

    def setUp(self):
        super().setUp()
        self.echo = EchoServer()
        self.port = free_port()
        self.sidecar = self.start(config(
            tls_listener("inbound", self.port, "{mode: PERMISSIVE, secret_name: server-cert}",
                         protocol="PROTOCOL_AUTO",
                         extra=f"    tcp_cluster: echo\n    detect_timeout: {int(self.DETECT * 1000)}ms\n"
                               "    tls_handshake_timeout: 1500ms\n"),
            static_cluster("app", self.app.port) + static_cluster("echo", self.echo.port),
            app_routes(), self.server_secret()), concurrency=1)

    def connect(self):
        """A TCP connection the sidecar has accepted (its wait for the first bytes has begun)."""
        before = self.sidecar.stat("meshlet_downstream_cx_total")
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.assertTrue(wait_for(lambda: self.sidecar.stat("meshlet_downstream_cx_total") > before))
        time.sleep(0.05)
        return raw

    def tls(self, raw, alpn=None):
        context = ssl.create_default_context(cafile=self.pki.ca)
        if alpn:
            context.set_alpn_protocols([alpn])
        return context.wrap_socket(raw, server_hostname="localhost")

    def assert_served_as_http(self, conn, path):
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        conn.close()
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:200])
        self.assertEqual(json.loads(answer.partition(b"\r\n\r\n")[2])["path"], path)
        self.assertEqual(self.echo.received, 0, "bytes went to the TCP fallback")

    def stalled(self, seconds):
        """Stops the sidecar for `seconds`, far past detect_timeout, then lets it run again."""
        os.kill(self.sidecar.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.sidecar.proc.pid, signal.SIGCONT)

    def test_bytes_after_a_stall_decide_not_the_expired_wait(self):
        # The client is late too (it was stalled as well): its bytes come just after the sidecar
        # resumes, when the expired wait would have sent the connection to tcp_cluster.
        raw = self.connect()
        self.stalled(4 * self.DETECT)
        time.sleep(0.05)
        self.assert_served_as_http(self.tls(raw, alpn="http/1.1"), "/after-stall-tls")

        raw = self.connect()
        self.stalled(4 * self.DETECT)
        time.sleep(0.05)
        self.assert_served_as_http(raw, "/after-stall-plaintext")
        self.assertGreaterEqual(self.sidecar.stat("meshlet_downstream_detect_restarted_late_total"), 2)

    def test_a_client_that_chose_http_by_alpn_is_never_sent_to_tcp(self):
        conn = self.tls(self.connect(), alpn="http/1.1")
        time.sleep(3 * self.DETECT)  # silent after its handshake, past detect_timeout
        self.assert_served_as_http(conn, "/late-first-request")

    def test_silence_still_goes_to_tcp_cluster(self):
        # Without ALPN, silence after the handshake is a server-first protocol's: proxied.
        conn = self.tls(self.connect())
        time.sleep(3 * self.DETECT)
        conn.sendall(b"ping")
        self.assertEqual(conn.recv(100), b"ping")
        conn.close()
        # Plaintext too.
        raw = self.connect()
        time.sleep(3 * self.DETECT)
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(raw.recv(100), b"GET / HTTP/1.1\r\n\r\n")
        raw.close()

    def test_a_handshake_that_never_finishes_is_closed(self):
        raw = self.connect()
        raw.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
        started = time.time()
        self.assertEqual(raw.recv(100), b"")  # closed by the sidecar
        waited = time.time() - started
        raw.close()
        self.assertGreater(waited, 1.0)  # not at detect_timeout: at tls_handshake_timeout
        self.assertEqual(self.rejected(self.sidecar, "tls_handshake_timeout"), 1)
        self.assertEqual(self.echo.received, 0)


class IdlePooledConnectionTest(TlsTestCase):
    """A connection a caller's pool opened and left idle for twice the inbound listener's
    detect_timeout before its first request: mesh mTLS (client certificate, ALPN http/1.1 or h2)
    to a PROTOCOL_AUTO listener with authorization, a tcp_cluster (an echo server: bytes proxied
    there would come back as themselves) and an access log. Its requests get HTTP handling: routed
    to the app, authorized one by one (/admin/* is denied), counted and logged as HTTP."""

    DETECT = 0.3  # detect_timeout, seconds

    def setUp(self):
        super().setUp()
        self.echo = EchoServer()
        self.addCleanup(self.echo.close)
        self.port = free_port()
        self.log = os.path.join(self.work, "access.log")
        authorization = (
            "    authorization:\n      policies:\n"
            f'      - {{name: client-only, rules: [{{principals: ["{CLIENT_ID}"]}}]}}\n'
            '      - {name: no-admin, action: DENY, rules: [{paths: ["/admin/*"]}]}\n')
        self.sidecar = self.start(config(
            tls_listener("inbound", self.port, "{mode: STRICT, secret_name: server-cert}",
                         protocol="PROTOCOL_AUTO",
                         extra=f"    tcp_cluster: echo\n    detect_timeout: "
                               f"{int(self.DETECT * 1000)}ms\n" + authorization),
            static_cluster("app", self.app.port) + static_cluster("echo", self.echo.port),
            app_routes(), self.server_secret()), "--access-log=" + self.log, concurrency=1)

    def idle_connection(self, alpn):
        """An mTLS connection that chose `alpn`, then said nothing for 2 x detect_timeout."""
        context = ssl.create_default_context(cafile=self.pki.ca)
        context.load_cert_chain(self.client_cert, self.client_key)
        context.set_alpn_protocols([alpn])
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        conn = context.wrap_socket(raw, server_hostname="localhost")
        self.assertEqual(conn.selected_alpn_protocol(), alpn)
        time.sleep(2 * self.DETECT)
        return conn

    def assert_http_handling(self, statuses, protocol):
        self.assertEqual(statuses, [200, 403])
        self.assertEqual(self.echo.received, 0, "bytes went to the TCP fallback")
        self.assertEqual(self.app.paths, ["/hello"])
        self.assertEqual(self.sidecar.stat("meshlet_http_rbac_allowed_total"), 1)
        self.assertEqual(self.sidecar.stat("meshlet_http_rbac_denied_total"), 1)
        self.assertEqual(self.rejected(self.sidecar, "detect_timeout"), 0)
        self.assertEqual(self.sidecar.stat("meshlet_http_downstream_rq_total"), 2)
        self.assertTrue(wait_for(lambda: os.path.exists(self.log) and
                                 len(open(self.log).read().splitlines()) == 2))
        with open(self.log) as f:
            lines = [json.loads(line) for line in f]
        # In the order the requests ended (an HTTP/2 denial may end before the other response).
        self.assertEqual(sorted((l["protocol"], l["response_code"], l["response_flags"])
                                for l in lines),
                         [(protocol, 200, "-"), (protocol, 403, "AZ")])

    def test_http1_pooled_connection_idle_past_detect_timeout(self):
        conn = self.idle_connection("http/1.1")
        statuses = []
        for path in ("/hello", "/admin/users"):
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
            response = http.client.HTTPResponse(conn)
            response.begin()
            response.read()
            statuses.append(response.status)
        conn.close()
        self.assert_http_handling(statuses, "HTTP/1.1")

    def test_http2_pooled_connection_idle_past_detect_timeout(self):
        conn = self.idle_connection("h2")
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        h2conn.initiate_connection()
        statuses, ended = {}, set()
        for stream, path in ((1, "/hello"), (3, "/admin/users")):
            h2conn.send_headers(stream, [(":method", "GET"), (":scheme", "https"),
                                         (":authority", "app"), (":path", path)],
                                end_stream=True)
            conn.sendall(h2conn.data_to_send())
            # Each response read to its end: closing earlier would log the other as cut (DC).
            while stream not in ended:
                data = conn.recv(65536)
                self.assertTrue(data, "the connection closed")
                for event in h2conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        statuses[event.stream_id] = int(dict(event.headers)[b":status"])
                    elif isinstance(event, h2.events.StreamEnded):
                        ended.add(event.stream_id)
                conn.sendall(h2conn.data_to_send())
        conn.close()
        self.assert_http_handling([statuses[1], statuses[3]], "HTTP/2")


if __name__ == "__main__":
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
