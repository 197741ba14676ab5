"""AuthorizationPolicy and mesh mTLS from the real control plane, through real sidecars.

Usage: mesh_authz_test.py CONTROL_PLANE MESHCTL SIDECAR [unittest args]

The control plane runs its CA and serves xDS. Three sidecars get their configuration only over
xDS and their workload certificates from the CA (join tokens for three service accounts):
`backend` in front of an HTTP app, `frontend` and `intruder` as callers. Shown:
- the translator's mesh mTLS: frontend -> backend is mTLS with the workload certificates (the app
  sees the caller's verified SPIFFE id, backend counts TLS handshakes), the trust bundle arrives
  as the `mesh-trust-bundle` Secret, and the clusters expect backend's exact identity;
- before any AuthorizationPolicy, both callers get 200;
- after `meshctl apply` of an ALLOW policy (frontend, on the Service port) and a DENY policy
  (/admin*): frontend gets 200, frontend on /admin gets 403 (DENY first), intruder gets 403 and a
  plaintext gRPC call to backend gets grpc-status 7 (PERMISSION_DENIED); denials are counted;
- `meshctl delete` of the ALLOW policy lets intruder in again.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

import grpc

import sidecar_test
from mesh_util import (call_service, create_join_token, spiffe, start_plaintext_control_plane,
                       start_xds_sidecar, stop_all, write_meshctl_context)
from sidecar_test import HttpUpstream, wait_for

CONTROL_PLANE = MESHCTL = None  # set from argv
NAMESPACE = "default"


POLICIES = f"""apiVersion: meshlet.io/v1
kind: Service
metadata: {{name: backend, namespace: {NAMESPACE}}}
spec:
  ports: [{{name: http, port: 9080, protocol: HTTP}}]
---
apiVersion: meshlet.io/v1
kind: AuthorizationPolicy
metadata: {{name: backend-callers, namespace: {NAMESPACE}}}
spec:
  target: backend
  rules:
  - from: [{{principals: ["{spiffe('frontend')}"]}}]
    to: [{{ports: [9080]}}]
---
apiVersion: meshlet.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-admin, namespace: {NAMESPACE}}}
spec:
  target: backend
  action: DENY
  rules:
  - to: [{{paths: ["/admin*"]}}]
