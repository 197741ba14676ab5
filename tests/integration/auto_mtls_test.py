"""Automatic mTLS per endpoint, from the real control plane through real sidecars.

Usage: auto_mtls_test.py CONTROL_PLANE SIDECAR [unittest args]

The control plane runs its CA and serves xDS; every sidecar is configured only over xDS. The
Service `backend` (PERMISSIVE, the default) selects two members:
- `backend-0`, a sidecar with a workload certificate (join token) in front of one app;
- `legacy-0`, a workload without a sidecar: a plain HTTP server, registered by a process that only
  announces it (its endpoint is the server's own port; it gets no inbound listener and no
  certificate).
`frontend-0` (with a workload certificate) calls `backend:9080`. Shown: the cluster keeps mTLS and
its endpoints say, each, how to reach them (backend-0 with its SPIFFE identity, legacy-0
`plaintext`); requests reach both members; those through backend-0 arrive with frontend's
verified identity (the hop was mTLS, and backend-0 counted the handshakes), those to the legacy
server arrive directly as plain HTTP; no TLS handshake failed. When the legacy workload goes away,
the cluster keeps mTLS to backend-0 alone.
"""

import base64
import json
import os
import socket
import sys
import tempfile
import unittest

import sidecar_test
from mesh_util import (call_service, create_join_token, put_resource, spiffe,
                       start_plaintext_control_plane, start_xds_sidecar, stop_all)
from sidecar_l7_test import (OP_TEXT, UpgradeServer, read_head, ws_accept, ws_frame,
                             ws_read_frame)
from sidecar_test import HttpUpstream, wait_for

CONTROL_PLANE = None  # set from argv
NAMESPACE = "default"
CLUSTER = "outbound|9080||backend.default"


def service_yaml(name):
    """A Service `name` selecting app=`name`, one HTTP port 9080."""
    return f"""apiVersion: meshlet.io/v1
kind: Service
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9080, protocol: HTTP}}]
"""


class AutoMtlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        cls.cp, cls.api, cls.ads, cls.api_token = start_plaintext_control_plane(
            CONTROL_PLANE, cls.tmp, "--xds-listen-host", "127.0.0.1", "--xds-debounce", "20ms",
            "--deregister-grace", "1s")
        cls.meshed_app = HttpUpstream("meshed-app")
        cls.legacy_app = HttpUpstream("legacy-app")
        cls.chat_app = UpgradeServer()
        cls.sidecars = []
        try:
            cls.put(f"namespaces/{NAMESPACE}/services/backend", service_yaml("backend"))
            cls.put(f"namespaces/{NAMESPACE}/services/chat", service_yaml("chat"))
            cls.chat = cls.start("chat-0", "--node-service=chat", "--node-label=app=chat",
                                 f"--node-port={cls.chat_app.port}", account="chat")
            cls.backend = cls.start("backend-0", "--node-service=backend",
                                    "--node-label=app=backend",
                                    f"--node-port={cls.meshed_app.port}", account="backend")
            # Its endpoint is the legacy server itself: nothing answers TLS there.
            cls.legacy = cls.start("legacy-0", "--node-label=app=backend",
                                   inbound=cls.legacy_app.port)
            cls.frontend = cls.start("frontend-0", "--node-service=frontend", account="frontend")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        stop_all(cls.sidecars, [cls.meshed_app, cls.legacy_app, cls.chat_app], cls.cp)

    @classmethod
    def put(cls, path, yaml_text):
        put_resource(cls.api, cls.api_token, path, yaml_text)

    @classmethod
    def start(cls, node_id, *args, account=None, inbound=None):
        token = (create_join_token(cls.api, cls.api_token, account, "10m", NAMESPACE)
                 if account else None)
        s = start_xds_sidecar(cls.tmp, cls.ads, node_id, NAMESPACE, *args, join_token=token,
                              service_account=account, inbound=inbound)
        cls.sidecars.append(s)
        return s

    def call(self):
        return call_service(self.frontend.outbound, "backend:9080")

    def frontend_view(self):
        """(cluster tls, {address: endpoint}) of frontend's backend cluster, from its
        /config_dump."""
        dump = json.loads(self.frontend.get("/config_dump")[1]).get("resources", {})
        cluster = next((c for c in dump.get("clusters", []) if c["name"] == CLUSTER), None)
        assignment = next((a for a in dump.get("endpoints", [])
                           if a["cluster_name"] == CLUSTER), None)
        if cluster is None or assignment is None:
            return None, {}
        return cluster.get("tls"), {e["address"]: e for e in assignment.get("endpoints", [])}

    def cluster_protocol(self, name):
        dump = json.loads(self.frontend.get("/config_dump")[1]).get("resources", {})
        cluster = next(c for c in dump.get("clusters", []) if c["name"] == name)
        return cluster.get("protocol", "UPSTREAM_HTTP1")

    @staticmethod
    def inbound_connections(sidecar, protocol):
        return sum(int(line.rpartition(": ")[2])
                   for line in sidecar.stat_lines("meshlet_downstream_cx_protocol_total")
                   if f'protocol="{protocol}"' in line and 'listener="inbound' in line)

    def test_websocket_between_sidecars_goes_over_http11(self):
        chat = "outbound|9080||chat.default"
        # frontend discovers chat on its first request to it (on-demand, the default).
        self.assertTrue(wait_for(lambda: self.call_host("chat:9080")[0] == 426, timeout=15))
        self.assertEqual(self.frontend_view_of(chat), [chat])
        key = base64.b64encode(os.urandom(16)).decode()
        with socket.create_connection(("127.0.0.1", self.frontend.outbound), timeout=10) as conn:
            conn.sendall((f"GET /ws HTTP/1.1\r\nHost: chat:9080\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            status_line, fields = read_head(conn)
            self.assertIn(" 101 ", status_line)
            self.assertEqual(fields["sec-websocket-accept"], ws_accept(key))
            conn.sendall(ws_frame(OP_TEXT, b"hello over the mesh", mask=True))
            self.assertEqual(ws_read_frame(conn), (OP_TEXT, b"hello over the mesh"))
        # The ordinary request went over HTTP/2, the Upgrade over HTTP/1.1 (ALPN "http/1.1"),
        # both over mTLS.
        self.assertGreater(self.inbound_connections(self.chat, "http2"), 0)
        self.assertEqual(self.inbound_connections(self.chat, "http1"), 1)

    def frontend_view_of(self, name):
        dump = json.loads(self.frontend.get("/config_dump")[1]).get("resources", {})
        return [c["name"] for c in dump.get("clusters", []) if c["name"] == name]

    def call_host(self, host):
        return call_service(self.frontend.outbound, host)

    def test_each_member_is_reached_as_its_endpoint_says(self):
        meshed = f"127.0.0.1:{self.backend.inbound}"
        legacy = f"127.0.0.1:{self.legacy_app.port}"
        handshakes_before = self.backend.stat("meshlet_downstream_tls_handshakes_total")
        # frontend discovers backend on its first request to it (on-demand, the default), which
        # is answered.
        self.assertTrue(wait_for(lambda: self.call()[0] == 200, timeout=15))
        self.assertTrue(wait_for(lambda: set(self.frontend_view()[1]) == {meshed, legacy},
                                 timeout=15), self.frontend_view())
        tls, endpoints = self.frontend_view()
        # The cluster keeps mTLS; each endpoint says how to reach it.
        self.assertTrue(tls["enabled"], tls)
        self.assertTrue(tls["workload_certificate"], tls)
        self.assertEqual(endpoints[meshed].get("identity"), spiffe("backend"))
        self.assertFalse(endpoints[meshed].get("plaintext", False))
        self.assertTrue(endpoints[legacy].get("plaintext"), endpoints[legacy])
        self.assertNotIn("identity", endpoints[legacy])

        seen = {"meshed-app": 0, "legacy-app": 0}
        for _ in range(40):
            status, body = self.call()
            self.assertEqual(status, 200, body)
            answer = json.loads(body)
            seen[answer["upstream"]] += 1
            if answer["upstream"] == "meshed-app":
                # backend-0 verified frontend's certificate: that hop was mTLS.
                self.assertEqual(answer["headers"].get("x-meshlet-peer-identity"),
                                 spiffe("frontend"))
            else:
                # Straight from frontend's sidecar to the plain server, which speaks no TLS.
                self.assertNotIn("x-meshlet-peer-identity", answer["headers"])
            if min(seen.values()) >= 3:
                break
        self.assertGreaterEqual(min(seen.values()), 3, seen)
        self.assertGreater(self.backend.stat("meshlet_downstream_tls_handshakes_total"),
                           handshakes_before)
        # Sidecar to sidecar the hop is HTTP/2 (ALPN h2), though both apps speak HTTP/1.1; the
        # legacy server got HTTP/1.1 (it answered).
        self.assertEqual(self.cluster_protocol(CLUSTER), "UPSTREAM_MESH_HTTP2")
        self.assertGreater(self.inbound_connections(self.backend, "http2"), 0)
        self.assertEqual(self.inbound_connections(self.backend, "http1"), 0)
        self.assertEqual(self.frontend.stat("meshlet_upstream_cx_tls_handshake_fail_total"), 0)
        status, body, _ = self.frontend.get("/clusters")
        cluster = next(c for c in json.loads(body)["clusters"] if c["name"] == CLUSTER)
        hosts = {h["address"]: (h["tls"], h["identity"]) for h in cluster["hosts"]}
        self.assertEqual(hosts, {meshed: (True, spiffe("backend")), legacy: (False, "")})
        print(f"\nauto mTLS: {seen['meshed-app']} requests over mTLS to backend-0, "
              f"{seen['legacy-app']} in plaintext to the legacy server", file=sys.stderr)

        # The legacy workload leaves: mTLS to the meshed member alone, still working.
        self.sidecars.remove(self.legacy)
        self.legacy.stop()
        self.assertTrue(wait_for(lambda: set(self.frontend_view()[1]) == {meshed},
                                 timeout=15), self.frontend_view())
        self.assertTrue(self.frontend_view()[0]["enabled"])
        for _ in range(3):
            status, body = self.call()
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["upstream"], "meshed-app")


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
