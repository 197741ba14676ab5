"""RequestAuthentication from the control plane: JWT issuers named by policy, their key sets
inline or fetched from a jwksUri by the control plane (docs/security.md "JWT authentication",
ADR 0098), tokens made by a real JWT library (python3-jwt).

Usage: request_authentication_test.py CONTROL_PLANE SIDECAR MAKE_CA [unittest args]

The control plane runs with --jwks-ca-file (a test CA of the issuer's HTTPS server on loopback,
whose certificate names localhost), a 1 s refresh and a 200 ms first retry. A
RequestAuthentication `backend-jwt` selects the sidecar `backend`: issuer https://issuer.test
(audience orders, keys at https://localhost:PORT/keys, `sub` copied to x-jwt-sub) and
https://other.test (an inline Ed25519 JWKS). Callers present a mesh certificate. Shown:
- an RS256 token of issuer.test and an EdDSA token of other.test reach the app, `sub` in
  x-jwt-sub and the token removed; a request without a token passes;
- alg "none", key confusion (HS256 keyed with the RSA public key), a wrong audience and an
  expired token are each 401 with the reason;
- the issuer's server answering 503: counted failed, the last good keys stay (the RS256 token
  still reaches the app);
- the issuer rotating to a new key: a token of the new key is taken once the control plane
  fetched it, the old key's then refused;
- an AuthorizationPolicy on the end user: requestPrincipals (issuer.test's alice) and a claim
  (`when` request.auth.claims[groups] holding admins; a nested one,
  request.auth.claims[realm_access][roles]), each refusing the others with 403, and a
  DENY notRequestPrincipals ["*"] requiring a token on one path; request.auth.presenter (azp)
  and request.auth.audiences on another; request.auth.principal with requestPrincipals on a third;
- policies the API refuses with the field named: a jwksUri that is not https, both jwks and
  jwksUri, an inline JWKS without a usable key, two rules for one issuer.
- an issuer with neither jwksUri nor jwks gets its keys by OpenID Connect discovery (its
  discovery document, then its jwks_uri), not while the document names another issuer.
SKIP when python3-jwt or python3-cryptography is missing. About 15 s.
"""

import hashlib
import hmac
import http.server
import json
import os
import sys
import time
import unittest
import urllib.error

import root_rotation_test
import sidecar_test
from jwt_test import b64url, ed_jwk, rsa_jwk
from mesh_util import make_ca, make_server_cert, make_workload_cert, mtls_get, serve_https
from root_rotation_test import RotationHarness, spiffe
from sidecar_test import wait_for

try:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
except ImportError:
    jwt = None

ISSUER, OTHER = "https://issuer.test", "https://other.test"
PATH = "/apis/meshlet.io/v1/namespaces/default/requestauthentications/"


