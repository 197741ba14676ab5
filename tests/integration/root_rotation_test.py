"""certs/README.md's root rotation, all five steps, end to end under traffic.

Usage: root_rotation_test.py CONTROL_PLANE SIDECAR MAKE_CA [unittest args]

The real control plane (discovery and CA over TLS) is restarted with each step's flags; two real
sidecars configured over xDS, `frontend` and `backend`, hold workload certificates from its CA
(renewed with the current certificate) and call each other over mTLS while a steady trickle of
requests runs both ways. The mesh starts on the root the control plane generates in its data
directory (the old root); the new root and an intermediate under it are made with
certs/make-ca.sh, as an operator would. frontend renews 6-second certificates every ~3 s; backend
asks for 40-second ones (renewed after 16-24 s), so after the switch the two present
certificates of different roots for seconds. frontend -> backend opens a new mTLS connection per
request (TrafficPolicy connectionPool.maxRequestsPerConnection: 1), so every stage is crossed by
fresh handshakes; backend -> frontend keeps its pooled connection. Shown:
- no failed request in either direction through the three restarts, each answer carrying the
  caller's verified SPIFFE id, with no retries and no refused handshake behind it;
- steps 1-2: the two-root bundle reaches both sidecars over xDS (`mesh-trust-bundle` in
  /config_dump, ACKed in proxy status) and a peer of the new root, refused before, is accepted;
- step 3: newly issued certificates come from the new intermediate (issuer on /certs) and the
  chain an inbound listener presents verifies against the new root only, while the other sidecar
  still holds its old-root certificate and fresh connections between them keep working;
- step 4: every certificate has moved to the new root;
- step 5: the bundle holds only the new root, and a client presenting an old-root certificate
  (accepted just before) is refused by both inbound listeners.
About 20-25 s.
"""

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import cp_api
import sidecar_test
from mesh_util import (create_join_token, make_ca, make_server_cert, make_workload_cert,
                       peer_accepted, start_control_plane, stop_all, stop_process,
                       trust_bundle_roots)
from sidecar_test import HttpUpstream, free_port, wait_for

CONTROL_PLANE = MAKE_CA = None  # set from argv
NAMESPACE = "default"
TTL = {"frontend": "6s", "backend": "40s"}
NEW_CA_NAME = "meshlet CA new"


def spiffe(service_account):
    return f"spiffe://cluster.local/ns/{NAMESPACE}/sa/{service_account}"


class Trickle:
    """A request every 20 ms from each caller's outbound listener to the other service, on a
    kept-alive client connection; every answer must be the callee's app seeing the caller's
    verified identity. Counts successes per step; keeps every failure with the step it hit."""

    def __init__(self, sidecars):
        self.step = "0"
        self.ok = {}
        self.failures = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(sidecars[a], b))
                         for a, b in (("frontend", "backend"), ("backend", "frontend"))]
        for t in self._threads:
            t.start()

    def _run(self, caller, callee):
        conn = None
        while not self._stop.is_set():
            step = self.step
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", caller.outbound, timeout=5)
                conn.request("GET", "/trickle", headers={"Host": callee})
                response = conn.getresponse()
                body = response.read()
                seen = json.loads(body) if response.status == 200 else {}
                if (seen.get("upstream") != callee + "-app" or
                        seen["headers"].get("x-meshlet-peer-identity") != spiffe(caller.name)):
                    self.failures.append((step, caller.name, response.status, body[:300]))
                else:
                    key = (step, caller.name)
                    self.ok[key] = self.ok.get(key, 0) + 1
            except Exception as e:  # any failure counts
                self.failures.append((step, caller.name, repr(e)))
                conn = None
            time.sleep(0.02)
        if conn is not None:
            conn.close()

    def count(self, caller):
        return sum(n for (_, name), n in self.ok.items() if name == caller)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join()