"""


class MeshAuthorizationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.cp, cls.api, cls.ads, cls.api_token = start_plaintext_control_plane(
            CONTROL_PLANE, cls.tmp, "--xds-listen-host", "127.0.0.1", "--xds-debounce", "20ms")
        cls.context = write_meshctl_context(os.path.join(cls.tmp, "meshctl.yaml"), cls.api,
                                            os.path.join(cls.tmp, "cp-data", "api-token"))

        cls.app = HttpUpstream("backend-app")
        cls.sidecars = []
        try:
            cls.backend = cls.start_sidecar("backend", app_port=cls.app.port)
            cls.frontend = cls.start_sidecar("frontend")
            cls.intruder = cls.start_sidecar("intruder")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        stop_all(cls.sidecars, [cls.app], cls.cp)

    @classmethod
    def start_sidecar(cls, service, app_port=None):
        token = create_join_token(cls.api, cls.api_token, service, "10m", NAMESPACE)
        s = start_xds_sidecar(cls.tmp, cls.ads, f"{service}-0", NAMESPACE,
                              f"--node-service={service}",
                              *([f"--node-port={app_port}"] if app_port else []),
                              join_token=token, service_account=service)
        cls.sidecars.append(s)
        return s

    def meshctl(self, *args, stdin=None):
        env = dict(os.environ, MESHCTL_CONFIG=self.context)
        p = subprocess.run([MESHCTL, *args], input=stdin, capture_output=True, text=True,
                           env=env, timeout=20)
        self.assertEqual(p.returncode, 0, f"meshctl {args}\n{p.stdout}\n{p.stderr}")
        return p

    @staticmethod
    def backend_cluster(sidecar):
        dump = json.loads(sidecar.get("/config_dump")[1]).get("resources", {})
        for cluster in dump.get("clusters", []):
            if cluster["name"] == "outbound|9080||backend.default":
                return cluster
        return None

    def call(self, sidecar, path="/hello"):
        return call_service(sidecar.outbound, "backend:9080", path)

    @staticmethod
    def grpc_status(port):
        """A unary gRPC call (python3-grpcio) to 127.0.0.1:port: its status code."""
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/pkg.Svc/Call")
            try:
                call(b"\x08\x01", timeout=5)
                return grpc.StatusCode.OK
            except grpc.RpcError as e:
                return e.code()

    def test_policies_from_meshctl_reach_the_sidecars(self):
        # Registration alone makes backend reachable; before any policy, anyone may call it.
        self.assertTrue(wait_for(lambda: self.call(self.frontend)[0] == 200, timeout=15))
        self.assertTrue(wait_for(lambda: self.call(self.intruder)[0] == 200, timeout=15))
        self.meshctl("apply", "-f", "-", stdin=POLICIES)
        self.assertTrue(wait_for(lambda: self.backend_cluster(self.frontend), timeout=5),
                        "the Service to reach frontend")

        # Mesh mTLS with the workload certificates: the app sees the verified caller.
        status, body = self.call(self.frontend)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["headers"].get("x-meshlet-peer-identity"),
                         spiffe("frontend"))
        self.assertGreaterEqual(self.backend.stat("meshlet_downstream_tls_handshakes_total"), 1)
        dump = json.loads(self.frontend.get("/config_dump")[1])["resources"]
        secrets = {s["name"]: s for s in dump.get("secrets", [])}
        self.assertIn("mesh-trust-bundle", secrets, json.dumps(dump)[:3000])
        self.assertIn("BEGIN CERTIFICATE", secrets["mesh-trust-bundle"]["trust_bundle_pem"])
        tls = self.backend_cluster(self.frontend)["tls"]
        self.assertTrue(tls["workload_certificate"])
        self.assertEqual(tls["expected_peer_ids"], [spiffe("backend")])
        self.assertEqual(tls["trust_bundle_secret"], "mesh-trust-bundle")

        # The policies: intruder is denied once they arrive; frontend keeps access except /admin.
        self.assertTrue(wait_for(lambda: self.call(self.intruder)[0] == 403
                                 and self.call(self.frontend, "/admin/users")[0] == 403,
                                 timeout=5),
                        json.loads(self.backend.get("/config_dump")[1])["resources"]["listeners"])
        denied_before = self.backend.stat("meshlet_http_rbac_denied_total")
        status, body = self.call(self.intruder)
        self.assertEqual(status, 403, body)
        self.assertIn("RBAC: access denied", body)
        # gRPC callers get PERMISSION_DENIED: here a plaintext one (PERMISSIVE accepts it, but it
        # has no identity) straight to backend's inbound listener over HTTP/2.
        self.assertEqual(self.grpc_status(self.backend.inbound), grpc.StatusCode.PERMISSION_DENIED)
        status, body = self.call(self.frontend)
        self.assertEqual(status, 200, body)
        status, body = self.call(self.frontend, "/admin/users")
        self.assertEqual(status, 403, body)
        self.assertEqual(self.backend.stat("meshlet_http_rbac_denied_total"), denied_before + 3)
        self.assertGreaterEqual(self.backend.stat("meshlet_http_rbac_allowed_total"), 1)
        print(f"\nauthorization: denied {self.backend.stat('meshlet_http_rbac_denied_total')}, "
              f"allowed {self.backend.stat('meshlet_http_rbac_allowed_total')}", file=sys.stderr)
        # What the control plane sent backend, as meshctl shows it.
        p = self.meshctl("proxy-config", "backend-0", "-o", "json")
        self.assertIn("default/backend-callers", p.stdout)
        self.assertIn("default/no-admin", p.stdout)

        # Without the ALLOW policy only the DENY remains: intruder is let in, /admin stays shut.
        self.meshctl("delete", "authorizationpolicy", "backend-callers", "-n", NAMESPACE)
        self.assertTrue(wait_for(lambda: self.call(self.intruder)[0] == 200, timeout=5),
                        self.call(self.intruder))
        self.assertEqual(self.call(self.intruder, "/admin")[0], 403)


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    MESHCTL = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