def answer_json(handler, status, body):
    """Answers the request `handler` (a BaseHTTPRequestHandler) holds with `body` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def policy(name, rules, target="backend"):
    return json.dumps({"apiVersion": "meshlet.io/v1", "kind": "RequestAuthentication",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"target": target, "jwtRules": rules}}).encode()


@unittest.skipIf(jwt is None, "python3-jwt or python3-cryptography is not installed")
class RequestAuthenticationTest(RotationHarness):
    def test_issuers_from_policy_with_fetched_and_inline_keys(self):
        t = self.tmp
        rsa1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ed = ed25519.Ed25519PrivateKey.generate()
        # The issuer's server fails until the first checks below are done.
        served = {"status": 503, "keys": [rsa_jwk(rsa1, "rsa-1")]}
        fetches = []

        class Keys(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fetches.append(self.path)
                answer_json(self, served["status"], {"keys": served["keys"]})

            def log_message(self, *args):
                pass
        web_ca = make_ca(t, "issuer-web-ca")
        server, url = serve_https(Keys, make_server_cert(t, "issuer-web", web_ca,
                                                         san="DNS:localhost"))
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        jwks_uri = url.replace("127.0.0.1", "localhost") + "/keys"

        self.start_control_plane("--jwks-ca-file", web_ca[0], "--jwks-refresh-interval", "1s",
                                 "--jwks-retry-min", "200ms")
        with open(os.path.join(self.data, "api-token")) as f:
            self.api_token = f.read().strip()
        rules = [{"issuer": ISSUER, "audiences": ["orders"], "jwksUri": jwks_uri,
                  "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}]},
                 {"issuer": OTHER, "jwks": json.dumps({"keys": [ed_jwk(ed, "ed-1")]})}]
        self.api_request("PUT", PATH + "backend-jwt", policy("backend-jwt", rules))
        backend = self.start_sidecar("backend")
        mesh_root = (os.path.join(self.data, "ca", "root-cert.pem"),
                     os.path.join(self.data, "ca", "root-key.pem"))
        caller = make_workload_cert(t, "frontend", mesh_root, spiffe("frontend"))

        def call(token=None):
            headers = {"Authorization": "Bearer " + token} if token else {}
            return mtls_get(backend.inbound, *caller, "/who", host="backend", headers=headers)

        now = int(time.time())

        def token(key, alg, kid, issuer=ISSUER, **claims):
            payload = {"iss": issuer, "sub": "alice", "aud": "orders", "exp": now + 600}
            payload.update(claims)
            return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})
        good = token(rsa1, "RS256", "rsa-1")

        # Keys never fetched: the issuer's tokens are refused with that reason, and a client's
        # own copy of the claim's output header is removed all the same.
        def forged_sub():
            status, body = mtls_get(backend.inbound, *caller, "/who", host="backend",
                                    headers={"x-jwt-sub": "admin"})
            return status, json.loads(body)["headers"] if status == 200 else body
        self.assertTrue(wait_for(lambda: call(good)[0] == 401, timeout=15), call(good))
        self.assertIn("Jwks of the issuer are not available", call(good)[1].decode())
        status, headers = forged_sub()
        self.assertEqual(status, 200, headers)
        self.assertNotIn("x-jwt-sub", headers)
        self.assertGreater(self.metric("meshlet_cp_jwks_uris_without_keys"), 0)

        served["status"] = 200
        self.assertTrue(wait_for(lambda: call(good)[0] == 200, timeout=15), call(good))
        status, body = call(good)
        headers = json.loads(body)["headers"]
        self.assertEqual(headers.get("x-jwt-sub"), "alice")
        self.assertNotIn("authorization", headers)
        self.assertIn("/keys", fetches)
        self.assertEqual(call(token(ed, "EdDSA", "ed-1", issuer=OTHER))[0], 200)
        self.assertEqual(call()[0], 200)  # no token: authorization decides

        # Forgeries.
        claims = {"iss": ISSUER, "sub": "mallory", "aud": "orders", "exp": now + 600}
        pem = rsa1.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        # PyJWT refuses to HMAC with a PEM key: the key-confusion forgery is made by hand.
        head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        body = b64url(json.dumps(claims).encode())
        confused = "%s.%s.%s" % (head, body, b64url(hmac.new(pem, f"{head}.{body}".encode(),
                                                             hashlib.sha256).digest()))
        for what, forged, reason in (
                ("alg none", jwt.encode(claims, None, algorithm="none"),
                 "Jwt algorithm is not accepted"),
                ("key confusion", confused, "Jwt algorithm is not accepted"),
                ("audience", token(rsa1, "RS256", "rsa-1", aud="billing"),
                 "Audiences in Jwt are not allowed"),
                ("expired", token(rsa1, "RS256", "rsa-1", exp=now - 3600), "Jwt is expired")):
            status, body = call(forged)
            self.assertEqual(status, 401, what)
            self.assertIn(reason, body.decode(), what)

        # The issuer's server fails: the last good keys stay.
        failed = self.metric("meshlet_cp_jwks_fetches_total", 'result="failed"')
        served["status"] = 503
        self.assertTrue(wait_for(lambda: self.metric("meshlet_cp_jwks_fetches_total",
                                                     'result="failed"') > failed, timeout=10))
        self.assertEqual(call(good)[0], 200)
        with open(self.cp_log) as f:
            self.assertIn(f"jwks: GET {jwks_uri} answered 503; the last good keys stay", f.read())
        # GET /api/v1/jwks (meshctl check) says so: keys held, the failing reads and why.
        state = {i["uri"]: i for i in json.loads(self.api_request("GET", "/api/v1/jwks"))["items"]}
        self.assertTrue(state[jwks_uri]["hasKeys"], state)
        self.assertGreater(state[jwks_uri]["failuresInRow"], 0, state)
        self.assertIn("answered 503", state[jwks_uri]["lastError"])
        self.assertIsNotNone(state[jwks_uri]["lastSuccess"])

        # The issuer rotates its key.
        served.update(status=200, keys=[rsa_jwk(rsa2, "rsa-2")])
        rotated = token(rsa2, "RS256", "rsa-2")
        self.assertTrue(wait_for(lambda: call(rotated)[0] == 200, timeout=15), call(rotated))
        status, body = call(good)
        self.assertEqual(status, 401)
        self.assertIn("Jwt kid matches no key", body.decode())

        # AuthorizationPolicy on the end user: alice of issuer.test anywhere, /admin only with
        # the claim groups holding "admins"; no token, another issuer's alice, another group:
        # refused.
        self.api_request("PUT", "/apis/meshlet.io/v1/namespaces/default/authorizationpolicies/"
                         "backend-users", json.dumps({
                             "apiVersion": "meshlet.io/v1", "kind": "AuthorizationPolicy",
                             "metadata": {"name": "backend-users", "namespace": "default"},
                             "spec": {"target": "backend", "rules": [
                                 {"from": [{"requestPrincipals": [ISSUER + "/alice"]}],
                                  "to": [{"paths": ["/who"]}]},
                                 {"to": [{"paths": ["/admin*"]}],
                                  "when": [{"key": "request.auth.claims[groups]",
                                            "values": ["admins"]}]},
                                 {"to": [{"paths": ["/realm*"]}],
                                  "when": [{"key": "request.auth.claims[realm_access][roles]",
                                            "values": ["admin"]}]},
                                 {"to": [{"paths": ["/partner*"]}],
                                  "when": [{"key": "request.auth.presenter",
                                            "values": ["partner-*"]},
                                           {"key": "request.auth.audiences",
                                            "values": ["orders"]}]},
                                 {"from": [{"requestPrincipals": [ISSUER + "/*"]}],
                                  "to": [{"paths": ["/mine*"]}],
                                  "when": [{"key": "request.auth.principal",
                                            "values": [ISSUER + "/carol",
                                                       OTHER + "/carol"]}]},
                                 {"to": [{"paths": ["/open"]}]}]}}).encode())
        # Istio's way to require a token: DENY notRequestPrincipals ["*"], on /open here.
        self.api_request("PUT", "/apis/meshlet.io/v1/namespaces/default/authorizationpolicies/"
                         "backend-token-required", json.dumps({
                             "apiVersion": "meshlet.io/v1", "kind": "AuthorizationPolicy",
                             "metadata": {"name": "backend-token-required",
                                          "namespace": "default"},
                             "spec": {"target": "backend", "action": "DENY", "rules": [
                                 {"from": [{"notRequestPrincipals": ["*"]}],
                                  "to": [{"paths": ["/open"]}]}]}}).encode())

        def call_path(path, token=None):
            headers = {"Authorization": "Bearer " + token} if token else {}
            return mtls_get(backend.inbound, *caller, path, host="backend", headers=headers)
        self.assertTrue(wait_for(lambda: call_path("/who")[0] == 403, timeout=15),
                        call_path("/who"))
        self.assertEqual(call_path("/who", rotated)[0], 200)
        self.assertEqual(call_path("/who", token(rsa2, "RS256", "rsa-2", sub="bob"))[0], 403)
        self.assertEqual(call_path("/who", token(ed, "EdDSA", "ed-1", issuer=OTHER))[0], 403)
        admin = token(rsa2, "RS256", "rsa-2", sub="bob", groups=["users", "admins"])
        self.assertEqual(call_path("/admin/x", admin)[0], 200)
        self.assertEqual(call_path("/admin/x", token(rsa2, "RS256", "rsa-2",
                                                     groups=["users"]))[0], 403)
        self.assertEqual(call_path("/admin/x")[0], 403)
        # A nested claim: realm_access.roles holding "admin"; the same name at the top is not it.
        self.assertEqual(call_path("/realm/x", token(rsa2, "RS256", "rsa-2", sub="bob",
                                                     realm_access={"roles": ["admin"]}))[0], 200)
        self.assertEqual(call_path("/realm/x", token(rsa2, "RS256", "rsa-2", sub="bob",
                                                     realm_access={"roles": ["user"]}))[0], 403)
        self.assertEqual(call_path("/realm/x", token(rsa2, "RS256", "rsa-2", sub="bob",
                                                     roles=["admin"]))[0], 403)
        # The authorized party (azp) and the audiences (aud) of the token.
        partner = token(rsa2, "RS256", "rsa-2", sub="carol", azp="partner-app")
        self.assertEqual(call_path("/partner/x", partner)[0], 200)
        self.assertEqual(call_path("/partner/x", token(rsa2, "RS256", "rsa-2", sub="carol",
                                                       azp="web-app"))[0], 403)
        self.assertEqual(call_path("/partner/x", token(rsa2, "RS256", "rsa-2", sub="carol"))[0],
                         403)
        # request.auth.principal, ANDed with requestPrincipals: issuer.test's carol only.
        self.assertEqual(call_path("/mine/x", partner)[0], 200)
        self.assertEqual(call_path("/mine/x", admin)[0], 403)  # bob
        self.assertEqual(call_path("/mine/x", token(ed, "EdDSA", "ed-1", issuer=OTHER,
                                                    sub="carol"))[0], 403)
        self.assertEqual(call_path("/mine/x")[0], 403)
        self.assertEqual(call_path("/who", admin)[0], 403)  # bob, not alice
        self.assertTrue(wait_for(lambda: call_path("/open")[0] == 403, timeout=15),
                        call_path("/open"))
        self.assertEqual(call_path("/open", admin)[0], 200)

        # Refused at the API, the field named.
        for name, rules, field in (
                ("plain-http", [{"issuer": ISSUER, "jwksUri": "http://localhost/keys"}],
                 "spec.jwtRules[0].jwksUri"),
                ("both", [{"issuer": ISSUER, "jwksUri": jwks_uri, "jwks": '{"keys": []}'}],
                 "spec.jwtRules[0]"),
                ("no-key", [{"issuer": ISSUER, "jwks": '{"keys": [{"kty": "oct", "k": "AA"}]}'}],
                 "spec.jwtRules[0].jwks"),
                ("twice", [{"issuer": ISSUER, "jwksUri": jwks_uri},
                           {"issuer": ISSUER, "jwksUri": jwks_uri}], "spec.jwtRules[1].issuer")):
            with self.assertRaises(urllib.error.HTTPError) as refused:
                self.api_request("PUT", PATH + name, policy(name, rules))
            self.assertEqual(refused.exception.code, 422, name)
            self.assertIn(field, refused.exception.read().decode(), name)
    def test_keys_by_openid_connect_discovery(self):
        """An issuer with neither jwksUri nor jwks: the control plane reads its discovery
        document, then the keys at its jwks_uri. A document naming another issuer is refused
        (logged, the tokens refused) until it names this one."""
        t = self.tmp
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        served = {"issuer": None}
        paths = []

        class Idp(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                paths.append(self.path)
                if self.path == "/tenant/.well-known/openid-configuration":
                    body = {"issuer": served["issuer"], "jwks_uri": base + "/tenant/keys"}
                elif self.path == "/tenant/keys":
                    body = {"keys": [rsa_jwk(key, "k1")]}
                else:
                    self.send_error(404)
                    return
                answer_json(self, 200, body)

            def log_message(self, *args):
                pass
        web_ca = make_ca(t, "idp-web-ca")
        server, url = serve_https(Idp, make_server_cert(t, "idp-web", web_ca, san="DNS:localhost"))
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        base = url.replace("127.0.0.1", "localhost")
        issuer = base + "/tenant"
        served["issuer"] = "https://impostor.test/tenant"
        self.start_control_plane("--jwks-ca-file", web_ca[0], "--jwks-refresh-interval", "1s",
                                 "--jwks-retry-min", "200ms")
        with open(os.path.join(self.data, "api-token")) as f:
            self.api_token = f.read().strip()
        self.api_request("PUT", PATH + "discovered",
                         policy("discovered", [{"issuer": issuer, "audiences": ["orders"]}]))
        backend = self.start_sidecar("backend")
        mesh_root = (os.path.join(self.data, "ca", "root-cert.pem"),
                     os.path.join(self.data, "ca", "root-key.pem"))
        caller = make_workload_cert(t, "frontend", mesh_root, spiffe("frontend"))
        good = jwt.encode({"iss": issuer, "sub": "alice", "aud": "orders",
                           "exp": int(time.time()) + 600}, key, algorithm="RS256",
                          headers={"kid": "k1"})

        def call():
            return mtls_get(backend.inbound, *caller, "/who", host="backend",
                            headers={"Authorization": "Bearer " + good})
        self.assertTrue(wait_for(lambda: call()[0] == 401, timeout=15), call())
        self.assertIn("Jwks of the issuer are not available", call()[1].decode())
        def logged():
            with open(self.cp_log) as f:
                return "names issuer \"https://impostor.test/tenant\"" in f.read()
        self.assertTrue(wait_for(logged, timeout=10))
        self.assertNotIn("/tenant/keys", paths)  # the keys of an unproven document: not read
        served["issuer"] = issuer
        self.assertTrue(wait_for(lambda: call()[0] == 200, timeout=15), call())
        self.assertIn("/tenant/keys", paths)


if __name__ == "__main__":
    root_rotation_test.CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    root_rotation_test.MAKE_CA = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