class RotationHarness(unittest.TestCase):
    """A control plane restarted with each step's CA flags on one data directory and discovery
    address, sidecars with workload certificates from its CA, and what the checks read of them
    (also used by ca_reload_test.py)."""

    def setUp(self):
        t = self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        # The discovery port's own server certificate (not the workload CA's).
        server_ca = make_ca(t, "server-ca")
        self.server_ca = server_ca[0]
        self.server_cert = make_server_cert(t, "server", server_ca, san="IP:127.0.0.1")
        # The new root and its intermediate, made offline.
        self.new_root = os.path.join(t, "new-root")
        self.new_ca = os.path.join(t, "new-ca")
        subprocess.run([MAKE_CA, "root", "--out", self.new_root], check=True,
                       capture_output=True)
        subprocess.run([MAKE_CA, "intermediate", "--root", self.new_root, "--out", self.new_ca,
                        "--name", NEW_CA_NAME], check=True, capture_output=True)
        self.data = os.path.join(t, "cp-data")
        self.cp_log = os.path.join(t, "cp.log")
        # Sidecars reconnect to the same address after each restart.
        self.ads = f"127.0.0.1:{free_port()}"
        self.cp = None
        self.sidecars, self.apps = {}, []
        self.trickle = None

    def tearDown(self):
        if self.trickle is not None:
            self.trickle.stop()
        if self.cp is not None:
            stop_all(self.sidecars.values(), self.apps, self.cp)

    def start_control_plane(self, *ca_flags):
        """(Re)starts the control plane on the same data directory and discovery address."""
        if self.cp is not None:
            stop_process(self.cp)
        self.cp, self.api, _ = start_control_plane(
            CONTROL_PLANE, self.cp_log, "--data-dir", self.data, "--api-address", "127.0.0.1:0",
            "--xds-address", self.ads, "--xds-tls-cert", self.server_cert[0],
            "--xds-tls-key", self.server_cert[1], "--xds-listen-host", "127.0.0.1",
            "--xds-debounce", "20ms", "--cert-ttl", "6s", "--cert-max-ttl", "40s", *ca_flags)

    def metric(self, name, *labels):
        """The value of the control plane's first series of metric `name` whose line holds each
        of `labels` ('result="ok"'), or of the series without labels; 0 when none does."""
        with cp_api.urlopen(f"https://{self.api}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if ((line.startswith(name + "{") and all(label in line for label in labels))
                        or (not labels and line.startswith(name + " "))):
                    return float(line.rpartition(" ")[2])
        return 0

    def api_request(self, method, path, body=None):
        req = urllib.request.Request(f"https://{self.api}{path}", method=method, data=body,
                                     headers={"Authorization": "Bearer " + self.api_token})
        with cp_api.urlopen(req, timeout=5) as r:
            return r.read()

    def start_sidecar(self, service, bootstrap="{}\n"):
        app = HttpUpstream(service + "-app")
        self.apps.append(app)
        workdir = tempfile.mkdtemp(dir=self.tmp)
        token_file = os.path.join(workdir, "join-token")
        with open(token_file, "w") as f:
            f.write(create_join_token(self.api, self.api_token, service, "10m", NAMESPACE) + "\n")
        outbound, inbound = free_port(), free_port()
        s = sidecar_test.Sidecar(
            workdir, bootstrap, f"--xds={self.ads}", f"--xds-ca={self.server_ca}",
            f"--node-id={service}-0", f"--node-service={service}",
            f"--node-namespace={NAMESPACE}", f"--node-service-account={service}",
            "--node-address=127.0.0.1", f"--node-port={app.port}",
            f"--node-label=meshlet.io/inbound-port={inbound}",
            f"--node-label=meshlet.io/outbound-port={outbound}",
            f"--join-token-file={token_file}", f"--cert-ttl={TTL.get(service, '40s')}",
            concurrency=1)
        s.name, s.outbound, s.inbound = service, outbound, inbound
        self.sidecars[service] = s
        return s

    def certificate(self, service):
        return json.loads(self.sidecars[service].get("/certs")[1])["workload_certificate"]

    def issuers(self):
        return {name: self.certificate(name)["chain"][0]["issuer"] for name in self.sidecars}

    def bundle_acked_everywhere(self, roots):
        """Every sidecar runs a `roots`-root bundle and has ACKed what the control plane sent."""
        if any(trust_bundle_roots(s) != roots for s in self.sidecars.values()):
            return False
        proxies = json.loads(self.api_request("GET", "/api/v1/proxies"))["items"]
        secrets = [status for p in proxies for url, status in p["types"].items()
                   if url.endswith(".Secret")]
        return (len(proxies) == len(self.sidecars) and len(secrets) == len(proxies) and
                all(t["state"] == "ACKED" and t["acked"] == t["sent"] for t in secrets))

    def presented_chain_verifies(self, service, root_file):
        """Whether the chain `service`'s inbound listener presents verifies against root_file."""
        r = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.sidecars[service].inbound}",
             "-showcerts"], input="", capture_output=True, text=True, timeout=10)
        pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                          r.stdout, re.S)
        self.assertTrue(pems, r.stdout + r.stderr)
        # The leaf, then the intermediates, if any (a root signs leaves itself).
        leaf, untrusted = (os.path.join(self.tmp, f"presented-{n}.pem") for n in ("leaf", "rest"))
        with open(leaf, "w") as f:
            f.write(pems[0])
        with open(untrusted, "w") as f:
            f.write("".join(pems[1:]) or pems[0])
        return subprocess.run(["openssl", "verify", "-CAfile", root_file, "-untrusted", untrusted,
                               leaf], capture_output=True).returncode == 0

    def handshake_refusals(self):
        return sum(int(line.rpartition(": ")[2])
                   for s in self.sidecars.values()
                   for line in s.stat_lines("meshlet_downstream_cx_rejected_total")
                   if 'reason="tls_handshake_error"' in line)

    def diagnostics(self):
        """What a failed check prints: each sidecar's retries, connection failures and log."""
        return "\n".join(
            f"--- {s.name}: {s.stat_lines('meshlet_upstream_rq_retry_total')}\n"
            f"{s.stat_lines('meshlet_upstream_cx_tls_handshake_fail_total')}\n"
            f"{s.stat_lines('meshlet_downstream_cx_rejected_total')}\n"
            f"clusters: {s.get('/clusters')[1]}\n{s.log()}" for s in self.sidecars.values())

    def enter(self, step):
        self.trickle.step = step
        print(f"step {step} at {time.time() - self.started:.1f} s", file=sys.stderr)



