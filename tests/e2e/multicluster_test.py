"""End-to-end: two clusters linked through east-west gateways, as pods (docs/multicluster.md,
ADR 0106).

    multicluster_test.py --bin-dir DIR

Two clusters, `west` and `east`, each a harness.Run of its own: its own podman storage and
internal network (two bridges, two /24s of 198.18.0.0/15), its control plane as a pod (trust
domain west.example or east.example, --cluster-name, the other's root federated from a file put
into its data directory once both roots exist), its pods injected by `meshctl inject` as in the
mesh test. The networks are joined only where clusters meet in a real deployment:

  - east's two east-west gateway pods (the Deployment `meshctl inject --gateway-class meshlet`
    writes for Gateway east-west, whose listener has protocol meshlet.io/east-west) each get a
    second interface on west's bridge; those addresses are the Gateway's spec.addresses, what
    west's sidecars connect to;
  - west's control-plane pod gets a second interface on east's bridge, from which it reads
    east's exports (`meshctl multicluster link`, run in west's control-plane pod with east's
    context).

Nothing else of either network reaches the other. Pods carry topology.kubernetes.io/region and
zone labels, which injection turns into each sidecar's --node-locality.

  west  client-0 (zone a), intruder-0 (zone a), reviews-zone-a-0 (zone a), reviews-zone-b-0
        (zone b); Services reviews and ratings (ratings has no pods here)
  east  reviews-east-0 and ratings-east-0, both Services labelled meshlet.io/export=true,
        ratings admitting only west's client (AuthorizationPolicy); east-west-meshlet-0 and -1

Scenarios, one line each:
  setup      both clusters, the link, `meshctl multicluster check` up, client-0's sidecar knows
             both gateways
  zone       client-0 -> reviews: with even load every request stays in zone a; with zone a's
             endpoint slowed past maxInflightPerHost a share spills to zone b, never to east
  mtls       client-0 -> ratings answered by east's ratings through a gateway; that app saw
             west's client's SPIFFE id; tshark on both bridges sees TLS on every connection
             (client -> gateway, gateway -> ratings) and no plaintext HTTP; the gateway closes
             plain HTTP and TLS naming a Service east does not export
  refused    intruder-0 (west, not named by east's policy) -> ratings: 403 from east
  failover   under load to reviews, both of west's reviews pods crash (their containers
             killed): the calls move to east through the gateways, 0 failed; a new reviews pod
             in west brings them back; both times printed
  gateway    under load to ratings, one gateway's proxy killed: 0 failed, and client-0's
             sidecar stops choosing it (outlier ejection) within a bound; started again
  link       west's control plane cut from east's network: the link turns stale in `check`
             and calls to ratings still work (the last endpoints kept); joined again: up
     cleanup nothing of either run remains (interfaces between the bridges included)

Without root or a working podman it prints a SKIP line and exits 0, unless
MESHLET_REQUIRE_E2E=1.
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time

import cluster as cluster_lib
import harness
from mesh_test import Load, check, describe_failures, failures_of

NAMESPACE = "default"
REGION = "region-1"
GATEWAY = "east-west"
GATEWAY_PORT = 15443
GATEWAY_HOSTS = (240, 241)   # the east gateways' addresses on west's network
CONTROL_PLANE_HOST = 250     # west's control plane's address on east's network
INTERFACE_PREFIX = "mlc"     # the host ends of the interfaces joining the networks
LOAD_RATE = 100
# The bounds the scenarios hold the mesh to.
FAILOVER_BOUND = 5.0         # s from the crash to the first answer from east
EJECTION_BOUND = 10.0        # s from a gateway's death to its ejection in client-0's sidecar
STALE_BOUND = 15.0           # s from the cut to the link shown stale


def control_plane_identity(trust_domain):
    return "spiffe://%s/ns/%s/sa/%s" % (trust_domain, cluster_lib.CONTROL_PLANE_NAMESPACE,
                                       cluster_lib.CONTROL_PLANE_NAME)


class LinkedCluster(cluster_lib.Cluster):
    """A cluster of its own trust domain: meshctl in its control-plane pod expects that domain's
    control-plane identity."""

    def __init__(self, run, meshctl, name, other):
        self.name = name
        self.trust_domain = "%s.example" % name
        super().__init__(run, meshctl, control_plane_args=[
            "--trust-domain", self.trust_domain, "--cluster-name", name,
            "--multicluster-poll-interval", "1s", "--multicluster-read-timeout", "2s",
            "--federate", "%s.example=file:%s/roots-of-%s.pem" % (
                other, cluster_lib.CONTROL_PLANE_DATA, other),
            "--federation-refresh-min", "200ms", "--federation-refresh-max", "1s",
            "--xds-debounce", "20ms"])

    def meshctl_args(self, *args):
        return super().meshctl_args("--server-identity",
                                    control_plane_identity(self.trust_domain), *args)

    def spiffe(self, service_account):
        return "spiffe://%s/ns/%s/sa/%s" % (self.trust_domain, NAMESPACE, service_account)

    def copy_from_control_plane(self, path, to):
        self.run.podman(["cp", "%s:%s" % (cluster_lib.CONTROL_PLANE_CONTAINER, path), to])

    def copy_to_control_plane(self, source, path):
        os.chmod(source, 0o644)
        self.run.podman(["cp", source, "%s:%s" % (cluster_lib.CONTROL_PLANE_CONTAINER, path)])


def workload(name, service, zone, service_account=None, env=()):
    """A Deployment of one testapp pod in `zone` of REGION."""
    labels = {"app": service, "topology.kubernetes.io/region": REGION,
              "topology.kubernetes.io/zone": zone}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": service}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": service}},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "serviceAccountName": service_account or service,
                         "containers": [{
                             "name": service, "image": cluster_lib.image("testapp"),
                             "imagePullPolicy": "IfNotPresent",
                             "env": [{"name": "TESTAPP_SERVICE", "value": service},
                                     {"name": "TESTAPP_LISTEN", "value": "0.0.0.0:9080"},
                                     {"name": "POD_NAME", "valueFrom": {"fieldRef": {
                                         "fieldPath": "metadata.name"}}}] +
                             [{"name": k, "value": v} for k, v in env],
                             "ports": [{"name": "http", "containerPort": 9080}]}]}}}}


def service(name, exported=False):
    labels = {"app": name}
    if exported:
        labels["meshlet.io/export"] = "true"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}}


def service_account(name):
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}


def write_manifest(run, name, documents):
    path = os.path.join(run.dir, "manifests", name + ".json")
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": documents}, f)
    return path


def tls_record(data):
    """Whether `data` starts a TLS record (handshake, alert, change cipher spec or application
    data: a connection opened before the capture shows only the latter)."""
    return len(data) >= 2 and data[0] in (0x14, 0x15, 0x16, 0x17) and data[1] == 0x03


class Capture:
    """tshark on a bridge, for TCP to or from `hosts`, written to a file of the run."""

    def __init__(self, run, name, hosts):
        self.path = os.path.join(run.dir, name + ".pcap")
        self.proc = subprocess.Popen(
            ["tshark", "-q", "-i", run.bridge, "-f",
             "tcp and (%s)" % " or ".join("host %s" % h for h in hosts), "-w", self.path],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        run.wait_until(lambda: os.path.exists(self.path) and os.path.getsize(self.path) > 0,
                       15, "tshark to capture on %s" % run.bridge)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        streams, plaintext = harness.tcp_streams(self.path)
        return plaintext, {k: (src, dst, dport, first) for k, (src, _, dst, dport, first) in
                           streams.items()}


class Mesh:
    def __init__(self, west_run, east_run, bin_dir):
        meshctl = os.path.join(bin_dir, "control-plane", "cli", "meshctl")
        self.west = LinkedCluster(west_run, meshctl, "west", "east")
        self.east = LinkedCluster(east_run, meshctl, "east", "west")
        self.interfaces = []  # host ends of the interfaces joining the networks
        self.gateway_addresses = [west_run.ip(h) for h in GATEWAY_HOSTS]
        self.gateway_pods = ["%s-meshlet-%d" % (GATEWAY, i) for i in range(len(GATEWAY_HOSTS))]
        # Load and its helpers read .run and .cluster: the caller's cluster.
        self.run, self.cluster = west_run, self.west

    # --- joining the networks ---------------------------------------------------------------

    def join(self, run, pod, other_run, host):
        """Gives `pod` of `run` a second interface, eth1, on `other_run`'s bridge at
        other_run.ip(host): a veth pair whose host end is a port of that bridge. It goes with
        the pod's network namespace."""
        address = other_run.ip(host)
        tag = hashlib.sha1(("%s/%s" % (run.dir, pod)).encode()).hexdigest()[:10]
        outside, inside = INTERFACE_PREFIX + tag, "mli" + tag
        pid = str(run.pod_pid(pod))
        for cmd in (["ip", "link", "add", outside, "type", "veth", "peer", "name", inside],
                    ["ip", "link", "set", inside, "netns", pid],
                    ["nsenter", "--target", pid, "--net", "ip", "link", "set", inside, "name",
                     "eth1", "address", harness.mac_for(address)],
                    ["nsenter", "--target", pid, "--net", "ip", "addr", "add", "%s/%d" % (
                        address, other_run.subnet.prefixlen), "dev", "eth1"],
                    ["nsenter", "--target", pid, "--net", "ip", "link", "set", "eth1", "up"],
                    ["ip", "link", "set", outside, "master", other_run.bridge],
                    ["ip", "link", "set", outside, "up"]):
            r = subprocess.run(cmd, capture_output=True, text=True, env=harness.podman_env(),
                               timeout=30)
            run.transcript.append((cmd, r.returncode, r.stdout + r.stderr))
            if r.returncode != 0:
                raise harness.E2EError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
            if cmd[:3] == ["ip", "link", "add"]:
                self.interfaces.append(outside)
        return outside

    def cut(self, outside):
        subprocess.run(["ip", "link", "del", outside], capture_output=True,
                       env=harness.podman_env(), timeout=30)

    def remove_interfaces(self):
        for name in self.interfaces:
            if os.path.exists("/sys/class/net/" + name):
                self.cut(name)

    @staticmethod
    def leftover_interfaces():
        return [n for n in os.listdir("/sys/class/net") if n.startswith(INTERFACE_PREFIX)]

    # --- helpers ---------------------------------------------------------------------------

    def get(self, url, pod="client-0", *args):
        return self.west.exec(pod, ["testapp", "get", url] + list(args), check=False)

    def count(self, url, n, concurrency=4, *args):
        r = self.get(url, "client-0", "--count", str(n), "--concurrency", str(concurrency),
                     *args)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def who(self, service):
        """(pod, caller id) that answered client-0's call to `service`, by its virtual address
        from client-0's network namespace (host curl, captured as the app's calls), or (None,
        the failure)."""
        status, body = self.west.pod_http(
            "client-0", "http://%s:9080/who" % self.west.service_addresses[service], timeout=3)
        if status != 200:
            return None, "%s %s" % (status, body[:200])
        answer = json.loads(body)
        return answer["pod"], answer["headers"].get("x-meshlet-peer-identity")

    def hosts(self, pod, service, cluster=None):
        """{address: host} of `service`'s outbound cluster in `pod`'s sidecar (admin JSON)."""
        cluster = cluster or self.west
        status, body = cluster.pod_http(pod, "http://127.0.0.1:15000/clusters?format=json")
        check(status == 200, "%s /clusters: %s" % (pod, status))
        name = "outbound|9080||%s.%s" % (service, NAMESPACE)
        for c in json.loads(body).get("clusters", []):
            if c["name"] == name:
                return {h["address"]: h for h in c.get("hosts", [])}
        return {}

    def proxy_stat_sum(self, cluster, pod, prefix, match=""):
        status, body = cluster.pod_http(pod, "http://127.0.0.1:15020/stats/prometheus")
        check(status == 200, "%s's proxy /stats/prometheus: %s" % (pod, status))
        return sum(float(line.rpartition(" ")[2]) for line in body.splitlines()
                   if line.startswith(prefix) and match in line)

    def link_check(self):
        return self.west.meshctl("multicluster", "check", check=False)

    def load(self, service, seconds, concurrency=4):
        return Load(self, "http://%s:9080/load" % service, seconds, concurrency=concurrency,
                    rate=LOAD_RATE)

    # --- setup ---------------------------------------------------------------------------------

    def setup(self):
        west, east = self.west, self.east
        started = time.monotonic()
        gateway_range = "%s/31" % self.gateway_addresses[0]
        east.control_plane_args += ["--gateway-addresses", gateway_range]
        west.start_control_plane()
        east.start_control_plane()
        # Each trusts the other's workloads by the other's root (read from a file, re-read).
        roots = os.path.join(west.run.dir, "roots")
        os.makedirs(roots)
        for this, other in ((west, east), (east, west)):
            path = os.path.join(roots, "roots-of-%s.pem" % this.name)
            this.copy_from_control_plane(cluster_lib.API_CA, path)
            other.copy_to_control_plane(path, "%s/roots-of-%s.pem" % (
                cluster_lib.CONTROL_PLANE_DATA, this.name))

        # east: reviews and ratings exported, ratings' callers named, the east-west gateway.
        east.apply([{"apiVersion": "meshlet.io/v1", "kind": "AuthorizationPolicy",
                     "metadata": {"name": "ratings-callers", "namespace": NAMESPACE},
                     "spec": {"target": "ratings", "rules": [
                         {"from": [{"principals": [west.spiffe("client")]}]}]}}])
        forward = [("TESTAPP_FORWARD_HEADER", "x-meshlet-peer-identity")]
        east.deploy([write_manifest(east.run, "east-apps", [
            service_account("reviews"), service_account("ratings"),
            service("reviews", exported=True), service("ratings", exported=True),
            workload("reviews-east", "reviews", "zone-e", env=forward),
            workload("ratings-east", "ratings", "zone-e", env=forward)])],
            extra=("--trust-domain", east.trust_domain))
        gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                   "metadata": {"name": GATEWAY, "namespace": NAMESPACE},
                   "spec": {"gatewayClassName": "meshlet",
                            "addresses": [{"type": "IPAddress", "value": a}
                                          for a in self.gateway_addresses],
                            "listeners": [{"name": "mesh", "port": GATEWAY_PORT,
                                           "protocol": "meshlet.io/east-west"}]}}
        east.apply([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                     "metadata": {"name": "meshlet"},
                     "spec": {"controllerName": "meshlet.io/gateway-controller"}}, gateway])
        deployment = [d for d in east.inject(
            [write_manifest(east.run, "gateway", [gateway])],
            ("--gateway-class", "meshlet", "--trust-domain", east.trust_domain))
            if d["kind"] == "Deployment"][0]
        east.create_join_token(deployment["spec"]["template"]["spec"]["serviceAccountName"])
        east.play_pods([(pod, deployment["spec"]["template"], None)
                        for pod in self.gateway_pods])
        for pod, host in zip(self.gateway_pods, GATEWAY_HOSTS):
            self.join(east.run, pod, west.run, host)

        # west: reviews in two zones, ratings as a Service only, the callers.
        west.apply([{"apiVersion": "meshlet.io/v1", "kind": "TrafficPolicy",
                     "metadata": {"name": name, "namespace": NAMESPACE},
                     "spec": {"target": name,
                              "retries": {"attempts": 3, "retryOn": [
                                  "connect-failure", "refused-stream", "reset",
                                  "retriable-status-codes"], "retriableStatusCodes": [503]},
                              "outlierDetection": {"consecutive5xx": 3,
                                                   "baseEjectionTime": "30s",
                                                   "maxEjectionPercent": 50},
                              "locality": {"maxInflightPerHost": 2}}}
                    for name in ("reviews", "ratings")])
        west.deploy([write_manifest(west.run, "west-apps", [
            service_account("client"), service_account("intruder"),
            service_account("reviews"), service("reviews"), service("ratings"),
            workload("client", "client", "zone-a"),
            workload("intruder", "intruder", "zone-a"),
            workload("reviews-zone-a", "reviews", "zone-a"),
            workload("reviews-zone-b", "reviews", "zone-b")])],
            extra=("--trust-domain", west.trust_domain))
        self.join(west.run, cluster_lib.CONTROL_PLANE_NAME, east.run, CONTROL_PLANE_HOST)
        east.wait_ready()
        west.wait_ready()

        # The link, made in west's control-plane pod with east's context.
        d = os.path.join(west.run.dir, "east-context")
        os.makedirs(d)
        east.copy_from_control_plane(cluster_lib.API_TOKEN, os.path.join(d, "api-token"))
        east.copy_from_control_plane(cluster_lib.API_CA, os.path.join(d, "root-cert.pem"))
        remote = "%s/east" % cluster_lib.CONTROL_PLANE_DATA
        with open(os.path.join(d, "context.yaml"), "w") as f:
            f.write("server: %s:15014\ntokenFile: %s/api-token\ncertificateAuthority: "
                    "%s/root-cert.pem\nserverIdentity: %s\nnamespace: default\n" % (
                        east.control_plane_ip, remote, remote,
                        control_plane_identity(east.trust_domain)))
        for name in os.listdir(d):
            os.chmod(os.path.join(d, name), 0o644)
        west.run.podman(["cp", d, "%s:%s" % (cluster_lib.CONTROL_PLANE_CONTAINER, remote)])
        out = west.meshctl("multicluster", "link", "--remote-context", remote + "/context.yaml")
        check("now reads what cluster east exports" in out, "link: %s" % out)
        west.run.wait_until(lambda: self.link_check().returncode == 0, 20,
                            "meshctl multicluster check to pass",
                            lambda: self.link_check().stdout)
        shown = self.link_check().stdout
        for expected in ("default/ratings", "default/reviews") + tuple(
                "%s:%d" % (a, GATEWAY_PORT) for a in self.gateway_addresses):
            check(expected in shown, "%r not in meshctl multicluster check:\n%s" % (expected,
                                                                                   shown))
        # client-0's sidecar builds a Service's cluster on first use: call both, then wait for
        # the gateways among their endpoints.
        self.count("http://reviews:9080/", 4)
        self.count("http://ratings:9080/", 4)
        gateways = {"%s:%d" % (a, GATEWAY_PORT) for a in self.gateway_addresses}
        for svc in ("reviews", "ratings"):
            west.run.wait_until(lambda s=svc: gateways <= set(self.hosts("client-0", s)), 20,
                                "client-0's %s cluster to hold east's gateways" % svc,
                                lambda s=svc: self.hosts("client-0", s))
        return "two clusters, %d + %d pods, linked, in %.0f s" % (
            len(west.pods), len(east.pods), time.monotonic() - started)

    # --- the scenarios -------------------------------------------------------------------------

    def zone(self):
        """Zone-local preference: client-0 (zone a) calls reviews (zone a, zone b, east)."""
        even = self.count("http://reviews:9080/", 200, 1, "--rate", str(LOAD_RATE))
        check(failures_of(even) == 0, describe_failures(even))
        in_zone = even["pods"].get("reviews-zone-a-0", 0) / even["requests"]
        check(in_zone == 1.0, "even load: %s" % even["pods"])
        # Zone a's one endpoint slowed: 8 requests at once, over 2 in flight per endpoint.
        self.west.exec("reviews-zone-a-0", ["testapp", "get", "--method", "POST",
                                            "http://127.0.0.1:9080/__set?latency=100ms"])
        try:
            over = self.count("http://reviews:9080/", 400, 8)
        finally:
            self.west.exec("reviews-zone-a-0", ["testapp", "get", "--method", "POST",
                                                "http://127.0.0.1:9080/__set?latency=0s"])
        check(failures_of(over) == 0, describe_failures(over))
        spilled = over["pods"].get("reviews-zone-b-0", 0) / over["requests"]
        check(0.2 <= spilled < 1.0 and "reviews-east-0" not in over["pods"],
              "overloaded: %s" % over["pods"])
        spill_stat = self.proxy_stat_sum(self.west, "client-0",
                                         "meshlet_upstream_rq_locality_total",
                                         'decision="spillover"')
        check(spill_stat > 0, "client-0 counted no spill-over")
        return ("even load: %d of %d in zone a (%.0f %%); zone a over 2 in flight per endpoint: "
                "%.0f %% of %d spilled to zone b, none to east" % (
                    even["pods"].get("reviews-zone-a-0", 0), even["requests"], in_zone * 100,
                    spilled * 100, over["requests"]))

    def mtls(self):
        """A call across clusters, mTLS end to end, captured on both bridges."""
        west, east = self.west, self.east
        ratings_ip = east.pods["ratings-east-0"]["ip"]
        client_ip = west.pods["client-0"]["ip"]
        on_west = Capture(west.run, "west", self.gateway_addresses)
        on_east = Capture(east.run, "east", [ratings_ip])
        try:
            time.sleep(0.5)
            answers = [self.who("ratings") for _ in range(10)]
            time.sleep(1)
        finally:
            west_plain, west_firsts = on_west.stop()
            east_plain, east_firsts = on_east.stop()
        check(all(a == ("ratings-east-0", west.spiffe("client")) for a in answers),
              "answers: %s" % answers)
        check(not west_plain and not east_plain,
              "plaintext on the wire: %s" % (west_plain + east_plain)[:5])
        to_gateways = [f for f in west_firsts.values() if f[0] == client_ip and
                       f[1] in self.gateway_addresses and f[2] == GATEWAY_PORT]
        to_ratings = [f for f in east_firsts.values() if f[1] == ratings_ip and f[2] == 9080]
        check(to_gateways and all(tls_record(f[3]) for f in to_gateways),
              "client-0 -> gateway connections: %s" % list(west_firsts.values()))
        check(to_ratings and all(tls_record(f[3]) for f in to_ratings),
              "gateway -> ratings connections: %s" % list(east_firsts.values()))
        # The gateway forwards only mesh TLS naming what east exports.
        target = "%s:%d" % (self.gateway_addresses[0], GATEWAY_PORT)
        plain = west.run.in_pod_network("intruder-0", [
            "curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
            "http://%s/" % target], check=False)
        check(plain.returncode != 0 and plain.stdout in ("", "000"),
              "plain HTTP to the gateway: exit %d %r" % (plain.returncode, plain.stdout))
        unexported = west.run.in_pod_network("intruder-0", [
            "openssl", "s_client", "-connect", target, "-servername",
            "9080.kube-dns.kube-system.meshlet.internal", "-brief"], check=False)
        check("CONNECTION ESTABLISHED" not in unexported.stdout + unexported.stderr,
              "TLS for an unexported name: %s" % unexported.stderr[-300:])
        refused = self.proxy_stat_sum(east, self.gateway_pods[0],
                                      "meshlet_downstream_cx_client_hello_total")
        check(refused > 0, "the gateway counted no ClientHello")
        return ("10 calls answered by east's ratings-east-0, which saw %s; %d client -> gateway "
                "and %d gateway -> ratings connections, all TLS, no plaintext; plain HTTP and "
                "an unexported name closed at the gateway" % (
                    west.spiffe("client"), len(to_gateways), len(to_ratings)))

    def refused(self):
        r = self.get("http://ratings:9080/", "intruder-0")
        check(r.returncode != 0 and "403" in r.stdout + r.stderr,
              "intruder-0 -> ratings: exit %d %s %s" % (r.returncode, r.stdout, r.stderr))
        denied = self.proxy_stat_sum(self.east, "ratings-east-0", "meshlet_http_rbac_denied_total")
        check(denied > 0, "east's ratings counted no denial")
        ok = self.get("http://ratings:9080/")
        check(ok.returncode == 0, "client-0 -> ratings: %s %s" % (ok.stdout, ok.stderr))
        return "intruder-0 (%s) got 403 from east's ratings; client-0 still 200" % (
            self.west.spiffe("intruder"))

    def failover(self):
        west = self.west
        load = self.load("reviews", 14)
        times = {}

        def watch(what, predicate):
            started = time.monotonic()
            while time.monotonic() - started < 20:
                pod, _ = self.who("reviews")
                if pod is not None and predicate(pod):
                    times[what] = time.monotonic()
                    return
                time.sleep(0.05)
        time.sleep(2)
        # Both of west's reviews pods crash: their app and proxy containers killed at once.
        crashed = [c for pod in ("reviews-zone-a-0", "reviews-zone-b-0")
                   for c in west.containers(pod) if not c.endswith("-infra")]
        watcher = threading.Thread(target=watch,
                                   args=("east", lambda p: p == "reviews-east-0"))
        watcher.start()
        killed = time.monotonic()
        west.run.podman(["stop", "--time", "0"] + crashed)
        watcher.join()
        check("east" in times, "no answer from east's reviews 20 s after the crash")
        failover = times["east"] - killed
        time.sleep(3)
        during = self.count("http://reviews:9080/", 40)
        check(during["pods"] == {"reviews-east-0": 40}, "after the crash: %s" % during["pods"])
        # A new reviews pod in zone a.
        for pod in ("reviews-zone-a-0", "reviews-zone-b-0"):
            west.delete_pod(pod, grace=1)
        template = [d for d in west.inject([os.path.join(west.run.dir, "manifests",
                                                         "west-apps.json")],
                                           ("--trust-domain", west.trust_domain))
                    if d["metadata"]["name"] == "reviews-zone-a"][0]["spec"]["template"]
        pod = west.play_pod("reviews-zone-a-1", template)
        west.wait_ready([pod])
        ready = time.monotonic()
        watch("back", lambda p: p == pod)
        check("back" in times, "no answer from %s 20 s after it was ready" % pod)
        summary = load.result()
        check(failures_of(summary) == 0, describe_failures(summary))
        check(summary["pods"].get("reviews-east-0", 0) > 0, "load: %s" % summary["pods"])
        check(failover <= FAILOVER_BOUND, "failover took %.2f s" % failover)
        return ("both west reviews pods crashed under load (%d requests, 0 failed, %s): east "
                "answered %.2f s later; a new west pod answered %.2f s after it was ready" % (
                    summary["requests"], summary["pods"], failover, times["back"] - ready))

    def gateway(self):
        east = self.east
        dead_pod = self.gateway_pods[0]
        dead = "%s:%d" % (self.gateway_addresses[0], GATEWAY_PORT)
        alive = "%s:%d" % (self.gateway_addresses[1], GATEWAY_PORT)
        load = self.load("ratings", 12)
        time.sleep(2)
        before = self.hosts("client-0", "ratings")
        check(before.get(dead, {}).get("healthy") and before.get(alive, {}).get("healthy"),
              "before: %s" % before)
        killed = time.monotonic()
        east.run.podman(["stop", "--time", "0", dead_pod + "-meshlet-proxy"])
        ejected = self.west.run.wait_until(
            lambda: "outlier_ejected" in self.hosts("client-0", "ratings").get(
                dead, {}).get("health_flags", []) and time.monotonic(), EJECTION_BOUND + 10,
            "client-0 to eject the dead gateway %s" % dead,
            lambda: self.hosts("client-0", "ratings")) - killed
        # Ejected, it gets no request (its attempts count stands still).
        attempts = self.hosts("client-0", "ratings")[dead]["rq_total"]
        time.sleep(2)
        after = self.hosts("client-0", "ratings")
        summary = load.result()
        check(failures_of(summary) == 0, describe_failures(summary))
        check(ejected <= EJECTION_BOUND, "the dead gateway was ejected after %.1f s" % ejected)
        check(after[dead]["rq_total"] == attempts and after[alive]["rq_total"] > 0,
              "the ejected gateway still got requests: %d then %s" % (attempts, after))
        east.run.podman(["start", dead_pod + "-meshlet-proxy"])
        east.wait_ready([dead_pod])
        return ("one gateway's proxy killed under load to ratings (%d requests, 0 failed): "
                "client-0 ejected it %.1f s later (bound %.0f s); started again" % (
                    summary["requests"], ejected, EJECTION_BOUND))

    def link(self):
        west, east = self.west, self.east
        outside = self.interfaces[-1]  # west's control plane on east's network
        self.cut(outside)
        cut = time.monotonic()
        west.run.wait_until(
            lambda: (lambda r: r.returncode == 1 and re.search(r"^east\s+stale", r.stdout,
                                                                re.M) and r)(self.link_check()),
            STALE_BOUND + 5, "the link to turn stale", lambda: self.link_check().stdout)
        took = time.monotonic() - cut
        calls = self.count("http://ratings:9080/", 20)
        check(failures_of(calls) == 0, "while cut: " + describe_failures(calls))
        self.interfaces.remove(outside)
        self.join(west.run, cluster_lib.CONTROL_PLANE_NAME, east.run, CONTROL_PLANE_HOST)
        restored = time.monotonic()
        west.run.wait_until(lambda: self.link_check().returncode == 0, 20,
                            "the link to be up again", lambda: self.link_check().stdout)
        check(took <= STALE_BOUND, "stale after %.1f s" % took)
        return ("west's control plane cut from east: stale after %.1f s, 20 calls to ratings "
                "0 failed; joined again: up after %.1f s" % (took, time.monotonic() - restored))


