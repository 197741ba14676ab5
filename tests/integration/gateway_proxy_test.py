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
About 10 s.
"""

import http.client
import json
import os
import sys
import tempfile
import unittest

import root_rotation_test
import sidecar_test
from mesh_util import create_join_token
from root_rotation_test import NAMESPACE, RotationHarness, spiffe
from sidecar_test import free_port, wait_for

GATEWAY_API = "/apis/gateway.networking.k8s.io/v1"


def doc(kind, name, spec, namespace=NAMESPACE):
    metadata = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return json.dumps({"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
                       "metadata": metadata, "spec": spec}).encode()


class GatewayProxyTest(RotationHarness):
    def put(self, plural, name, body, namespaced=True):
        where = f"/namespaces/{NAMESPACE}" if namespaced else ""
        self.api_request("PUT", f"{GATEWAY_API}{where}/{plural}/{name}", body)

    def start_gateway(self, service_account):
        workdir = tempfile.mkdtemp(dir=self.tmp)
        token_file = os.path.join(workdir, "join-token")
        with open(token_file, "w") as f:
            f.write(create_join_token(self.api, self.api_token, service_account, "10m",
                                      NAMESPACE) + "\n")
        proxy = sidecar_test.Sidecar(
            workdir, "{}\n", f"--xds={self.ads}", f"--xds-ca={self.server_ca}",
            f"--node-id={service_account}-gw", f"--gateway={NAMESPACE}/edge",
            f"--node-service-account={service_account}", "--node-address=127.0.0.1",
            f"--join-token-file={token_file}", "--cert-ttl=40s", concurrency=1)
        self.sidecars[service_account] = proxy
        proxy.name = service_account
        return proxy

    def call(self, port, host, path):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path, headers={"Host": host})
            r = conn.getresponse()
            return r.status, r.read().decode(errors="replace")
        except OSError as e:
            return None, str(e)
        finally:
            conn.close()

    def test_gateway_serves_routes_to_meshed_backends(self):
        self.start_control_plane()
        with open(os.path.join(self.data, "api-token")) as f:
            self.api_token = f.read().strip()
        backend = self.start_sidecar("backend")
        app_port = self.apps[-1].port
        port = free_port()
        self.put("gatewayclasses", "meshlet", doc(
            "GatewayClass", "meshlet", {"controllerName": "meshlet.io/gateway-controller"},
            namespace=None), namespaced=False)
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


if __name__ == "__main__":
    root_rotation_test.CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    root_rotation_test.MAKE_CA = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
