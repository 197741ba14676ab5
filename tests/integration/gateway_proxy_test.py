"""The meshlet Gateway's proxy (docs/gateway.md, ADR 0099): the sidecar binary started with
`--gateway default/edge` serves the listeners of Gateway default/edge and the HTTPRoutes attached
to them, and calls the meshed backend with mutual TLS under its own workload identity.

Usage: gateway_proxy_test.py CONTROL_PLANE SIDECAR MAKE_CA [unittest args]

The control plane runs with its CA; the GatewayClass `meshlet`, the Gateway `edge` (an HTTP
listener for *.example.com on a free port) and an HTTPRoute `shop` (shop.example.com, /cart to
the Service `backend`) are written through the API. A sidecar `backend` (an app behind mTLS) and a
gateway proxy running as service account edge-meshlet join with join tokens. Shown:
- a plain HTTP client outside the mesh reaches the app through the gateway: the app sees the
  gateway's SPIFFE id as the caller (mesh mTLS on the hop) and the path;
- a path no rule matches is 404 from the gateway, a host no listener takes is answered without
  reaching the app;
- the Gateway's status in the API: Programmed True with the proxy's address;
- a route change (a second rule) is served without restarting anything;
- a proxy running as another service account gets nothing to serve.

test_https_listeners_serve_secrets_by_sni runs the control plane with a fake Kubernetes API
server holding the certificateRefs' Secrets (docs/gateway.md, "HTTPS"):
- two HTTPS listeners on one port: shop.example.com's certificate for that name (SNI), the
  hostless listener's for any other name; a plaintext request there gets no answer;
- a Secret whose key does not match its certificate: the listener's status says
  InvalidCertificateRef with the reason and it is not served; fixed in place, it is served;
- the shop Secret replaced: new handshakes get the new certificate while a connection opened
  before keeps working.
test_allowed_routes_by_namespace_labels: a listener with allowedRoutes from: Selector serves the
route while its namespace (on the fake API) has the label.
test_jwt_and_authorization_at_the_gateway: a RequestAuthentication and an AuthorizationPolicy
naming the Gateway in targetRefs (tokens made with python3-jwt): a valid token reaches the app with
its `sub` in a header and without the token; a forged one is 401 at the gateway with
x-meshlet-error; /cart/admin without a token, or with another user's, is 403; the backend's sidecar
takes none of them. About 35 s for the four.
"""

import base64
import http.client
import json
import os
import socket
import ssl
import sys
import tempfile
import time
import unittest

import root_rotation_test
import sidecar_test
from mesh_util import create_join_token, make_ca, make_server_cert, start_fake_kubernetes
from root_rotation_test import NAMESPACE, RotationHarness, spiffe
from sidecar_test import free_port, wait_for

try:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from jwt_test import ed_jwk
except ImportError:
    jwt = None

GATEWAY_API = "/apis/gateway.networking.k8s.io/v1"


def doc(kind, name, spec, namespace=NAMESPACE):
    metadata = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return json.dumps({"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
                       "metadata": metadata, "spec": spec}).encode()


K8S_TOKEN = "control-plane-own-token"


def read(path):
    with open(path) as f:
        return f.read()


def der(cert_path):
    return ssl.PEM_cert_to_DER_cert(read(cert_path))