class RootRotationTest(RotationHarness):
    def test_five_steps_under_traffic(self):
        self.started = time.time()
        self.start_control_plane()  # generates the old root in <data-dir>/ca
        with open(os.path.join(self.data, "api-token")) as f:
            self.api_token = f.read().strip()
        old_root = (os.path.join(self.data, "ca", "root-cert.pem"),
                    os.path.join(self.data, "ca", "root-key.pem"))
        new_root_cert = os.path.join(self.new_root, "root-cert.pem")
        new_ca = (os.path.join(self.new_ca, "ca-chain.pem"), os.path.join(self.new_ca, "ca-key.pem"))
        # Callers that are not sidecars: one certificate from each root (the new one's chain
        # carries its intermediate).
        old_peer = make_workload_cert(self.tmp, "old-peer", old_root, spiffe("old-peer"))
        new_peer = make_workload_cert(
            self.tmp, "new-peer", (os.path.join(self.new_ca, "ca-cert.pem"), new_ca[1]),
            spiffe("new-peer"))
        with open(new_peer[0], "a") as chain, open(os.path.join(self.new_ca, "ca-cert.pem")) as i:
            chain.write(i.read())

        for service in ("frontend", "backend"):
            self.start_sidecar(service)
        # A new connection (and mTLS handshake) for every frontend -> backend request.
        self.api_request("PUT", f"/apis/meshlet.io/v1/namespaces/{NAMESPACE}/trafficpolicies/"
                         "backend", b"apiVersion: meshlet.io/v1\nkind: TrafficPolicy\n"
                         b"metadata: {name: backend}\nspec:\n  target: backend\n"
                         b"  connectionPool: {maxRequestsPerConnection: 1}\n")
        frontend, backend = self.sidecars["frontend"], self.sidecars["backend"]

        def fresh_connections_to_backend():
            before = backend.stat("meshlet_downstream_tls_handshakes_total")
            for _ in range(3):
                conn = http.client.HTTPConnection("127.0.0.1", frontend.outbound, timeout=5)
                conn.request("GET", "/", headers={"Host": "backend"})
                if conn.getresponse().status != 200:
                    return False
                conn.close()
            return backend.stat("meshlet_downstream_tls_handshakes_total") >= before + 3
        self.assertTrue(wait_for(fresh_connections_to_backend, timeout=15),
                        frontend.log() + backend.log())
        old_issuer = self.issuers()["frontend"]
        self.assertEqual(self.issuers()["backend"], old_issuer)
        self.assertTrue(wait_for(lambda: self.bundle_acked_everywhere(1), timeout=5))
        self.assertTrue(peer_accepted(backend.inbound, *old_peer))
        self.assertFalse(peer_accepted(backend.inbound, *new_peer))
        refusals_before = self.handshake_refusals()
        self.trickle = Trickle(self.sidecars)
        time.sleep(0.5)

        # 1. Add the new root to the bundle: the old signing material, the new root as an extra.
        self.enter("1")
        self.start_control_plane("--ca-cert", old_root[0], "--ca-key", old_root[1],
                                 "--ca-trust-bundle", new_root_cert)
        # 2. Wait for propagation: every sidecar runs and ACKed the two-root bundle.
        self.assertTrue(wait_for(lambda: self.bundle_acked_everywhere(2), timeout=10),
                        frontend.log() + backend.log())
        self.enter("2")
        for s in self.sidecars.values():
            self.assertTrue(peer_accepted(s.inbound, *new_peer), s.name)
        self.assertEqual(set(self.issuers().values()), {old_issuer})
        time.sleep(0.5)

        # 3. Switch signing: the new material, the old root as the extra.
        self.enter("3")
        self.start_control_plane("--ca-cert", new_ca[0], "--ca-key", new_ca[1],
                                 "--ca-trust-bundle", old_root[0])
        new_issuer = f"CN={NEW_CA_NAME},O=meshlet"
        # frontend renews within ~3 s, backend only after 16 s: new and old side by side.
        self.assertTrue(wait_for(lambda: self.issuers() == {"frontend": new_issuer,
                                                             "backend": old_issuer}, timeout=10),
                        self.issuers())
        self.assertTrue(self.presented_chain_verifies("frontend", new_root_cert))
        self.assertFalse(self.presented_chain_verifies("frontend", old_root[0]))
        self.assertTrue(self.presented_chain_verifies("backend", old_root[0]))
        handshakes = backend.stat("meshlet_downstream_tls_handshakes_total")
        served = {name: self.trickle.count(name) for name in self.sidecars}
        # Fresh handshakes between a new-root frontend and an old-root backend, both ways served.
        self.assertTrue(wait_for(
            lambda: backend.stat("meshlet_downstream_tls_handshakes_total") >= handshakes + 20 and
            all(self.trickle.count(name) >= served[name] + 20 for name in self.sidecars),
            timeout=10))
        self.assertEqual(self.issuers()["backend"], old_issuer, "backend renewed too early")

        # 4. Wait until every certificate chaining to the old root has been replaced.
        self.enter("4")
        self.assertTrue(wait_for(lambda: set(self.issuers().values()) == {new_issuer},
                                 timeout=25), self.issuers())
        self.assertTrue(self.presented_chain_verifies("backend", new_root_cert))
        for s in self.sidecars.values():
            self.assertTrue(peer_accepted(s.inbound, *old_peer), s.name)
        refusals_during_rotation = self.handshake_refusals() - refusals_before

        # 5. Remove the old root.
        self.enter("5")
        self.start_control_plane("--ca-cert", new_ca[0], "--ca-key", new_ca[1])
        self.assertTrue(wait_for(lambda: self.bundle_acked_everywhere(1), timeout=10))
        for s in self.sidecars.values():
            self.assertFalse(peer_accepted(s.inbound, *old_peer), s.name)
            self.assertTrue(peer_accepted(s.inbound, *new_peer), s.name)
        served = {name: self.trickle.count(name) for name in self.sidecars}
        self.assertTrue(wait_for(lambda: all(self.trickle.count(name) >= served[name] + 20
                                             for name in self.sidecars), timeout=5))
        self.trickle.stop()

        self.assertEqual(self.trickle.failures, [])
        for step in "12345":
            for name in self.sidecars:
                self.assertGreater(self.trickle.ok.get((step, name), 0), 0, (step, name))
        self.assertEqual(refusals_during_rotation, 0)
        self.assertGreater(self.handshake_refusals() - refusals_before, 0)  # the old-root peer
        # Nothing was hidden by a retry or a failed connection.
        for s in self.sidecars.values():
            self.assertEqual(s.stat("meshlet_upstream_rq_retry_total"), 0, self.diagnostics())
            self.assertEqual(s.stat("meshlet_upstream_rq_connect_fail_total"), 0,
                             self.diagnostics())
        with open(self.cp_log) as f:
            self.assertIn("restored 2 workload(s)", f.read())
        total = sum(self.trickle.ok.values())
        print(f"\nroot rotation: {total} requests between the sidecars, 0 failed; "
              f"{backend.stat('meshlet_downstream_tls_handshakes_total')} handshakes at backend, "
              f"{frontend.stat('meshlet_downstream_tls_handshakes_total')} at frontend; "
              f"{time.time() - self.started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    sidecar_test.SIDECAR = os.path.abspath(sys.argv.pop(1))
    MAKE_CA = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
