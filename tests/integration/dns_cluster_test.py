"""DNS clusters: endpoints the sidecar resolves itself and follows by TTL (docs/xds.md, "DNS
clusters").

Usage: dns_cluster_test.py SIDECAR_BINARY [unittest args]

A DNS server on loopback (FakeDns, below: UDP, A and AAAA from records the test changes) is the
sidecar's only one (--dns-server). A static configuration routes an HTTP listener to cluster
`partner` of type DNS, api.partner.test on one port, which two HTTP upstreams serve on
127.0.0.2 and 127.0.0.3:
  - the name's address moves from .2 to .3: the calls follow once the TTL (1 s) has run out, and
    the name is not asked again before it (min_refresh 100 ms);
  - the name vanishes (NXDOMAIN): the calls keep going to the last address, the failed lookups
    are counted as no_such_name, and the sidecar asks again every failure_refresh;
  - /clusters shows the resolved endpoint.
"""

import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import sidecar_test as base
from ports import free_port


class FakeDns:
    """A DNS server on 127.0.0.1 (UDP) answering A and AAAA from `records` ({name: ([ips],
    ttl)}); NXDOMAIN for other names. `asked` counts the queries per name."""

    def __init__(self):
        self.records = {}
        self.asked = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def set(self, name, addresses, ttl):
        with self.lock:
            self.records[name] = (list(addresses), ttl)

    def remove(self, name):
        with self.lock:
            self.records.pop(name, None)

    def queries(self, name):
        with self.lock:
            return self.asked.get(name, 0)

    def serve(self):
        while self.running:
            try:
                query, peer = self.sock.recvfrom(1500)
            except socket.timeout:
                continue
            answer = self.answer(query)
            if answer:
                self.sock.sendto(answer, peer)

    def answer(self, query):
        if len(query) < 12:
            return None
        labels, pos = [], 12
        while pos < len(query) and query[pos] != 0:
            n = query[pos]
            labels.append(query[pos + 1:pos + 1 + n].decode().lower())
            pos += 1 + n
        qtype = struct.unpack("!H", query[pos + 1:pos + 3])[0]
        question = query[12:pos + 5]
        name = ".".join(labels)
        with self.lock:
            self.asked[name] = self.asked.get(name, 0) + 1
            found = self.records.get(name)
        if found is None:
            return query[:2] + b"\x81\x83" + struct.pack("!HHHH", 1, 0, 0, 0) + question
        addresses, ttl = found
        family = socket.AF_INET if qtype == 1 else socket.AF_INET6
        rdata = []
        for address in addresses:
            try:
                rdata.append(socket.inet_pton(family, address))
            except OSError:
                continue  # the other family
        out = query[:2] + b"\x81\x80" + struct.pack("!HHHH", 1, len(rdata), 0, 0) + question
        for data in rdata:
            out += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, ttl, len(data)) + data
        return out

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


def config(listener_port, upstream_port):
    return base.config_yaml(
        base.http_listener("out", listener_port),
        f"""  - name: partner
    type: DNS
    connect_timeout: 250ms
    dns:
      hostname: api.partner.test
      port: {upstream_port}
      min_refresh: 0.1s
      max_refresh: 30s
      failure_refresh: 0.2s
""",
        base.app_routes(cluster="partner"))


class DnsClusterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.dns = FakeDns()
        port = free_port()
        self.two = base.HttpUpstream("two", host="127.0.0.2", port=port)
        self.three = base.HttpUpstream("three", host="127.0.0.3", port=port)
        self.dns.set("api.partner.test", ["127.0.0.2"], 1)
        self.listener = free_port()
        self.sidecar = base.Sidecar(self.tmp, config(self.listener, port),
                                    f"--dns-server=127.0.0.1:{self.dns.port}")

    def tearDown(self):
        self.sidecar.stop()
        self.two.close()
        self.three.close()
        self.dns.close()

    def who(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.listener}/who", timeout=5) as r:
                return json.loads(r.read())["upstream"]
        except OSError as e:
            return str(e)

    def test_calls_follow_the_name_after_its_ttl(self):
        self.assertTrue(base.wait_for(lambda: self.who() == "two", timeout=5), self.who())
        _, clusters, _ = self.sidecar.get("/clusters")
        self.assertIn("127.0.0.2", clusters)
        self.assertGreaterEqual(
            base.stat_with(self.sidecar, "meshlet_dns_lookups_total", 'cluster="partner"',
                           'result="success"'), 1)
        # The address moves: the calls follow once the TTL (1 s) has run out.
        moved = time.monotonic()
        asked = self.dns.queries("api.partner.test")
        self.dns.set("api.partner.test", ["127.0.0.3"], 1)
        self.assertTrue(base.wait_for(lambda: self.who() == "three", timeout=5), self.who())
        took = time.monotonic() - moved
        self.assertLess(took, 2.5)
        # Over 2 s: asked about twice (A and AAAA each), not every 100 ms (min_refresh).
        time.sleep(2)
        lookups = (self.dns.queries("api.partner.test") - asked) / 2
        self.assertLessEqual(lookups, 5, lookups)
        self.assertGreaterEqual(lookups, 1, lookups)
        self.assertIn("127.0.0.3", self.sidecar.get("/clusters")[1])

    def test_a_vanished_name_keeps_the_last_addresses(self):
        self.assertTrue(base.wait_for(lambda: self.who() == "two", timeout=5), self.who())
        self.dns.remove("api.partner.test")
        self.assertTrue(base.wait_for(lambda: base.stat_with(
            self.sidecar, "meshlet_dns_lookups_total", 'cluster="partner"',
            'result="no_such_name"') >= 2, timeout=6))
        self.assertEqual([self.who() for _ in range(5)], ["two"] * 5)
        self.assertIn("api.partner.test: no such name", self.sidecar.log())
        # Back with another address: picked up at the next retry.
        self.dns.set("api.partner.test", ["127.0.0.3"], 1)
        self.assertTrue(base.wait_for(lambda: self.who() == "three", timeout=5), self.who())


if __name__ == "__main__":
    base.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