SCENARIOS = [
    ("zone", Mesh.zone),
    ("mtls", Mesh.mtls),
    ("refused", Mesh.refused),
    ("failover", Mesh.failover),
    ("gateway", Mesh.gateway),
    ("link", Mesh.link),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--only", default="", help="comma-separated scenario names")
    args = p.parse_args()
    only = set(filter(None, args.only.split(",")))
    bin_dir = os.path.abspath(args.bin_dir)

    def body(west_run, suite):
        suite.scenario("images", lambda: west_run.build_images(bin_dir) or
                       ", ".join(west_run.images), fatal=True)
        east_run = harness.Run(name="mc-east")
        try:
            with east_run:
                suite.scenario("east images", lambda: ", ".join(east_run.load_images(
                    os.path.join(west_run.dir, "images"))), fatal=True)
                mesh = Mesh(west_run, east_run, bin_dir)
                try:
                    suite.scenario("setup", mesh.setup, fatal=True)
                    for name, scenario in SCENARIOS:
                        if not only or name in only:
                            suite.scenario(name, lambda f=scenario: f(mesh))
                finally:
                    # Before either network goes: a port of another run's bridge keeps it.
                    mesh.remove_interfaces()
                    if not all(suite.results):
                        east_run.dump()
        finally:
            t0 = time.monotonic()
            left = east_run.leftovers() if east_run.dir else {}
            interfaces = Mesh.leftover_interfaces()
            if interfaces:
                left["interfaces"] = interfaces
            suite.report(not left, "cleanup east", "nothing of east's run remains" if not left
                         else "left behind: %s" % left, t0)

    return harness.Suite("multicluster").main(body)


if __name__ == "__main__":
    sys.exit(main())
