"""The CA's signing key in a real PKCS#11 token: Debian's SoftHSM2 (docs/security.md, "External
signers"; ADR 0100).

Usage: hsm_signer_test.py CONTROL_PLANE SIDECAR MAKE_CA [unittest args]

A token is initialised in a SoftHSM2 store of the test's own (SOFTHSM2_CONF), the intermediate's
key (ECDSA P-256 from certs/make-ca.sh, or RSA 2048 made here) imported into it with
softhsm2-util, and the key file deleted: the real control plane starts with --ca-cert (the public
chain) and --ca-pkcs11-module/-token/-key-label/-pin-file, and two sidecars get their workload
certificates from it and call each other over mTLS. Shown:
- each certificate is issued by the intermediate and verifies with openssl up to the root;
- meshlet_cp_ca_pkcs11_sign_total counts the token's signatures;
- the key's bytes appear nowhere the control plane writes: its data directory (the store), its
  log, the API's answers (config dump, CA status) and its metrics;
- the PIN is read from a file, not given as an argument (not in /proc/PID/cmdline);
- a wrong PIN, a missing token and a missing key each stop the control plane at start with an
  error that names what is wrong and not the PIN.
SKIP when SoftHSM2 is not installed (./dev installs it) and under AddressSanitizer. About 10 s.
"""

import base64
import os
import shutil
import subprocess
import sys
import unittest

import cp_api
import root_rotation_test
import sidecar_test
from mesh_util import call_service, softhsm_module
from root_rotation_test import RotationHarness
from sidecar_test import wait_for

PIN = "4817-pin-not-default"
SO_PIN = "9921-so-pin"
TOKEN = "meshlet-ca"
KEY_LABEL = "meshlet-intermediate"
INTERMEDIATE = "meshlet CA in HSM"


def key_body(pem_file):
    """The base64 lines of a PEM key and its DER bytes: what must appear nowhere."""
    with open(pem_file) as f:
        lines = [line for line in f.read().splitlines() if line and not line.startswith("-----")]
    return lines, base64.b64decode("".join(lines))


