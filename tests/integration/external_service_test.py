"""ExternalService through the control plane to a captured sidecar (docs/egress.md).

Usage: external_service_test.py CONTROL_PLANE SIDECAR [unittest args]

A control plane (plaintext xDS on loopback) and one sidecar registered as captured (its outbound
listener reads original destinations; nothing redirects here), whose only DNS server is a fake
one on loopback (--dns-server). An ExternalService `partner` (api.partner.test, TLS 443,
resolution DNS) and `cdn` (*.cdn.test, STATIC) are applied through the API:
  - the outbound listener gets their destinations by server name, after the Services';
  - the sidecar resolves api.partner.test itself: its cluster external|443||api.partner.test
    holds the address the fake DNS gives, and follows it when it changes;
  - deleting the ExternalService removes its destination and cluster from the sidecar.
"""

import json
import os
import sys
import tempfile
import unittest
import urllib.request

import cp_api
import mesh_util
import sidecar_test
from dns_cluster_test import FakeDns
from sidecar_test import wait_for

CONTROL_PLANE = None

PARTNER = """apiVersion: meshlet.io/v1
kind: ExternalService
metadata: {name: partner, namespace: default}
spec:
  hosts: [api.partner.test]
  ports: [{name: https, number: 443, protocol: TLS}]
"""
CDN = """apiVersion: meshlet.io/v1
kind: ExternalService
metadata: {name: cdn, namespace: default}
spec:
  hosts: ["*.cdn.test"]
  ports: [{number: 443, protocol: HTTPS}]
  resolution: STATIC
  endpoints: [127.0.0.4]
"""


class ExternalServiceTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.dns = FakeDns()
        self.cp, self.api, self.ads, self.token = mesh_util.start_plaintext_control_plane(
            CONTROL_PLANE, self.tmp)
        self.sidecar = None

    def tearDown(self):
        if self.sidecar is not None:
            self.sidecar.stop()
        mesh_util.stop_process(self.cp)
        self.dns.close()

    def hosts(self, cluster):
        _, body, _ = self.sidecar.get("/clusters?format=json")
        for c in json.loads(body).get("clusters", []):
            if c["name"] == cluster:
                return [h["address"] for h in c.get("hosts", [])]
        return None

    def destinations(self):
        _, body, _ = self.sidecar.get("/config_dump")
        for listener in json.loads(body).get("resources", {}).get("listeners", []):
            if listener.get("name") == "outbound":
                return listener.get("destinations", [])
        return []

    def delete(self, name):
        req = urllib.request.Request(
            cp_api.url(self.api, f"/apis/meshlet.io/v1/namespaces/default/externalservices/{name}"),
            method="DELETE", headers={"Authorization": "Bearer " + self.token})
        with cp_api.urlopen(req, timeout=5) as r:
            r.read()

    def test_an_external_service_reaches_a_captured_sidecar(self):
        self.dns.set("api.partner.test", ["127.0.0.2"], 1)
        mesh_util.put_resource(self.api, self.token,
                               "namespaces/default/externalservices/partner", PARTNER)
        mesh_util.put_resource(self.api, self.token, "namespaces/default/externalservices/cdn",
                               CDN)
        self.sidecar = mesh_util.start_xds_sidecar(
            self.tmp, self.ads, "client-0", "default", "--node-service=client",
            "--node-label=meshlet.io/capture=iptables", f"--dns-server=127.0.0.1:{self.dns.port}")
        partner = "external|443||api.partner.test"
        self.assertTrue(wait_for(lambda: self.hosts(partner) == ["127.0.0.2:443"], timeout=10),
                        self.hosts(partner))
        self.assertEqual(self.hosts("external|443||cdn.default"), ["127.0.0.4:443"])
        by_name = {d["name"]: d for d in self.destinations()}
        self.assertEqual(by_name[partner]["server_names"], ["api.partner.test"])
        self.assertEqual(by_name[partner]["port"], 443)
        self.assertEqual(by_name["external|443||cdn.default"]["server_names"], ["*.cdn.test"])
        # The name moves: the sidecar follows it after the TTL.
        self.dns.set("api.partner.test", ["127.0.0.3"], 1)
        self.assertTrue(wait_for(lambda: self.hosts(partner) == ["127.0.0.3:443"], timeout=10),
                        self.hosts(partner))
        self.assertGreaterEqual(sidecar_test.stat_with(
            self.sidecar, "meshlet_dns_lookups_total", 'result="success"'), 2)
        # Deleted: its destination and cluster leave the sidecar.
        self.delete("partner")
        self.assertTrue(wait_for(lambda: self.hosts(partner) is None, timeout=10))
        self.assertNotIn(partner, [d["name"] for d in self.destinations()])
        self.assertEqual(self.hosts("external|443||cdn.default"), ["127.0.0.4:443"])


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