class GatewayProxyTest(RotationHarness):
    def setUp(self):
        super().setUp()
        self.fake = None

    def tearDown(self):
        super().tearDown()
        if self.fake is not None:
            self.fake.stop()
    def put(self, plural, name, body, namespaced=True):
        where = f"/namespaces/{NAMESPACE}" if namespaced else ""
        self.api_request("PUT", f"{GATEWAY_API}{where}/{plural}/{name}", body)

    def start_mesh(self, *control_plane_flags):
        """The control plane, the sidecar of the app `backend` and the GatewayClass meshlet:
        (the backend's sidecar, the app's port)."""
        self.start_control_plane(*control_plane_flags)
        with open(os.path.join(self.data, "api-token")) as f:
            self.api_token = f.read().strip()
        backend = self.start_sidecar("backend")
        self.put("gatewayclasses", "meshlet", doc(
            "GatewayClass", "meshlet", {"controllerName": "meshlet.io/gateway-controller"},
            namespace=None), namespaced=False)
        return backend, self.apps[-1].port

    def start_gateway(self, service_account):
        workdir = tempfile.mkdtemp(dir=self.tmp)
        token_file = os.path.join(workdir, "join-token")
        with open(token_file, "w") as f:
            f.write(create_join_token(self.api, self.api_token, service_account, "10m",
                                      NAMESPACE) + "\n")
        # Golden-metrics reports often, so the test sees the gateway's edge soon.
        proxy = sidecar_test.Sidecar(
            workdir, "metrics_report:\n  interval: 0.2s\n", f"--xds={self.ads}", f"--xds-ca={self.server_ca}",
            f"--node-id={service_account}-gw", f"--gateway={NAMESPACE}/edge",
            f"--node-service-account={service_account}", "--node-address=127.0.0.1",
            f"--join-token-file={token_file}", "--cert-ttl=40s", concurrency=1)
        self.sidecars[service_account + "-gw"] = proxy  # beside the app's sidecar of that name
        proxy.name = service_account
        return proxy

    def call(self, port, host, path, headers=None, with_headers=False):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path, headers={"Host": host, **(headers or {})})
            r = conn.getresponse()
            if with_headers:
                return r.status, r.read().decode(errors="replace"), dict(r.getheaders())
            return r.status, r.read().decode(errors="replace")
        except OSError as e:
            return None, str(e)
        finally:
            conn.close()

    def test_gateway_serves_routes_to_meshed_backends(self):
        backend, app_port = self.start_mesh()
        port = free_port()
        self.put("gateways", "edge", doc("Gateway", "edge", {
            "gatewayClassName": "meshlet",
            "listeners": [{"name": "shop", "port": port, "protocol": "HTTP",
                           "hostname": "*.example.com"}]}))
        cart_rule = {"matches": [{"path": {"type": "PathPrefix", "value": "/cart"}}],
                     "backendRefs": [{"name": "backend", "port": app_port}]}
        self.put("httproutes", "shop", doc("HTTPRoute", "shop", {
            "parentRefs": [{"name": "edge"}], "hostnames": ["shop.example.com"],
            "rules": [cart_rule]}))
        gateway = self.start_gateway("edge-meshlet")

        self.assertTrue(wait_for(lambda: self.call(port, "shop.example.com", "/cart/1")[0] == 200,
                                 timeout=15), gateway.log() + backend.log())
        status, body = self.call(port, "shop.example.com", "/cart/1?x=1")
        self.assertEqual(status, 200, body)
        seen = json.loads(body)
        self.assertEqual(seen["path"], "/cart/1?x=1")
        self.assertEqual(seen["headers"].get("x-meshlet-peer-identity"), spiffe("edge-meshlet"))
        self.assertGreater(backend.stat("meshlet_downstream_tls_handshakes_total"), 0)

        # Golden metrics name the hop as the Gateway (gateway:<name>.<namespace>), not the pod.
        def gateway_edges():
            items = json.loads(self.api_request("GET", "/api/v1/stat?window=1m"))["items"]
            return [e for e in items if e["source"] == f"gateway:edge.{NAMESPACE}"]
        self.assertTrue(wait_for(gateway_edges, timeout=10),
                        self.api_request("GET", "/api/v1/stat?window=1m"))
        self.assertIn("backend", gateway_edges()[0]["destination"])

        # Not routed: a path of no rule (the Gateway's 404), a host of no listener.
        served = len(self.apps[-1].paths)
        status, body = self.call(port, "shop.example.com", "/account")
        self.assertEqual(status, 404, body)
        self.assertIn("no route of the Gateway", body)
        status, _ = self.call(port, "shop.example.org", "/cart/1")
        self.assertEqual(status, 404)
        self.assertEqual(len(self.apps[-1].paths), served)

        # The Gateway's status: programmed by the proxy, whose address it names.
        def edge_status():
            return json.loads(self.api_request(
                "GET", f"{GATEWAY_API}/namespaces/{NAMESPACE}/gateways/edge"))["status"]

        def programmed():
            return {c["type"]: c["status"] for c in edge_status()["conditions"]}["Programmed"]
        # Once the proxy reported itself ready.
        self.assertTrue(wait_for(lambda: programmed() == "True", timeout=10),
                        (edge_status(), self.api_request("GET", "/api/v1/workloads")))
        edge = {"status": edge_status()}
        self.assertEqual([a["value"] for a in edge["status"]["addresses"]], ["127.0.0.1"])

        # A route change under the running proxy.
        self.put("httproutes", "shop", doc("HTTPRoute", "shop", {
            "parentRefs": [{"name": "edge"}], "hostnames": ["shop.example.com"],
            "rules": [cart_rule, {
                "matches": [{"path": {"type": "Exact", "value": "/account"}}],
                "backendRefs": [{"name": "backend", "port": app_port}]}]}))
        self.assertTrue(wait_for(lambda: self.call(port, "shop.example.com", "/account")[0] == 200,
                                 timeout=10), gateway.log())

        # Another service account claiming the Gateway is given nothing to serve.
        impostor = self.start_gateway("backend")
        proxies = lambda: json.loads(self.api_request("GET", "/api/v1/proxies"))["items"]
        self.assertTrue(wait_for(lambda: len(proxies()) == 3, timeout=10))
        config = json.loads(self.api_request("GET", "/api/v1/proxies/backend-gw/config"))
        self.assertIn("names no Gateway", json.dumps(config.get("warnings", [])), config)
        self.assertEqual(impostor.get("/listeners")[0], 200)
        self.assertNotIn("gateway|", impostor.get("/listeners")[1])

    def put_secret(self, name, cert, key=None):
        key = key or cert
        self.fake.put("secrets", {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"namespace": NAMESPACE, "name": name},
            "data": {"tls.crt": base64.b64encode(read(cert[0]).encode()).decode(),
                     "tls.key": base64.b64encode(read(key[1]).encode()).decode()}})

    def tls_context(self, ca):
        context = ssl.create_default_context(cafile=ca[0])
        context.check_hostname = False  # the certificate is compared whole below
        return context

    def handshake(self, port, server_name, ca):
        """The certificate the gateway presents for `server_name` (DER), or None."""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with self.tls_context(ca).wrap_socket(raw, server_hostname=server_name) as conn:
                    return conn.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError):
            return None

    def https_call(self, conn, host, path):
        try:
            conn.request("GET", path, headers={"Host": host})
            r = conn.getresponse()
            return r.status, r.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as e:
            return None, str(e)

    def test_https_listeners_serve_secrets_by_sni(self):
        t = self.tmp
        self.fake, kubernetes_flags = start_fake_kubernetes(t, K8S_TOKEN)
        web_ca = make_ca(t, "web-ca")
        shop = make_server_cert(t, "shop", web_ca, "DNS:shop.example.com")
        shop2 = make_server_cert(t, "shop2", web_ca, "DNS:shop.example.com")
        fallback = make_server_cert(t, "fallback", web_ca, "DNS:*.example.net")
        self.put_secret("shop-cert", shop)
        self.put_secret("fallback-cert", fallback)
        self.put_secret("broken-cert", shop, key=fallback)  # the key is another certificate's
        _, app_port = self.start_mesh(*kubernetes_flags, "--kubernetes-discovery=false",
                                      "--kubernetes-policy=false", "--webhook-address=off")
        port, broken_port = free_port(), free_port()
        refs = lambda name: {"certificateRefs": [{"kind": "Secret", "name": name}]}
        self.put("gateways", "edge", doc("Gateway", "edge", {
            "gatewayClassName": "meshlet",
            "listeners": [
                {"name": "shop", "port": port, "protocol": "HTTPS",
                 "hostname": "shop.example.com", "tls": refs("shop-cert")},
                {"name": "any", "port": port, "protocol": "HTTPS", "tls": refs("fallback-cert")},
                {"name": "broken", "port": broken_port, "protocol": "HTTPS",
                 "tls": refs("broken-cert")}]}))
        self.put("httproutes", "shop", doc("HTTPRoute", "shop", {
            "parentRefs": [{"name": "edge"}],
            "rules": [{"backendRefs": [{"name": "backend", "port": app_port}]}]}))
        gateway = self.start_gateway("edge-meshlet")

        # By SNI: the shop listener's certificate for its name, the hostless one's otherwise.
        self.assertTrue(wait_for(lambda: self.handshake(port, "shop.example.com", web_ca)
                                 == der(shop[0]), timeout=15), gateway.log() + read(self.cp_log))
        self.assertEqual(self.handshake(port, "www.example.net", web_ca), der(fallback[0]))
        # A connection kept open across the rotation below (opened here with SNI).
        kept = http.client.HTTPSConnection("127.0.0.1", port, timeout=5)
        kept.sock = self.tls_context(web_ca).wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=5),
            server_hostname="shop.example.com")
        status, body = self.https_call(kept, "shop.example.com", "/cart/1")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["headers"].get("x-meshlet-peer-identity"),
                         spiffe("edge-meshlet"))
        # Plaintext on the HTTPS port is not answered.
        status, _ = self.call(port, "shop.example.com", "/cart/1")
        self.assertIsNone(status)

        # The broken Secret: named in the listener's status, and its port not served.
        def listener(name):
            gw = json.loads(self.api_request(
                "GET", f"{GATEWAY_API}/namespaces/{NAMESPACE}/gateways/edge"))
            for entry in gw["status"]["listeners"]:
                if entry["name"] == name:
                    return {c["type"]: c for c in entry["conditions"]}
            return {}
        resolved = listener("broken")["ResolvedRefs"]
        self.assertEqual((resolved["status"], resolved["reason"]),
                         ("False", "InvalidCertificateRef"), resolved)
        self.assertIn("tls.key does not match", resolved["message"])
        self.assertEqual(listener("shop")["ResolvedRefs"]["status"], "True")
        self.assertIsNone(self.handshake(broken_port, "x.example.net", web_ca))
        self.assertGreaterEqual(self.metric("meshlet_cp_gateway_secrets", 'state="invalid"'), 1)
        # Fixed in place: served without touching the Gateway.
        self.put_secret("broken-cert", fallback)
        self.assertTrue(wait_for(lambda: self.handshake(broken_port, "x.example.net", web_ca)
                                 == der(fallback[0]), timeout=10), gateway.log())

        # The shop Secret rotated: new handshakes get the new certificate; the connection opened
        # before keeps serving requests.
        self.put_secret("shop-cert", shop2)
        self.assertTrue(wait_for(lambda: self.handshake(port, "shop.example.com", web_ca)
                                 == der(shop2[0]), timeout=10), gateway.log())
        status, body = self.https_call(kept, "shop.example.com", "/cart/2")
        self.assertEqual(status, 200, body)
        self.assertEqual(kept.sock.getpeercert(binary_form=True), der(shop[0]))
        kept.close()

    def test_allowed_routes_by_namespace_labels(self):
        """A listener taking routes of namespaces whose labels match (from: Selector) serves the
        route once its namespace has the label, read from the Kubernetes API, and stops when the
        label goes."""
        self.fake, kubernetes_flags = start_fake_kubernetes(self.tmp, K8S_TOKEN)

        def label_namespace(labels):
            self.fake.put("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": NAMESPACE, "labels": labels}})
        label_namespace({"team": "other"})
        _, app_port = self.start_mesh(*kubernetes_flags, "--kubernetes-discovery=false",
                                      "--kubernetes-policy=false", "--webhook-address=off")
        port = free_port()
        self.put("gateways", "edge", doc("Gateway", "edge", {
            "gatewayClassName": "meshlet",
            "listeners": [{"name": "shop", "port": port, "protocol": "HTTP",
                           "allowedRoutes": {"namespaces": {
                               "from": "Selector",
                               "selector": {"matchLabels": {"team": "shop"}}}}}]}))
        self.put("httproutes", "shop", doc("HTTPRoute", "shop", {
            "parentRefs": [{"name": "edge"}],
            "rules": [{"backendRefs": [{"name": "backend", "port": app_port}]}]}))
        gateway = self.start_gateway("edge-meshlet")

        def route_accepted():
            route = json.loads(self.api_request(
                "GET", f"{GATEWAY_API}/namespaces/{NAMESPACE}/httproutes/shop"))
            for parent in route.get("status", {}).get("parents", []):
                return {c["type"]: c for c in parent["conditions"]}["Accepted"]
            return {}
        # Not selected: NotAllowedByListeners, and the proxy answers 404.
        self.assertTrue(wait_for(lambda: route_accepted().get("reason")
                                 == "NotAllowedByListeners", timeout=10), route_accepted())
        self.assertTrue(wait_for(lambda: self.call(port, "shop.example.com", "/")[0] == 404,
                                 timeout=15), gateway.log())
        label_namespace({"team": "shop"})
        self.assertTrue(wait_for(lambda: self.call(port, "shop.example.com", "/")[0] == 200,
                                 timeout=10), gateway.log())
        self.assertEqual(route_accepted().get("status"), "True")
        label_namespace({})
        self.assertTrue(wait_for(lambda: self.call(port, "shop.example.com", "/")[0] == 404,
                                 timeout=10), gateway.log())


    @unittest.skipIf(jwt is None, "python3-jwt or python3-cryptography is not installed")
    def test_jwt_and_authorization_at_the_gateway(self):
        backend, app_port = self.start_mesh()
        port = free_port()
        self.put("gateways", "edge", doc("Gateway", "edge", {
            "gatewayClassName": "meshlet",
            "listeners": [{"name": "shop", "port": port, "protocol": "HTTP"}]}))
        self.put("httproutes", "shop", doc("HTTPRoute", "shop", {
            "parentRefs": [{"name": "edge"}],
            "rules": [{"backendRefs": [{"name": "backend", "port": app_port}]}]}))
        key, other_key = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
        issuer = "https://idp.test"
        edge_ref = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}]

        def meshlet_policy(kind, name, spec):
            plural = {"RequestAuthentication": "requestauthentications",
                      "AuthorizationPolicy": "authorizationpolicies"}[kind]
            self.api_request("PUT", f"/apis/meshlet.io/v1/namespaces/{NAMESPACE}/{plural}/{name}",
                             json.dumps({"apiVersion": "meshlet.io/v1", "kind": kind,
                                         "metadata": {"name": name, "namespace": NAMESPACE},
                                         "spec": spec}).encode())
        meshlet_policy("RequestAuthentication", "edge-jwt", {
            "targetRefs": edge_ref,
            "jwtRules": [{"issuer": issuer, "audiences": ["shop"],
                          "jwks": json.dumps({"keys": [ed_jwk(key, "k1")]}),
                          "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}]}]})
        meshlet_policy("AuthorizationPolicy", "edge-admins", {
            "targetRefs": edge_ref,
            "rules": [{"to": [{"paths": ["/cart/admin*"]}],
                       "from": [{"requestPrincipals": [issuer + "/alice"]}]},
                      {"to": [{"paths": ["/cart/items*"]}]}]})
        gateway = self.start_gateway("edge-meshlet")

        def token(signer=key, **claims):
            payload = {"iss": issuer, "sub": "alice", "aud": "shop",
                       "exp": int(time.time()) + 600, **claims}
            return jwt.encode(payload, signer, algorithm="EdDSA", headers={"kid": "k1"})

        def call(path, bearer=None):
            headers = {"Authorization": "Bearer " + bearer} if bearer else {}
            return self.call(port, "shop.example.com", path, headers, with_headers=True)
        self.assertTrue(wait_for(lambda: call("/cart/admin", token())[0] == 200, timeout=15),
                        call("/cart/admin", token()))
        status, body, _ = call("/cart/admin/1", token())
        seen = json.loads(body)["headers"]
        self.assertEqual(seen.get("x-jwt-sub"), "alice")
        self.assertNotIn("authorization", seen)
        self.assertEqual(seen.get("x-meshlet-peer-identity"), spiffe("edge-meshlet"))
        # A client's own x-jwt-sub never passes; no token on a path the policy leaves open.
        status, body, _ = self.call(port, "shop.example.com", "/cart/items/2",
                                    {"x-jwt-sub": "alice"}, with_headers=True)
        self.assertEqual(status, 200, body)
        self.assertNotIn("x-jwt-sub", json.loads(body)["headers"])
        served = len(self.apps[-1].paths)
        for what, bearer, expected, reason in (
                ("another key", token(signer=other_key), 401, "Jwt verification fails"),
                ("another audience", token(aud="billing"), 401, "Audiences in Jwt are not allowed"),
                ("expired", token(exp=int(time.time()) - 3600), 401, "Jwt is expired"),
                ("no token", None, 403, "RBAC: access denied"),
                ("another user", token(sub="mallory"), 403, "RBAC: access denied")):
            status, body, headers = call("/cart/admin", bearer)
            self.assertEqual(status, expected, (what, body))
            self.assertIn(reason, body, what)
            self.assertIn("x-meshlet-error", {k.lower() for k in headers}, what)
        self.assertEqual(len(self.apps[-1].paths), served)  # none reached the app
        # The policies are the gateway's only: the backend's sidecar has neither.
        gateway_config, backend_config = gateway.get("/config_dump")[1], backend.get(
            "/config_dump")[1]
        self.assertIn("edge-admins", gateway_config)
        self.assertIn(issuer, gateway_config)
        self.assertIn("inbound", backend_config)
        self.assertNotIn("edge-admins", backend_config)
        self.assertNotIn(issuer, backend_config)


if __name__ == "__main__":
    root_rotation_test.CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    root_rotation_test.MAKE_CA = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