class HsmSignerTest(RotationHarness):
    def setUp(self):
        self.module = softhsm_module()
        if self.module is None or shutil.which("softhsm2-util") is None:
            print("SKIP: SoftHSM2 is not installed (apt-get install softhsm2)", file=sys.stderr)
            self.skipTest("SoftHSM2 is not installed")
        if os.environ.get("ASAN_OPTIONS"):
            # ASan refuses RTLD_DEEPBIND, without which SoftHSM2's OpenSSL calls would bind to
            # the control plane's BoringSSL (pkcs11_signer.cc).
            print("SKIP: SoftHSM2 is not loaded under AddressSanitizer", file=sys.stderr)
            self.skipTest("SoftHSM2 is not loaded under AddressSanitizer")
        super().setUp()
        store = os.path.join(self.tmp, "softhsm")
        os.makedirs(os.path.join(store, "tokens"))
        conf = os.path.join(store, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write(f"directories.tokendir = {store}/tokens\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
        # The control plane inherits it (start_control_plane passes the environment on).
        self.saved_conf = os.environ.get("SOFTHSM2_CONF")
        os.environ["SOFTHSM2_CONF"] = conf
        self.pin_file = os.path.join(self.tmp, "pin")
        with open(self.pin_file, "w") as f:
            f.write(PIN + "\n")
        os.chmod(self.pin_file, 0o600)
        self.softhsm("--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN)

    def tearDown(self):
        super().tearDown()
        if self.saved_conf is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = self.saved_conf

    def softhsm(self, *args):
        r = subprocess.run(["softhsm2-util", *args], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def intermediate(self, algorithm):
        """An intermediate under self.new_root with its key in the token (key file deleted):
        (chain file, the key's base64 lines, its DER)."""
        out = os.path.join(self.tmp, "ca-" + algorithm)
        if algorithm == "ec":
            subprocess.run([root_rotation_test.MAKE_CA, "intermediate", "--root", self.new_root,
                            "--out", out, "--name", INTERMEDIATE], check=True, capture_output=True)
        else:
            os.makedirs(out)
            key, csr, ext = (os.path.join(out, n) for n in ("ca-key.pem", "ca.csr", "ext.cnf"))
            with open(ext, "w") as f:
                f.write("basicConstraints = critical, CA:TRUE, pathlen:0\n"
                        "keyUsage = critical, keyCertSign, cRLSign\n"
                        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n")
            for command in (
                    ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                     key],
                    ["req", "-new", "-sha256", "-key", key, "-subj",
                     f"/O=meshlet/CN={INTERMEDIATE}", "-out", csr],
                    ["x509", "-req", "-sha256", "-days", "30", "-in", csr, "-CA",
                     os.path.join(self.new_root, "root-cert.pem"), "-CAkey",
                     os.path.join(self.new_root, "root-key.pem"), "-CAcreateserial", "-CAserial",
                     os.path.join(out, "serial"), "-extfile", ext, "-out",
                     os.path.join(out, "ca-cert.pem")]):
                subprocess.run(["openssl", *command], check=True, capture_output=True)
            with open(os.path.join(out, "ca-chain.pem"), "w") as f:
                for part in ("ca-cert.pem", None):
                    path = (os.path.join(out, part) if part else
                            os.path.join(self.new_root, "root-cert.pem"))
                    with open(path) as p:
                        f.write(p.read())
        key = os.path.join(out, "ca-key.pem")
        lines, der = key_body(key)
        self.softhsm("--import", key, "--token", TOKEN, "--label", KEY_LABEL, "--id", "a1",
                     "--pin", PIN)
        os.remove(key)  # only the token has it now
        return os.path.join(out, "ca-chain.pem"), lines, der

    def hsm_flags(self, chain, token=TOKEN, key_label=KEY_LABEL, pin_file=None):
        return ["--ca-cert", chain, "--ca-pkcs11-module", self.module, "--ca-pkcs11-token", token,
                "--ca-pkcs11-key-label", key_label, "--ca-pkcs11-pin-file",
                pin_file or self.pin_file]

    def metric(self, name):
        with cp_api.urlopen(f"https://{self.api}/metrics", timeout=5) as r:
            text = r.read().decode()
        values = [float(line.rpartition(" ")[2]) for line in text.splitlines()
                  if line.split("{")[0].split(" ")[0] == name]
        return sum(values), text

    def check_signs_from_token(self, algorithm):
        chain, lines, der = self.intermediate(algorithm)
        self.start_control_plane(*self.hsm_flags(chain))
        with open(os.path.join(self.data, "api-token")) as f:
            self.api_token = f.read().strip()
        with open(f"/proc/{self.cp.pid}/cmdline", "rb") as f:
            self.assertNotIn(PIN.encode(), f.read())
        for service in ("frontend", "backend"):
            self.start_sidecar(service)
        issuer = f"CN={INTERMEDIATE},O=meshlet"
        self.assertTrue(wait_for(lambda: set(self.issuers().values()) == {issuer}, timeout=15),
                        self.diagnostics())
        # Calls both ways over mTLS with those certificates.
        self.assertTrue(wait_for(lambda: all(
            call_service(self.sidecars[a].outbound, b)[0] == 200
            for a, b in (("frontend", "backend"), ("backend", "frontend"))), timeout=15),
            self.diagnostics())
        # Each presented chain verifies with openssl up to the root.
        root = os.path.join(self.new_root, "root-cert.pem")
        for service in self.sidecars:
            self.assertTrue(self.presented_chain_verifies(service, root), service)
        # frontend renews its 6-second certificate from the token too.
        renewed = self.sidecars["frontend"].stat("meshlet_workload_certificate_rotations_total")
        self.assertTrue(wait_for(lambda: self.sidecars["frontend"].stat(
            "meshlet_workload_certificate_rotations_total") >= renewed + 1, timeout=15))
        signatures, metrics = self.metric("meshlet_cp_ca_pkcs11_sign_total")
        self.assertGreaterEqual(signatures, 3, metrics[-3000:])

        # The key's bytes appear nowhere the control plane writes or answers.
        written = []
        for directory, _, files in os.walk(self.data):
            for name in files:
                with open(os.path.join(directory, name), "rb") as f:
                    written.append((os.path.join(directory, name), f.read()))
        with open(self.cp_log, "rb") as f:
            written.append(("log", f.read()))
        written.append(("metrics", metrics.encode()))
        for path in ("/api/v1/config_dump", "/api/v1/ca"):
            try:
                written.append((path, self.api_request("GET", path)))
            except OSError as e:
                written.append((path, str(e).encode()))
        # Private bytes of the DER (a P-256 PKCS#8 key's scalar starts at byte 36; an RSA key
        # ends with its private CRT coefficient) and every base64 line of the PEM.
        secret = der[36:68] if algorithm == "ec" else der[-64:-32]
        leaks = [where for where, data in written
                 if secret in data or any(line.encode() in data for line in lines)]
        self.assertEqual(leaks, [])
        with open(self.cp_log) as f:
            log = f.read()
        self.assertNotIn(PIN, log)
        self.assertIn(f'issuing cluster.local certificates as "{issuer}"', log)
        self.assertIn(f'the key stays in PKCS#11 token "{TOKEN}" (key "{KEY_LABEL}", module '
                      f"{self.module})", log)
        print(f"\n{algorithm}: {int(signatures)} certificates signed in SoftHSM2 "
              f"({self.module})", file=sys.stderr)

    def test_ec_key_in_softhsm(self):
        self.check_signs_from_token("ec")

    def test_rsa_key_in_softhsm(self):
        self.check_signs_from_token("rsa")

    def test_refused_at_start(self):
        chain, _, _ = self.intermediate("ec")
        wrong_pin = os.path.join(self.tmp, "wrong-pin")
        with open(wrong_pin, "w") as f:
            f.write("wrong-pin-7731\n")
        for flags, expected in (
                (self.hsm_flags(chain, pin_file=wrong_pin),
                 f'wrong PIN for PKCS#11 token "{TOKEN}"'),
                (self.hsm_flags(chain, token="no-such-token"),
                 'no PKCS#11 token labelled "no-such-token"'),
                (self.hsm_flags(chain, key_label="no-such-key"),
                 f'no private key labelled "no-such-key" in PKCS#11 token "{TOKEN}"')):
            log = os.path.join(self.tmp, "refused.log")
            with open(log, "w") as out:
                r = subprocess.run([root_rotation_test.CONTROL_PLANE, "--data-dir",
                                    os.path.join(self.tmp, "refused-data"), "--api-address",
                                    "127.0.0.1:0", "--xds-address", "127.0.0.1:0", *flags],
                                   stdout=out, stderr=subprocess.STDOUT, timeout=30)
            with open(log) as f:
                text = f.read()
            self.assertNotEqual(r.returncode, 0, text)
            self.assertIn(expected, text)
            self.assertNotIn("wrong-pin-7731", text)
            self.assertNotIn(PIN, text)


if __name__ == "__main__":
    root_rotation_test.CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    root_rotation_test.MAKE_CA = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
