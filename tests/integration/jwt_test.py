"""JWT authentication at a sidecar's inbound listener against tokens made by a real JWT library,
python3-jwt (PyJWT), with keys from python3-cryptography (docs/security.md "JWT
authentication", ADR 0098).

Usage: jwt_test.py SIDECAR [unittest args]

A sidecar (static configuration) in front of an app, its inbound listener carrying two issuers'
inline JWKS: RSA and EC P-256 keys for https://issuer.test (audience "orders"), an Ed25519 key for
https://other.test (any audience), each copying claims to headers. Shown:
- tokens PyJWT signs with RS256, ES256 and EdDSA reach the app; the `sub` and `groups` claims
  arrive as the configured headers and the token itself does not; a client's own copy of a claim
  header is replaced;
- every common forgery is refused with 401, its reason in the body, counted by outcome in
  meshlet_http_jwt_total: alg "none", HS256 keyed with the RSA public key (key confusion), a
  token signed by a key not in the JWKS (same kid), a tampered payload, expired, not yet valid,
  a wrong audience, an unknown issuer, an unknown kid, a token that is not a JWT;
- a request without a token passes unauthenticated (requiring one is authorization's job) and
  is counted as missing.
SKIP when python3-jwt or python3-cryptography is missing (./dev installs them). About 3 s.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
import unittest

import sidecar_test
from sidecar_test import HttpUpstream, Sidecar, free_port

try:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
except ImportError:  # the SKIP below says what is missing
    jwt = None

ISSUER, OTHER = "https://issuer.test", "https://other.test"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64(n):
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def rsa_jwk(key, kid):
    n = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": int_b64(n.n),
            "e": int_b64(n.e)}


def ec_jwk(key, kid):
    n = key.public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "crv": "P-256", "x": b64url(n.x.to_bytes(32, "big")),
            "y": b64url(n.y.to_bytes(32, "big"))}


def ed_jwk(key, kid):
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64url(raw)}


@unittest.skipIf(jwt is None, "python3-jwt or python3-cryptography is not installed")
class JwtTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.ec = ec.generate_private_key(ec.SECP256R1())
        cls.ed = ed25519.Ed25519PrivateKey.generate()
        cls.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwks = json.dumps({"keys": [rsa_jwk(cls.rsa, "rsa-1"), ec_jwk(cls.ec, "ec-1")]})
        other = json.dumps({"keys": [ed_jwk(cls.ed, "ed-1")]})
        cls.app = HttpUpstream("app")
        cls.port = free_port()
        config = sidecar_test.config_yaml(
            sidecar_test.http_listener("inbound", cls.port, direction="INBOUND") +
            f"""    jwt:
      issuers:
      - issuer: {ISSUER}
        audiences: [orders]
        jwks: {json.dumps(jwks)}
        output_claim_to_headers:
        - {{claim: sub, header: x-jwt-sub}}
        - {{claim: groups, header: x-jwt-groups}}
      - issuer: {OTHER}
        jwks: {json.dumps(other)}
        output_claim_to_headers:
        - {{claim: sub, header: x-jwt-sub}}
""",
            sidecar_test.static_cluster("app", cls.app.port),
            sidecar_test.app_routes())
        workdir = os.path.join(cls.tmp, "sidecar")
        os.makedirs(workdir)
        cls.sidecar = Sidecar(workdir, config)

    @classmethod
    def tearDownClass(cls):
        cls.sidecar.stop()
        cls.app.close()

    def call(self, token=None, headers=None):
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = "Bearer " + token
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/orders", headers=h)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def claims(self, **extra):
        now = int(time.time())
        c = {"iss": ISSUER, "aud": "orders", "sub": "user-17", "groups": "admins",
             "iat": now, "exp": now + 300}
        c.update(extra)
        return {k: v for k, v in c.items() if v is not None}

    def outcome(self, name):
        for line in self.sidecar.stat_lines("meshlet_http_jwt_total"):
            if f'outcome="{name}"' in line:
                return int(float(line.rpartition(" ")[2]))
        return 0

    def assert_refused(self, token, outcome, reason):
        before = self.outcome(outcome)
        status, body = self.call(token)
        self.assertEqual(status, 401, body)
        self.assertIn(reason, body)
        self.assertEqual(self.outcome(outcome), before + 1, outcome)

    def test_tokens_of_each_algorithm_reach_the_app(self):
        for alg, key, kid, claims in (
                ("RS256", self.rsa, "rsa-1", self.claims()),
                ("ES256", self.ec, "ec-1", self.claims()),
                ("EdDSA", self.ed, "ed-1", self.claims(iss=OTHER, aud="anyone"))):
            token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
            before = self.outcome("ok")
            status, body = self.call(token, headers={"x-jwt-sub": "forged"})
            self.assertEqual(status, 200, (alg, body))
            seen = json.loads(body)["headers"]
            self.assertEqual(seen.get("x-jwt-sub"), "user-17", alg)
            self.assertEqual(seen.get("x-jwt-groups"), None if alg == "EdDSA" else "admins", alg)
            self.assertNotIn("authorization", seen, alg)
            self.assertEqual(self.outcome("ok"), before + 1, alg)

    def test_no_token_passes_unauthenticated(self):
        before = self.outcome("missing")
        status, body = self.call(headers={"x-jwt-sub": "forged"})
        self.assertEqual(status, 200, body)
        self.assertNotIn("x-jwt-sub", json.loads(body)["headers"])
        self.assertEqual(self.outcome("missing"), before + 1)

    def test_alg_none_is_refused(self):
        token = jwt.encode(self.claims(), None, algorithm="none")
        self.assert_refused(token, "unsupported_alg", "Jwt")

    def test_hs256_keyed_with_the_rsa_public_key_is_refused(self):
        # PyJWT itself refuses to HMAC with a PEM key, so the forgery is made by hand.
        public_pem = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        body = b64url(json.dumps(self.claims()).encode())
        signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        self.assert_refused(f"{head}.{body}.{b64url(signature)}", "unsupported_alg", "Jwt")

    def test_a_key_not_in_the_jwks_is_refused(self):
        token = jwt.encode(self.claims(), self.stranger, algorithm="RS256",
                           headers={"kid": "rsa-1"})
        self.assert_refused(token, "bad_signature", "Jwt")

    def test_a_tampered_payload_is_refused(self):
        token = jwt.encode(self.claims(), self.rsa, algorithm="RS256", headers={"kid": "rsa-1"})
        head, _, signature = token.split(".")
        forged = b64url(json.dumps(self.claims(sub="root")).encode())
        self.assert_refused(f"{head}.{forged}.{signature}", "bad_signature", "Jwt")

    def test_time_and_audience_and_issuer_are_checked(self):
        now = int(time.time())
        sign = lambda c: jwt.encode(c, self.ec, algorithm="ES256", headers={"kid": "ec-1"})
        self.assert_refused(sign(self.claims(iat=now - 7200, exp=now - 3600)), "expired",
                            "expired")
        self.assert_refused(sign(self.claims(nbf=now + 3600)), "not_yet_valid", "Jwt")
        self.assert_refused(sign(self.claims(aud="payments")), "audience_mismatch", "Audiences")
        self.assert_refused(sign(self.claims(iss="https://evil.test")), "unknown_issuer", "Jwt")
        token = jwt.encode(self.claims(), self.ec, algorithm="ES256", headers={"kid": "ec-9"})
        self.assert_refused(token, "unknown_kid", "Jwt")
        self.assert_refused("not-a-jwt", "malformed", "Jwt")


if __name__ == "__main__":
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
