"""End-to-end: the Gateway API mesh conformance cases against injected pods under podman.

    gateway_conformance_test.py --bin-dir DIR [--only MeshBasic,MeshPorts,...]
                                [--routes auto|kube|meshctl] [--report PATH]

The cases of the Gateway API's mesh conformance profiles (MESH-HTTP, MESH-GRPC), and its
HTTPRoute timeout and retry cases with a Service as their parent, written down as facts (what each
case deploys, what it sends, what it expects) and run here with the test's own manifests and
code. The layout (gateway_conformance/mesh.yaml): the namespaces gateway-conformance-mesh (echo-v1,
echo-v2 behind the Services echo, echo-v1, echo-v2) and gateway-conformance-mesh-consumer (an
echo-v1 of its own), every pod injected by `meshctl inject` and played by podman (cluster.py);
the Services and pods known to the control plane through the fake Kubernetes API server only,
with ClusterIPs of their own (as mesh_test's scenario n). The echo pods run testapp's echo mode
(HTTP on 8080) and conformance_agent.py's gRPC echo (7070); the echo-v1 pods are the clients:
requests leave from their network namespaces (conformance_agent.py) through their sidecars.

Each case applies its routes (kubectl-shaped HTTPRoute/GRPCRoute documents), sends its requests
until every expectation holds in three rounds in a row (or fails after EVENTUAL_S, naming the
first expectations that did not hold), and removes its routes. Routes go through the Kubernetes
API server (`--routes kube`: the control plane watches them there and writes their status back) or
through `meshctl apply` (`--routes meshctl`); `auto` takes the Kubernetes path when the fake API
server serves HTTPRoutes.

One line per case, then a ConformanceReport (gateway.networking.k8s.io/v1) in
$TEST_UNDECLARED_OUTPUTS_DIR/gateway-conformance-report.yaml and at --report.
Without root or a working podman it prints a SKIP line and exits 0, unless
MESHLET_REQUIRE_E2E=1.
"""

import argparse
import base64
import collections
import datetime
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cluster as cluster_lib  # noqa: E402
import gateway_conformance_extended  # noqa: E402
import harness  # noqa: E402

MESH_YAML = os.path.join(HERE, "gateway_conformance", "mesh.yaml")
GATEWAY_YAML = os.path.join(HERE, "gateway_conformance", "gateway.yaml")
AGENT = os.path.join(HERE, "conformance_agent.py")
PYTHON = "/usr/bin/python3"  # Debian's, with python3-grpcio
MESH_NS = "gateway-conformance-mesh"
CONSUMER_NS = "gateway-conformance-mesh-consumer"
# ClusterIPs of the Services (unroutable 240.0.0.0/4: only the sidecars' capture reaches them).
CLUSTER_IPS = {"echo": "240.241.1.10", "echo-v1": "240.241.1.11", "echo-v2": "240.241.1.12"}
# The pods, by the name podman knows them (pod names are podman's, unique across namespaces).
CLIENT = "echo-v1-0"               # echo-v1 in gateway-conformance-mesh
CLIENT_V2 = "echo-v2-0"
CONSUMER_CLIENT = "consumer-echo-v1-0"  # echo-v1 in gateway-conformance-mesh-consumer
GRPC_PORT = 7070
# How long a case waits for its expectations to hold, and how many rounds in a row they must.
EVENTUAL_S = 30
CONSISTENT_ROUNDS = 3
ROUND_PAUSE_S = 0.3
# Weighted cases: requests sent, and how far each backend's share may be from its weight.
WEIGHT_REQUESTS = 500
WEIGHT_TOLERANCE = 0.05
# The Gateway API release each profile's cases were transcribed from (the report's
# gatewayAPIVersion).
GATEWAY_API_VERSIONS = {"mesh": "v1.4.0", "gateway": "v1.5.1"}
# The hosts of the run's network (harness.Run.ip) of the Gateways' static addresses: the first of
# --gateway-addresses' /29, and one outside it; pods get addresses from 2 up to far below.
STATIC_ADDRESS_HOSTS = (240, 250)
REPORT_NAME = "gateway-conformance-report.yaml"

GROUP = "gateway.networking.k8s.io"
API_VERSION = GROUP + "/v1"
ROUTE_RESOURCES = {"HTTPRoute": "httproutes", "GRPCRoute": "grpcroutes"}


class Failed(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


# --- routes, as kubectl would send them -----------------------------------------------------------

def route(name, rules, parent="echo", port=80, namespace=MESH_NS, parent_namespace=None,
          kind="HTTPRoute"):
    parent_ref = {"group": "", "kind": "Service", "name": parent}
    if port is not None:
        parent_ref["port"] = port
    if parent_namespace:
        parent_ref["namespace"] = parent_namespace
    return {"apiVersion": API_VERSION, "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [parent_ref], "rules": rules}}


def rule(backends=(), matches=None, filters=None, name=None, timeouts=None, retry=None):
    r = {}
    if name:
        r["name"] = name
    if matches is not None:
        r["matches"] = matches
    if filters:
        r["filters"] = filters
    if timeouts:
        r["timeouts"] = timeouts
    if retry:
        r["retry"] = retry
    if backends:
        r["backendRefs"] = list(backends)
    return r


def backend(name, port=8080, weight=None, namespace=None, filters=None):
    b = {"name": name, "port": port}
    if weight is not None:
        b["weight"] = weight
    if namespace:
        b["namespace"] = namespace
    if filters:
        b["filters"] = filters
    return b


def prefix(value, **more):
    return dict({"path": {"type": "PathPrefix", "value": value}}, **more)


def exact(value):
    return {"path": {"type": "Exact", "value": value}}


def headers_match(**pairs):
    return {"headers": [{"name": k.replace("_", "-"), "value": v} for k, v in pairs.items()]}


def query_match(**pairs):
    return [{"name": k, "value": v} for k, v in pairs.items()]


def header_modifier(kind="RequestHeaderModifier", set=None, add=None, remove=None):
    spec = {}
    if set:
        spec["set"] = [{"name": k, "value": v} for k, v in set]
    if add:
        spec["add"] = [{"name": k, "value": v} for k, v in add]
    if remove:
        spec["remove"] = list(remove)
    key = kind[0].lower() + kind[1:]
    return {"type": kind, key: spec}


def response_header_set(name, value):
    return header_modifier("ResponseHeaderModifier", set=[(name, value)])


def redirect(**spec):
    if "path_prefix" in spec:
        spec["path"] = {"type": "ReplacePrefixMatch", "replacePrefixMatch": spec.pop("path_prefix")}
    if "full_path" in spec:
        spec["path"] = {"type": "ReplaceFullPath", "replaceFullPath": spec.pop("full_path")}
    if "status" in spec:
        spec["statusCode"] = spec.pop("status")
    return {"type": "RequestRedirect", "requestRedirect": spec}


def rewrite(path_prefix=None, full_path=None):
    if path_prefix is not None:
        path = {"type": "ReplacePrefixMatch", "replacePrefixMatch": path_prefix}
    else:
        path = {"type": "ReplaceFullPath", "replaceFullPath": full_path}
    return {"type": "URLRewrite", "urlRewrite": {"path": path}}


# --- requests and what is expected of their answers -----------------------------------------------

def req(path="/", host="echo", to=None, port=80, method="GET", headers=None, status=200,
        backend=None, namespace=MESH_NS, resp_headers=None, absent_resp_headers=(),
        req_path=None, req_headers=None, absent_req_headers=(), location=None, req_host=None,
        req_sni=None):
    """One request and its expectations. `to`: the Service whose ClusterIP it is sent to (default:
    the Service `host` names) or an IP; `location`: the redirect's expected {scheme, host, port,
    path} (absent keys: unchanged from the request, port the scheme's default); a value of
    `resp_headers` may be a list of the values allowed; `req_sni`: the server name the backend's
    TLS handshake saw (a TLS backend's echo)."""
    target = to or host.split(":")[0].split(".")[0]
    return {"ip": CLUSTER_IPS.get(target, target), "port": port, "host": host, "method": method,
            "path": path, "headers": dict(headers or {}),
            "expect": {"status": status, "backend": backend, "namespace": namespace,
                       "resp_headers": resp_headers or {},
                       "absent_resp_headers": list(absent_resp_headers), "req_path": req_path,
                       "req_headers": req_headers or {},
                       "absent_req_headers": list(absent_req_headers), "location": location,
                       "req_host": req_host, "req_sni": req_sni}}


def judge(request, answer):
    """None when `answer` meets `request`'s expectations, else what differs."""
    e = request["expect"]
    if "error" in answer:
        return "no answer: %s" % answer["error"]
    body = answer["body"]
    # A tuple (or, copied through JSON, a list) of statuses: any of them.
    statuses = tuple(e["status"]) if isinstance(e["status"], (tuple, list)) else (e["status"],)
    if answer["status"] not in statuses:
        return "status %d, expected %s (%s)" % (answer["status"], " or ".join(map(str, statuses)),
                                                body[:160].strip())
    for name, value in e["resp_headers"].items():
        got = answer["headers"].get(name.lower())
        if isinstance(value, (list, tuple)):
            # Any of these values, compared without spaces (upstream's IgnoreWhitespace).
            if got is None or got.replace(" ", "") not in [v.replace(" ", "") for v in value]:
                return "response header %s: %r, expected one of %r" % (name, got, list(value))
        elif got != value:
            return "response header %s: %r, expected %r" % (name, got, value)
    for name in e["absent_resp_headers"]:
        if name.lower() in answer["headers"]:
            return "response header %s present (%r)" % (name, answer["headers"][name.lower()])
    if e["location"] is not None:
        return judge_location(request, answer, e["location"])
    if not (e["backend"] or e["req_path"] or e["req_headers"] or e["absent_req_headers"] or
            e.get("req_host") or e.get("req_sni")):
        return None
    try:
        echo = json.loads(body)
    except ValueError:
        return "not an echo answer: %r" % body[:160]
    if e["backend"] and (echo.get("service"), echo.get("namespace")) != (e["backend"],
                                                                          e["namespace"]):
        return "answered by %s/%s, expected %s/%s" % (echo.get("namespace"), echo.get("service"),
                                                       e["namespace"], e["backend"])
    if e["req_path"] is not None and echo.get("path") != e["req_path"]:
        return "the backend got path %r, expected %r" % (echo.get("path"), e["req_path"])
    if e.get("req_host") and echo.get("host") != e["req_host"]:
        return "the backend got host %r, expected %r" % (echo.get("host"), e["req_host"])
    if e.get("req_sni") and echo.get("sni") != e["req_sni"]:
        return "the backend's TLS handshake saw server name %r, expected %r" % (
            echo.get("sni"), e["req_sni"])
    got_headers = echo.get("headers", {})
    for name, value in e["req_headers"].items():
        got = ",".join(got_headers.get(name.lower(), [])) or None
        if got != value:
            return "the backend got header %s: %r, expected %r" % (name, got, value)
    for name in e["absent_req_headers"]:
        if name.lower() in got_headers:
            return "the backend got header %s: %r, expected none" % (name,
                                                                    got_headers[name.lower()])
    return None


def judge_location(request, answer, expected):
    location = answer["headers"].get("location")
    if not location:
        return "no location header"
    u = urllib.parse.urlsplit(location)
    scheme = expected.get("scheme", "http")
    host = expected.get("host", request["host"].split(":")[0])
    path = expected.get("path", request["path"])
    default_port = {"http": 80, "https": 443}[scheme]
    port = expected.get("port", default_port)
    got_port = u.port or default_port
    if (u.scheme, u.hostname, got_port, u.path) != (scheme, host, port, path):
        return "location %r, expected %s://%s:%d%s" % (location, scheme, host, port, path)
    if u.port is not None and u.port == default_port:
        return "location %r names the scheme's default port" % location
    return None


# --- the conformance mesh -------------------------------------------------------------------------

class Conformance:
    def __init__(self, run, bin_dir, routes):
        self.run = run
        self.bin_dir = bin_dir
        self.routes_path = routes
        self.cluster = cluster_lib.Cluster(
            run, os.path.join(bin_dir, "control-plane", "cli", "meshctl"), namespace=MESH_NS)
        self.pids = {}
        self.grpc_servers = []

    # --- the layout

    def setup(self):
        c = self.cluster
        phases = []

        def phase(name):
            phases.append((name, time.monotonic()))
        phase("start")
        c.start_kubernetes_api()
        # Gateways' static addresses (GatewayStaticAddresses): --gateway-addresses is a /29 of
        # the run's network past the addresses its pods get; one address in it is usable, one
        # outside it is not.
        check(self.run.subnet.num_addresses >= 256, "the run's network %s is smaller than a /24"
              % self.run.subnet)
        static = "%s/29" % self.run.ip(STATIC_ADDRESS_HOSTS[0])
        c.control_plane_args += ["--gateway-addresses", static]
        self.usable_addresses = [self.run.ip(STATIC_ADDRESS_HOSTS[0] + 1)]
        self.unusable_addresses = [self.run.ip(STATIC_ADDRESS_HOSTS[1])]
        took = c.start_control_plane()
        phase("control plane")
        documents = c.inject([MESH_YAML])
        for doc in documents:
            ns = doc["metadata"].get("namespace", MESH_NS)
            if doc["kind"] == "ServiceAccount":
                c.create_join_token(doc["metadata"]["name"], namespace=ns)
        pods = []
        for doc in documents:
            ns = doc["metadata"].get("namespace", MESH_NS)
            if doc["kind"] == "Deployment":
                name = "%s-0" % doc["metadata"]["name"]
                if ns == CONSUMER_NS:
                    name = "consumer-" + name
                pods.append((name, doc["spec"]["template"], ns))
        c.play_pods(pods)
        phase("pods played")
        ready = c.wait_ready()
        phase("proxies ready")
        for listening in [self.start_grpc_echo(pod)
                          for pod in (CLIENT, CLIENT_V2, CONSUMER_CLIENT)]:
            listening()
        phase("gRPC echoes")
        self.publish_services([d for d in documents if d["kind"] == "Service"])
        phase("Services and endpoints answered to every client's lookups")
        self.wait_acked()
        phase("ACKed")
        return ("control plane ready in %.1f s; pods %s ready %.1f s later; Services %s known "
                "through the Kubernetes API; routes through %s; %s" % (
                    took, ", ".join(c.pods), ready, ", ".join(sorted(CLUSTER_IPS)),
                    "the Kubernetes API (%s; other kinds meshctl apply)" % ", ".join(
                        sorted(kube_route_resources())) if self.routes_path == "kube"
                    else "meshctl apply",
                    ", ".join("%s %.1f s" % (name, t - phases[i][1])
                              for i, (name, t) in enumerate(phases[1:]))))

    def start_grpc_echo(self, pod):
        """Starts the gRPC echo in `pod`; returns what waits until it listens."""
        info = self.cluster.pods[pod]
        service = {"v1": "echo-v1", "v2": "echo-v2"}[info["labels"]["version"]]
        log = os.path.join(self.run.dir, "grpc-echo-%s.log" % pod)
        proc = self.run.start_in_pod_network(pod, [
            PYTHON, AGENT, "grpc-serve", "--port", str(GRPC_PORT), "--service", service,
            "--namespace", info["namespace"], "--pod", pod], log)

        def listening():
            with open(log) as f:
                text = f.read()
            if proc.poll() is not None:
                raise harness.E2EError("the gRPC echo of %s exited: %s" % (pod, text[-2000:]))
            return "listening" in text
        self.grpc_servers.append(proc)
        return lambda: self.run.wait_until(listening, 20, "the gRPC echo of %s to listen" % pod)

    def publish_services(self, services, clients=(CLIENT, CLIENT_V2, CONSUMER_CLIENT)):
        """The Services, their EndpointSlices and the pods in the Kubernetes API server; until
        the control plane answers each of `clients`' lookups of them."""
        c = self.cluster
        for name, info in c.pods.items():
            if not info["meshed"]:
                continue
            c.kube_put("pods", {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": info["namespace"],
                             "labels": info["labels"]},
                "spec": {"serviceAccountName": info["service_account"]},
                "status": {"phase": "Running", "podIP": info["ip"]}})
        pod_ips = {}  # host lookup key of a Service -> its pods' addresses
        for svc in services:
            name, ns = svc["metadata"]["name"], svc["metadata"].get("namespace", MESH_NS)
            obj = json.loads(json.dumps(svc))
            obj["metadata"]["namespace"] = ns
            obj["spec"]["type"] = "ClusterIP"
            obj["spec"]["clusterIP"] = CLUSTER_IPS[name]
            obj["spec"]["clusterIPs"] = [CLUSTER_IPS[name]]
            c.kube_put("services", obj)
            selected = [p for p, info in sorted(c.pods.items())
                        if info["namespace"] == ns and info["meshed"] and all(
                            info["labels"].get(k) == v
                            for k, v in svc["spec"]["selector"].items())]
            pod_ips["host:%s.%s" % (name, ns)] = [c.pods[p]["ip"] for p in selected]
            ports = []
            for p in svc["spec"]["ports"]:
                port = {"name": p["name"], "port": p.get("targetPort", p["port"]),
                        "protocol": "TCP"}
                if p.get("appProtocol"):
                    port["appProtocol"] = p["appProtocol"]
                ports.append(port)
            c.kube_put("endpointslices", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name + "-x1", "namespace": ns,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "ports": ports,
                "endpoints": [{"addresses": [c.pods[p]["ip"]], "conditions": {"ready": True},
                               "targetRef": {"kind": "Pod", "name": p, "namespace": ns}}
                              for p in selected]})
        # The clients discover the Services on first use (on-demand, the default): once the
        # control plane answers each client's lookup of every Service with its endpoints (what
        # `meshctl proxy-config --lookup` shows without sending anything), the first requests
        # are answered.
        ids = [p["id"] for p in json.loads(c.meshctl("proxy-status", "-o", "json"))["items"]]
        keys = sorted(pod_ips)
        for client in clients:
            node = next((i for i in ids if i.split(".")[0] == client), None)
            if node is None:
                raise harness.E2EError("no proxy of %s in proxy-status: %s" % (client, ids))

            def answered():
                r = c.meshctl("proxy-config", node, "--control-plane-only", "-o", "json",
                              "--lookup", ",".join(keys), check=False)
                if r.returncode != 0:
                    return False
                lookups = json.loads(r.stdout).get("lookups", [])
                return (len(lookups) == len(keys) and
                        all(k["result"] == "found" for k in lookups) and
                        all(re.search(r'"%s[":]' % re.escape(ip), r.stdout)
                            for ips in pod_ips.values() for ip in ips))
            self.run.wait_until(answered, 30, "the control plane to answer %s's lookups of %s"
                                % (client, ", ".join(keys)))

    def admin(self, pod, path):
        return self.cluster.pod_http(pod, "http://127.0.0.1:15000" + path)[1]

    def wait_acked(self, timeout=30):
        """Until every proxy has ACKed the control plane's latest push of every type."""
        def acked():
            r = self.cluster.meshctl("proxy-status", "-o", "json", check=False)
            if r.returncode != 0:
                return None
            items = json.loads(r.stdout).get("items", [])
            if len(items) < len(self.cluster.meshed_pods()):
                return None
            return all(s.get("state") == "ACKED" and s.get("acked") == s.get("sent")
                       for p in items for s in p.get("types", {}).values())
        self.run.wait_until(acked, timeout, "every proxy to ACK the latest push",
                            lambda: self.cluster.meshctl("proxy-status", check=False).stdout)

    # --- routes

    def through_kube(self, kind):
        """Whether routes of `kind` go through the Kubernetes API server: on the kube path, for
        the kinds the fake API server serves (the others through meshctl)."""
        return self.routes_path == "kube" and ROUTE_RESOURCES[kind] in kube_route_resources()

    def apply(self, documents):
        for doc in documents:
            if self.through_kube(doc["kind"]):
                doc = json.loads(json.dumps(doc))
                doc["metadata"].setdefault("generation", 1)
                self.cluster.kube_put(ROUTE_RESOURCES[doc["kind"]], doc)
        documents = [d for d in documents if not self.through_kube(d["kind"])]
        if not documents:
            return
        text = "".join("---\n" + json.dumps(d) + "\n" for d in documents)
        r = self.cluster.meshctl("apply", "-f", "-", input=text, check=False)
        check(r.returncode == 0, "meshctl apply of the case's routes failed (exit %d): %s" % (
            r.returncode, (r.stderr or r.stdout).strip()[-1500:]))

    def delete(self, documents):
        for doc in documents:
            if self.through_kube(doc["kind"]):
                self.cluster.kube_delete(ROUTE_RESOURCES[doc["kind"]], doc["metadata"]["name"],
                                         doc["metadata"]["namespace"])
        documents = [d for d in documents if not self.through_kube(d["kind"])]
        if documents:
            text = "".join("---\n" + json.dumps(d) + "\n" for d in documents)
            self.cluster.meshctl("delete", "-f", "-", input=text, check=False)
        time.sleep(0.3)
        self.wait_acked()

    def with_routes(self, documents, body):
        """Applies `documents`, runs body(), removes them. A failure also names the routes'
        status conditions as read back."""
        self.apply(documents)
        try:
            return body()
        except (Failed, harness.E2EError) as e:
            raise Failed("%s; route status: %s" % (e, "; ".join(
                self.describe_status(d) for d in documents)))
        finally:
            self.delete(documents)

    def describe_status(self, doc):
        meta = doc["metadata"]
        obj = self.route_object(doc["kind"], meta["namespace"], meta["name"])
        if obj is None:
            return "%s/%s not found" % (meta["namespace"], meta["name"])
        parents = obj.get("status", {}).get("parents", [])
        return "%s/%s %s" % (meta["namespace"], meta["name"], ", ".join(
            "parent %s: %s" % (p.get("parentRef", {}).get("name"), " ".join(
                "%s=%s(%s)" % (c.get("type"), c.get("status"), c.get("reason"))
                for c in p.get("conditions", []))) for p in parents) or "no status")

    def route_object(self, kind, namespace, name):
        """The route as stored, with its status: from the Kubernetes API server (kube) or the
        control plane's API (meshctl get)."""
        if self.through_kube(kind):
            api = self.cluster.kube_api
            ca = os.path.join(self.run.dir, "kube-api", "ca-for-curl.pem")
            with open(ca, "w") as f:
                f.write(api["ca"])
            r = self.run.in_pod_network("kube-apiserver", [
                "curl", "-sS", "--max-time", "5", "--cacert", ca, "-H",
                "Authorization: Bearer " + api["token"],
                # The cluster-wide list, as the control plane's watch reads it.
                "%s/apis/%s/v1/%s" % (api["address"], GROUP, ROUTE_RESOURCES[kind])],
                check=False)
            if r.returncode != 0:
                return None
            try:
                items = json.loads(r.stdout).get("items", [])
            except ValueError:
                return None
            return next((o for o in items if (o["metadata"]["namespace"],
                                              o["metadata"]["name"]) == (namespace, name)), None)
        # Qualified by group: meshlet's own HTTPRoute kind shares the name.
        r = self.cluster.meshctl("get", "%s.%s" % (ROUTE_RESOURCES[kind], GROUP), name, "-n",
                                 namespace, "-o", "json", check=False)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    # --- sending

    def pid(self, pod):
        if pod not in self.pids:
            self.pids[pod] = self.run.pod_pid(pod)
        return self.pids[pod]

    def agent(self, pod, mode, calls, timeout=120):
        """conformance_agent.py MODE in `pod`'s network namespace; its answers."""
        r = subprocess.run(["nsenter", "--target", str(self.pid(pod)), "--net", PYTHON, AGENT,
                            mode], input=json.dumps(calls), capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise Failed("the agent in %s failed (exit %d): %s" % (pod, r.returncode,
                                                                    r.stderr[-1500:]))
        return json.loads(r.stdout)

    def expect(self, requests, client=CLIENT, timeout=EVENTUAL_S):
        """Sends `requests` from `client` until every answer meets its expectations in
        CONSISTENT_ROUNDS rounds in a row, ROUND_PAUSE_S apart; Failed naming what did not, after
        `timeout`. The rounds still wanted go to one agent run, which stops early after a round
        with a status not expected; each round is judged here."""
        started = time.monotonic()
        streak = 0
        calls = [{k: v for k, v in r.items() if k != "expect"} for r in requests]
        statuses = [list(r["expect"]["status"]) if isinstance(r["expect"]["status"], (tuple, list))
                    else [r["expect"]["status"]] for r in requests]
        failed = []
        while True:
            rounds = self.agent(client, "http", {
                "requests": calls, "rounds": CONSISTENT_ROUNDS - streak, "pause": ROUND_PAUSE_S,
                "statuses": statuses})
            for answers in rounds:
                problems = []
                for r, a in zip(requests, answers):
                    problem = judge(r, a)
                    if problem:
                        problems.append("%s %s%s (host %s): %s" % (
                            r["method"], r["ip"], a.get("path", r["path"]), r["host"], problem))
                streak = 0 if problems else streak + 1
                failed = problems or failed
            if streak >= CONSISTENT_ROUNDS:
                return "%d requests as expected, %d rounds in a row (%.1f s)" % (
                    len(requests), CONSISTENT_ROUNDS, time.monotonic() - started)
            if time.monotonic() - started > timeout:
                raise Failed("after %.0f s, %d of %d requests not as expected: %s" % (
                    timeout, len(failed), len(requests), "; ".join(failed[:4])))
            time.sleep(ROUND_PAUSE_S)

    def shares(self, answers, key):
        counts = collections.Counter(key(a) for a in answers)
        return {k: v / float(len(answers)) for k, v in counts.items()}, counts

    def expect_weights(self, send, expected, what, timeout=EVENTUAL_S * 2):
        """Sends WEIGHT_REQUESTS with send() (backend names) until each backend's share is within
        WEIGHT_TOLERANCE of `expected`."""
        started = time.monotonic()
        while True:
            names = send()
            counts = collections.Counter(names)
            shares = {k: counts.get(k, 0) / float(len(names)) for k in set(expected) | set(counts)}
            off = {k: shares[k] for k in shares
                   if abs(shares[k] - expected.get(k, 0)) > WEIGHT_TOLERANCE}
            if not off:
                return "%d %s: %s (weights %s, within %d points)" % (
                    len(names), what, ", ".join("%s %d" % kv for kv in sorted(counts.items())),
                    ", ".join("%s %d%%" % (k, v * 100) for k, v in sorted(expected.items())),
                    WEIGHT_TOLERANCE * 100)
            if time.monotonic() - started > timeout:
                raise Failed("after %.0f s, %d %s split %s; expected %s within %d points" % (
                    timeout, len(names), what, dict(counts), expected, WEIGHT_TOLERANCE * 100))
            time.sleep(1)

    def grpc(self, client, calls):
        return self.agent(client, "grpc", calls)

    def grpc_call(self, metadata=None, repeat=None):
        call = {"ip": CLUSTER_IPS["echo"], "port": GRPC_PORT, "authority": "echo:%d" % GRPC_PORT,
                "method": "/meshlet.e2e.Echo/Echo", "metadata": metadata or {}}
        if repeat:
            call["repeat"] = repeat
        return call


# --- the cases ------------------------------------------------------------------------------------

def mesh_basic(m):
    """No route: echo answers HTTP on 80, and (this test's addition, MeshBasic being in both
    profiles) a gRPC call on 7070."""
    http_line = m.expect([req(host="echo")])
    started = time.monotonic()
    while True:
        answer = m.grpc(CLIENT, [m.grpc_call()])[0]
        if answer["code"] == "OK" and answer["body"].get("namespace") == MESH_NS:
            break
        if time.monotonic() - started > EVENTUAL_S:
            raise Failed("a gRPC call to echo:%d: %s" % (GRPC_PORT, answer))
        time.sleep(0.3)
    return "HTTP: %s; gRPC: answered by %s" % (http_line, answer["body"]["pod"])


FRONTEND_ROUTE = [route("mesh-split-v1",
                        [rule([backend("echo-v2", 80)],
                              filters=[response_header_set("X-Header-Set", "set")])],
                        parent="echo-v2", port=None)]


def mesh_frontend(m):
    v2_ip = m.cluster.pods[CLIENT_V2]["ip"]
    return m.with_routes(FRONTEND_ROUTE, lambda: m.expect([
        req(host="echo-v2", backend="echo-v2", resp_headers={"X-Header-Set": "set"}),
        req(host="%s:8080" % v2_ip, to=v2_ip, port=8080, backend="echo-v2",
            absent_resp_headers=["X-Header-Set"]),
    ]))


def mesh_frontend_hostname(m):
    return m.with_routes(FRONTEND_ROUTE, lambda: m.expect([
        # The Service is the one whose ClusterIP the request goes to, whatever its Host says.
        req(to="echo-v2", host="echo-v1", backend="echo-v2",
            resp_headers={"X-Header-Set": "set"}),
        req(to="echo-v1", host="echo-v2", backend="echo-v1",
            absent_resp_headers=["X-Header-Set"]),
    ]))


def mesh_ports(m):
    routes = [
        route("mesh-split-v1", [rule([backend("echo-v1", 80)],
                                     filters=[response_header_set("X-Header-Set", "v1")])],
              parent="echo-v1", port=80),
        route("mesh-split-v2", [rule([backend("echo-v2", 80)],
                                     filters=[response_header_set("X-Header-Set", "v2")])],
              parent="echo-v2", port=None),
    ]
    return m.with_routes(routes, lambda: m.expect([
        req(host="echo-v1", backend="echo-v1", resp_headers={"X-Header-Set": "v1"}),
        req(host="echo-v1:8080", port=8080, backend="echo-v1",
            absent_resp_headers=["X-Header-Set"]),
        req(host="echo-v2", backend="echo-v2", resp_headers={"X-Header-Set": "v2"}),
        req(host="echo-v2:8080", port=8080, backend="echo-v2",
            resp_headers={"X-Header-Set": "v2"}),
    ]))


def mesh_traffic_split(m):
    routes = [route("mesh-split", [rule([backend("echo-v1", 80)], matches=[exact("/v1")]),
                                   rule([backend("echo-v2", 80)], matches=[exact("/v2")])],
                    port=None)]
    return m.with_routes(routes, lambda: m.expect([
        req("/v1", backend="echo-v1"), req("/v2", backend="echo-v2")]))


def http_answers_by_backend(m, count, client=CLIENT, ip=CLUSTER_IPS["echo"]):
    """Which echo service answered each of `count` GETs from `client` to `ip`:80 (Host echo)."""
    answers = m.agent(client, "http", [
        {"ip": ip, "port": 80, "host": "echo", "path": "/", "repeat": count}])[0]
    names = []
    for a in answers:
        try:
            names.append(json.loads(a["body"])["service"] if a.get("status") == 200 else
                         "status %s" % a.get("status", a.get("error")))
        except (ValueError, KeyError):
            names.append("not an echo answer")
    return names


def mesh_http_route_weight(m):
    routes = [route("mesh-weighted-backends", [rule([backend("echo-v1", 8080, weight=70),
                                                     backend("echo-v2", 8080, weight=30)])])]
    return m.with_routes(routes, lambda: m.expect_weights(
        lambda: http_answers_by_backend(m, WEIGHT_REQUESTS), {"echo-v1": 0.7, "echo-v2": 0.3},
        "requests to echo"))


def mesh_simple_same_namespace(m):
    routes = [route("gateway-conformance-mesh-test", [rule([backend("echo-v1", 8080)])])]
    return m.with_routes(routes, lambda: m.expect(
        [req(host="echo", backend="echo-v1")] * 4))


def mesh_consumer_route(m):
    routes = [route("mesh-echo-add-header",
                    [rule([backend("echo-v1", 80, namespace=MESH_NS)],
                          filters=[response_header_set("X-Header-Set", "set")])],
                    parent="echo-v1", port=None, namespace=CONSUMER_NS,
                    parent_namespace=MESH_NS)]

    def body():
        host = "echo-v1." + MESH_NS
        consumer = m.expect([req(host=host, backend="echo-v1",
                                 resp_headers={"X-Header-Set": "set"})], client=CONSUMER_CLIENT)
        producer = m.expect([req(host=host, backend="echo-v1",
                                 absent_resp_headers=["X-Header-Set"])], client=CLIENT)
        return "from the route's namespace: %s; from the Service's: %s" % (consumer, producer)
    return m.with_routes(routes, body)


def mesh_matching(m):
    routes = [route("mesh-matching", [
        rule([backend("echo-v1")], matches=[prefix("/"), headers_match(version="one")]),
        rule([backend("echo-v2")], matches=[prefix("/v2"), headers_match(version="two")]),
    ])]
    v1, v2 = "echo-v1", "echo-v2"
    return m.with_routes(routes, lambda: m.expect([
        req("/", backend=v1), req("/example", backend=v1),
        req("/", headers={"Version": "one"}, backend=v1),
        req("/v2", backend=v2), req("/v2/example", backend=v2),
        req("/", headers={"Version": "two"}, backend=v2), req("/v2/", backend=v2),
        req("/v2example", backend=v1), req("/foo/v2/example", backend=v1),
    ]))


def mesh_query_param_matching(m):
    def qp(backend_name, *matches):
        return rule([backend(backend_name)], matches=list(matches))
    routes = [route("mesh-query-param-matching", [
        qp("echo-v1", {"queryParams": query_match(animal="whale")}),
        qp("echo-v2", {"queryParams": query_match(animal="dolphin")}),
        qp("echo-v1", prefix("/path1", queryParams=query_match(animal="whale"))),
        qp("echo-v2", dict(headers_match(version="one"),
                           queryParams=query_match(animal="whale"))),
        qp("echo-v1", prefix("/path3", queryParams=query_match(animal="shark")),
           prefix("/path4", queryParams=query_match(animal="kraken"),
                  headers=[{"name": "version", "value": "three"}])),
        qp("echo-v1", prefix("/path5")),
        qp("echo-v2", {"queryParams": query_match(animal="hydra")}),
    ])]
    v1, v2 = "echo-v1", "echo-v2"
    return m.with_routes(routes, lambda: m.expect([
        req("/?animal=whale", backend=v1), req("/?animal=dolphin", backend=v2),
        req("/?animal=whale&otherparam=irrelevant", backend=v1),
        req("/?animal=dolphin&color=yellow", backend=v2),
        req("/?color=blue", status=404), req("/?animal=dog", status=404),
        req("/?animal=whaledolphin", status=404), req("/", status=404),
        req("/path1?animal=whale", backend=v1),
        req("/?animal=whale", headers={"version": "one"}, backend=v2),
        req("/path3?animal=shark", backend=v1),
        req("/path4?animal=kraken", headers={"version": "three"}, backend=v1),
        req("/?animal=shark", status=404), req("/path4?animal=kraken", status=404),
        req("/path5?animal=hydra", backend=v1),
    ]))


def header_modifier_rules(on_backend):
    """The request header modifier case's rules: the filter on the rule, or on its backendRef."""
    def r(path, **mod):
        f = header_modifier(**mod)
        if on_backend:
            return rule([backend("echo-v1", filters=[f])], matches=[prefix(path)])
        return rule([backend("echo-v1")], matches=[prefix(path)], filters=[f])
    rules = [r("/set", set=[("X-Header-Set", "set-overwrites-values")]),
             r("/add", add=[("X-Header-Add", "add-appends-values")]),
             r("/remove", remove=["X-Header-Remove"])]
    if not on_backend:
        rules += [r("/multiple", set=[("X-Header-Set-1", "header-set-1"),
                                      ("X-Header-Set-2", "header-set-2")],
                    add=[("X-Header-Add-1", "header-add-1"), ("X-Header-Add-2", "header-add-2"),
                         ("X-Header-Add-3", "header-add-3")],
                    remove=["X-Header-Remove-1", "X-Header-Remove-2"]),
                  r("/case-insensitivity", set=[("X-Header-Set", "header-set")],
                    add=[("X-Header-Add", "header-add")], remove=["X-Header-Remove"])]
    return rules


def header_modifier_requests(full):
    v1 = "echo-v1"
    requests = [
        req("/set", headers={"Some-Other-Header": "val"}, backend=v1,
            req_headers={"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
        req("/set", headers={"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
            backend=v1,
            req_headers={"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
        req("/add", headers={"Some-Other-Header": "val"}, backend=v1,
            req_headers={"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"}),
        req("/add", headers={"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
            backend=v1, req_headers={"Some-Other-Header": "val",
                                     "X-Header-Add": "some-other-value,add-appends-values"}),
        req("/remove", headers={"X-Header-Remove": "val"}, backend=v1,
            absent_req_headers=["X-Header-Remove"]),
    ]
    if full:
        requests += [
            req("/multiple", headers={"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
                                      "X-Header-Remove-2": "remove-val-2",
                                      "Another-Header": "another-header-val"}, backend=v1,
                req_headers={"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
                             "X-Header-Add-1": "header-add-1",
                             "X-Header-Add-2": "add-val-2,header-add-2",
                             "X-Header-Add-3": "header-add-3",
                             "Another-Header": "another-header-val"},
                absent_req_headers=["X-Header-Remove-1", "X-Header-Remove-2"]),
            req("/case-insensitivity", headers={"x-header-set": "original-val-set",
                                                "x-header-add": "original-val-add",
                                                "x-header-remove": "original-val-remove",
                                                "Another-Header": "another-header-val"},
                backend=v1, req_headers={"X-Header-Set": "header-set",
                                         "X-Header-Add": "original-val-add,header-add",
                                         "Another-Header": "another-header-val"},
                absent_req_headers=["X-Header-Remove"]),
        ]
    return requests


def mesh_request_header_modifier(m):
    routes = [route("mesh-request-header-modifier", header_modifier_rules(False))]
    return m.with_routes(routes, lambda: m.expect(header_modifier_requests(True)))


def mesh_backend_request_header_modifier(m):
    routes = [route("mesh-request-header-modifier", header_modifier_rules(True))]
    return m.with_routes(routes, lambda: m.expect(header_modifier_requests(False)))


def echo_bodies(answers):
    """The echo bodies of the agent's `answers` (None for any answer that is not one)."""
    out = []
    for a in answers:
        try:
            out.append(json.loads(a["body"]) if a.get("status") == 200 else None)
        except (ValueError, KeyError):
            out.append(None)
    return out


def own_backend_headers(echoes):
    """Until `echoes()` (the echo bodies of 100 requests, None for any other answer) shows both
    backends answering, each having seen its own name only in `Backend`: the summary."""
    started = time.monotonic()
    while True:
        seen, problems = collections.Counter(), []
        for echo in echoes():
            if echo is None:
                problems.append("not an echo answer")
                continue
            seen[echo.get("service")] += 1
            got = echo.get("headers", {}).get("backend", [])
            if got != [echo.get("service")]:
                problems.append("%s got Backend %r" % (echo.get("service"), got))
        if not problems and len(seen) == 2:
            return "100 requests: %s, each with its own Backend header" % ", ".join(
                "%s %d" % kv for kv in sorted(seen.items()))
        if time.monotonic() - started > EVENTUAL_S:
            raise Failed("after %.0f s: %s (answered by %s)" % (
                EVENTUAL_S, "; ".join(problems[:4]) or "one backend only", dict(seen)))
        time.sleep(0.5)


def backend_header_modifier_weights(m):
    """Not a mesh case upstream (HTTPRouteRequestHeaderModifierBackendWeights is the Gateway
    profile's), the same on the mesh: two backendRefs of equal weight, each setting `Backend` to
    its own name; every answering backend saw its own name, never the other's."""
    routes = [route("request-header-modifier-backend-weights", [rule([
        backend(name, 8080, weight=10, filters=[header_modifier(set=[("Backend", name)])])
        for name in ("echo-v1", "echo-v2")])])]
    return m.with_routes(routes, lambda: own_backend_headers(lambda: echo_bodies(m.agent(
        CLIENT, "http", [{"ip": CLUSTER_IPS["echo"], "port": 80, "host": "echo", "path": "/",
                          "repeat": 100}])[0])))


def mesh_rewrite_path(m):
    modify = header_modifier(set=[("X-Header-Set", "set-overwrites-values")],
                             add=[("X-Header-Add", "header-val-1"),
                                  ("X-Header-Add-Append", "header-val-2")],
                             remove=["X-Header-Remove"])
    routes = [route("mesh-rewrite-path", [
        rule([backend("echo-v1", 80)], matches=[prefix("/prefix/one")],
             filters=[rewrite(path_prefix="/one")]),
        rule([backend("echo-v1", 80)], matches=[prefix("/strip-prefix")],
             filters=[rewrite(path_prefix="/")]),
        rule([backend("echo-v1", 80)], matches=[prefix("/full/one")],
             filters=[rewrite(full_path="/one")]),
        rule([backend("echo-v1", 80)], matches=[prefix("/full/rewrite-path-and-modify-headers")],
             filters=[rewrite(full_path="/test"), modify]),
        rule([backend("echo-v1", 80)],
             matches=[prefix("/prefix/rewrite-path-and-modify-headers")],
             filters=[rewrite(path_prefix="/prefix"), modify]),
    ])]
    sent = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1",
            "X-Header-Set": "set-val"}
    got = {"X-Header-Add": "header-val-1", "X-Header-Add-Append": "append-val-1,header-val-2",
           "X-Header-Set": "set-overwrites-values"}
    v1 = "echo-v1"
    return m.with_routes(routes, lambda: m.expect([
        req("/prefix/one/two", backend=v1, req_path="/one/two"),
        req("/strip-prefix/three", backend=v1, req_path="/three"),
        req("/strip-prefix", backend=v1, req_path="/"),
        req("/full/one/two", backend=v1, req_path="/one"),
        req("/full/rewrite-path-and-modify-headers/test", headers=sent, backend=v1,
            req_path="/test", req_headers=got, absent_req_headers=["X-Header-Remove"]),
        req("/prefix/rewrite-path-and-modify-headers/one", headers=sent, backend=v1,
            req_path="/prefix/one", req_headers=got, absent_req_headers=["X-Header-Remove"]),
    ]))


def redirect_route(name, pairs):
    return [route(name, [rule(matches=[prefix(path)], filters=[redirect(**spec)])
                         for path, spec in pairs])]


def mesh_redirect_path(m):
    routes = redirect_route("mesh-redirect-path", [
        ("/original-prefix", {"path_prefix": "/replacement-prefix"}),
        ("/full", {"full_path": "/full-path-replacement"}),
        ("/path-and-host", {"hostname": "example.org", "path_prefix": "/replacement-prefix"}),
        ("/path-and-status", {"path_prefix": "/replacement-prefix", "status": 301}),
        ("/full-path-and-host", {"hostname": "example.org", "full_path": "/replacement-full"}),
        ("/full-path-and-status", {"full_path": "/replacement-full", "status": 301}),
    ])
    return m.with_routes(routes, lambda: m.expect([
        req("/original-prefix/lemon", status=302,
            location={"path": "/replacement-prefix/lemon"}),
        req("/full/path/original", status=302, location={"path": "/full-path-replacement"}),
        req("/path-and-host", status=302,
            location={"host": "example.org", "path": "/replacement-prefix"}),
        req("/path-and-status", status=301, location={"path": "/replacement-prefix"}),
        req("/full-path-and-host", status=302,
            location={"host": "example.org", "path": "/replacement-full"}),
        req("/full-path-and-status", status=301, location={"path": "/replacement-full"}),
    ]))


def mesh_redirect_port(m):
    routes = redirect_route("mesh-redirect-port", [
        ("/port", {"port": 8083}),
        ("/port-and-host", {"hostname": "example.org", "port": 8083}),
        ("/port-and-status", {"port": 8083, "status": 301}),
        ("/port-and-host-and-status", {"port": 8083, "hostname": "example.org", "status": 302}),
    ])
    return m.with_routes(routes, lambda: m.expect([
        req("/port", status=302, location={"port": 8083}),
        req("/port-and-host", status=302, location={"host": "example.org", "port": 8083}),
        req("/port-and-status", status=301, location={"port": 8083}),
        req("/port-and-host-and-status", status=302,
            location={"host": "example.org", "port": 8083}),
    ]))


def mesh_scheme_redirect(m):
    routes = redirect_route("mesh-redirect-scheme", [
        ("/scheme", {"scheme": "https"}),
        ("/scheme-and-host", {"hostname": "example.org", "scheme": "https"}),
        ("/scheme-and-status", {"scheme": "https", "status": 301}),
        ("/scheme-and-host-and-status", {"scheme": "https", "status": 302,
                                         "hostname": "example.org"}),
    ])
    return m.with_routes(routes, lambda: m.expect([
        req("/scheme", status=302, location={"scheme": "https"}),
        req("/scheme-and-host", status=302, location={"scheme": "https", "host": "example.org"}),
        req("/scheme-and-status", status=301, location={"scheme": "https"}),
        req("/scheme-and-host-and-status", status=302,
            location={"scheme": "https", "host": "example.org"}),
    ]))


def mesh_redirect_host_and_status(m):
    routes = redirect_route("mesh-redirect-host-and-status", [
        ("/hostname-redirect", {"hostname": "example.org"}),
        ("/host-and-status", {"status": 301, "hostname": "example.org"}),
    ])
    return m.with_routes(routes, lambda: m.expect([
        req("/hostname-redirect", status=302, location={"host": "example.org"}),
        req("/host-and-status", status=301, location={"host": "example.org"}),
    ]))


def status_redirect(code, path):
    def case(m):
        routes = redirect_route("mesh-%d-redirect" % code, [(path, {"status": code})])
        return m.with_routes(routes, lambda: m.expect([req(path, status=code, location={})]))
    return case


def mesh_named_rule(m):
    routes = [route("mesh-http-named-rules", [
        rule([backend("echo-v1")], matches=[prefix("/named")], name="named-rule"),
        rule([backend("echo-v2")], matches=[prefix("/unnamed")]),
    ])]
    return m.with_routes(routes, lambda: m.expect([
        req("/named", backend="echo-v1", req_path="/named"),
        req("/unnamed", backend="echo-v2", req_path="/unnamed"),
    ]))


def mesh_grpc_weight(m):
    routes = [route("mesh-grpc-weighted-backends", [rule([
        backend("echo-v1", GRPC_PORT, weight=70), backend("echo-v2", GRPC_PORT, weight=30),
        # A Service that does not exist, weighted 0: it must not disturb the split.
        backend("echo-v3", GRPC_PORT, weight=0)])], port=GRPC_PORT, kind="GRPCRoute")]

    def send():
        answers = m.grpc(CLIENT, [m.grpc_call(repeat=WEIGHT_REQUESTS)])[0]
        return [a["body"]["service"] if a["code"] == "OK" else a["code"] for a in answers]
    return m.with_routes(routes, lambda: m.expect_weights(
        send, {"echo-v1": 0.7, "echo-v2": 0.3}, "gRPC calls to echo:7070"))


def mesh_grpc_request_header_modifier(m):
    def r(case, backend_name, **mod):
        return rule([backend(backend_name, GRPC_PORT)],
                    matches=[{"headers": [{"name": "x-test-case", "value": case}]}],
                    filters=[header_modifier(**mod)])
    routes = [route("grpc-request-header-modifier", [
        r("set", "echo-v1", set=[("x-header-set", "set-overwrites-values")]),
        r("add", "echo-v1", add=[("x-header-add", "add-appends-values")]),
        r("remove", "echo-v1", remove=["x-header-remove"]),
        r("multi", "echo-v2", set=[("x-header-set-1", "header-set-1"),
                                   ("x-header-set-2", "header-set-2")],
          add=[("x-header-add-1", "header-add-1"), ("x-header-add-2", "header-add-2")],
          remove=["x-header-remove-1", "x-header-remove-2"]),
    ], port=GRPC_PORT, kind="GRPCRoute")]
    cases = [
        (CLIENT, "echo-v1", {"x-test-case": "set", "some-other-header": "this-header-should-be-set",
                             "x-header-set": "this-value-should-be-overwritten"},
         {"some-other-header": "this-header-should-be-set",
          "x-header-set": "set-overwrites-values"}, []),
        (CLIENT, "echo-v1", {"x-test-case": "add", "x-header-add": "this-value-should-be-appended"},
         {"x-header-add": "this-value-should-be-appended,add-appends-values"}, []),
        (CLIENT, "echo-v1", {"x-test-case": "remove", "x-header-remove": "this-should-be-removed"},
         {}, ["x-header-remove"]),
        (CLIENT_V2, "echo-v2", {"x-test-case": "multi", "x-header-set-2": "set-header-2",
                                "x-header-add-2": "add-header-2",
                                "x-header-remove-2": "should-be-removed-2"},
         {"x-header-set-1": "header-set-1", "x-header-set-2": "header-set-2",
          "x-header-add-1": "header-add-1", "x-header-add-2": "add-header-2,header-add-2"},
         ["x-header-remove-1", "x-header-remove-2"]),
    ]

    def problems():
        found = []
        for client, want_backend, sent, want, absent in cases:
            a = m.grpc(client, [m.grpc_call(metadata=sent)])[0]
            label = "x-test-case %s from %s" % (sent["x-test-case"], client)
            if a["code"] != "OK":
                found.append("%s: %s %s" % (label, a["code"], a.get("details")))
                continue
            body = a["body"]
            got = body.get("metadata", {})
            if body.get("service") != want_backend:
                found.append("%s: answered by %s, expected %s" % (label, body.get("service"),
                                                                   want_backend))
            for k, v in dict(want, **{"x-test-case": sent["x-test-case"]}).items():
                if ",".join(got.get(k, [])) != v:
                    found.append("%s: the backend got %s %r, expected %r" % (label, k,
                                                                            got.get(k), v))
            for k in absent:
                if k in got:
                    found.append("%s: the backend got %s %r, expected none" % (label, k, got[k]))
        return found

    def body():
        started = time.monotonic()
        streak = 0
        while True:
            found = problems()
            streak = 0 if found else streak + 1
            if streak >= CONSISTENT_ROUNDS:
                return "%d gRPC calls as expected, %d rounds in a row (%.1f s)" % (
                    len(cases), CONSISTENT_ROUNDS, time.monotonic() - started)
            if time.monotonic() - started > EVENTUAL_S:
                raise Failed("after %d s: %s" % (EVENTUAL_S, "; ".join(found[:4])))
            time.sleep(0.3)
    return m.with_routes(routes, body)


def timeout_case(field, path, disabled_path):
    def case(m):
        routes = [route("mesh-%s" % path.strip("/"), [
            rule([backend("echo-v1")], matches=[prefix(path)], timeouts={field: "500ms"}),
            rule([backend("echo-v1")], matches=[prefix(disabled_path)], timeouts={field: "0s"}),
        ])]
        return m.with_routes(routes, lambda: m.expect([
            req(path, backend="echo-v1"),
            req(path + "?delay=1s", status=504),
            req(disabled_path + "?delay=1s", backend="echo-v1"),
        ]))
    return case


def retry_query(code, succeed_after, delay=None):
    q = "responseCode=%d&succeedAfter=%d&uuid={uuid}" % (code, succeed_after)
    return q + ("&delayRetry=%s" % delay if delay else "")


def http_route_retry(m):
    a3, a2 = "/retry/code-500-attempts-3", "/retry/code-all-attempts-2"
    routes = [route("retries", [
        rule([backend("echo-v1")], matches=[prefix(a3)], retry={"codes": [500], "attempts": 3}),
        rule([backend("echo-v1")], matches=[prefix(a2)],
             retry={"codes": [500, 502, 503, 504], "attempts": 2}),
    ])]
    requests = [req(a3 + "?" + retry_query(500, 2), backend="echo-v1"),
                req(a3 + "?" + retry_query(500, 4), status=500),
                req(a3 + "?" + retry_query(503, 2), status=503)]
    for code in (500, 502, 503, 504):
        requests += [req(a2 + "?" + retry_query(code, 1), backend="echo-v1"),
                     req(a2 + "?" + retry_query(code, 3), status=code)]
    return m.with_routes(routes, lambda: m.expect(requests))


def http_route_retry_with_timeouts(m):
    b, r = "/retry/backend-request-timeout-200ms", "/retry/request-timeout-200ms"
    routes = [route("retries-with-timeouts", [
        rule([backend("echo-v1")], matches=[prefix(b)], retry={"attempts": 2},
             timeouts={"backendRequest": "200ms"}),
        rule([backend("echo-v1")], matches=[prefix(r)], retry={"codes": [500], "attempts": 5},
             timeouts={"backendRequest": "200ms", "request": "400ms"}),
    ])]
    return m.with_routes(routes, lambda: m.expect([
        req(b + "?" + retry_query(500, 2, "300ms"), backend="echo-v1"),
        req(b + "?" + retry_query(500, 3, "300ms"), status=504),
        req(r + "?" + retry_query(500, 1), backend="echo-v1"),
        req(r + "?" + retry_query(500, 4, "100ms"), status=504),
    ]))


def http_route_retry_connection_error(m):
    # The echo resets the connection of the first succeedAfter requests of a uuid (no
    # responseCode); 3 retries get past 2 resets, not past 4.
    path = "/retry/no-status-code-attempts-3"
    routes = [route("retries-connection-error", [
        rule([backend("echo-v1")], matches=[prefix(path)], retry={"attempts": 3}),
    ])]
    return m.with_routes(routes, lambda: m.expect([
        req(path + "?succeedAfter=2&uuid={uuid}", backend="echo-v1"),
        req(path + "?succeedAfter=4&uuid={uuid}", status=(500, 503)),
    ]))


def conditions_of(obj, parent):
    for p in (obj or {}).get("status", {}).get("parents", []):
        if p.get("parentRef", {}).get("name") == parent:
            return {c["type"]: c for c in p.get("conditions", [])}
    return {}


def route_status(m):
    """Accepted and ResolvedRefs per parentRef with observedGeneration, as read back: a route
    whose backend exists, changed once (generation 2), and one whose backend does not."""
    good = route("status-resolved", [rule([backend("echo-v1")], matches=[prefix("/status")])])
    missing = route("status-backend-missing",
                    [rule([backend("echo-v9")], matches=[prefix("/status-missing")])])

    def status_is(doc, accepted, resolved, reason=None):
        def ok():
            obj = m.route_object(doc["kind"], doc["metadata"]["namespace"],
                                 doc["metadata"]["name"])
            conds = conditions_of(obj, "echo")
            generation = (obj or {}).get("metadata", {}).get("generation")
            a, r = conds.get("Accepted", {}), conds.get("ResolvedRefs", {})
            if (a.get("status"), r.get("status")) != (accepted, resolved):
                return None
            if reason and r.get("reason") != reason:
                return None
            if generation is None or any(c.get("observedGeneration") != generation
                                         for c in (a, r)):
                return None
            return "Accepted %s, ResolvedRefs %s (%s), observedGeneration %s" % (
                a["status"], r["status"], r.get("reason"), generation)
        return m.run.wait_until(ok, EVENTUAL_S, "%s's status" % doc["metadata"]["name"],
                                lambda: json.dumps((m.route_object(
                                    doc["kind"], doc["metadata"]["namespace"],
                                    doc["metadata"]["name"]) or {}).get("status"))[:1500])

    def body():
        first = status_is(good, "True", "True")
        changed = json.loads(json.dumps(good))
        changed["spec"]["rules"][0]["backendRefs"][0]["name"] = "echo-v2"
        changed["metadata"]["generation"] = 2  # what the API server sets on a spec change
        m.apply([changed])
        second = status_is(changed, "True", "True")
        third = status_is(missing, "True", "False", "BackendNotFound")
        return "%s: %s; changed: %s; %s: %s" % (good["metadata"]["name"], first, second,
                                               missing["metadata"]["name"], third)
    return m.with_routes([good, missing], body)


# --- the Gateway profile --------------------------------------------------------------------------
#
# The Gateway profile's cases against a gateway proxy: the sidecar binary with --gateway, in a pod
# of its own (the proxy image, no capture) in gateway-conformance-mesh under the service account
# same-namespace-meshlet, serving the Gateway same-namespace (class meshlet, one HTTP listener on
# port 80, routes of its namespace). Upstream's backends infra-backend-v1/-v2/-v3 are
# echo-v1/-v2/-v3 here, in the Gateway's namespace (upstream's gateway-conformance-infra), and
# web-backend is in gateway-conformance-web-backend (gateway.yaml); requests come from the
# kube-apiserver pod, which has no sidecar (a client outside the mesh), to the gateway pod's
# address. The other Gateways of upstream's cases get gateway pods of their own for the case.

GATEWAY_NAME = "same-namespace"
GATEWAY_CLASS = "meshlet"
GATEWAY_CONTROLLER = "meshlet.io/gateway-controller"
GATEWAY_POD = "gateway-same-namespace-0"
GATEWAY_CLIENT = "kube-apiserver"
# How long a case's gateway pod may drain when removed (its clients are done by then).
GATEWAY_GRACE_S = 5
# gateway.yaml's namespaces, their Services' ClusterIPs, and the certificate Secrets.
WEB_NS = "gateway-conformance-web-backend"
APP_NS = "gateway-conformance-app-backend"
GATEWAY_CLUSTER_IPS = {"echo-v3": "240.241.1.13", "web-backend": "240.241.1.14",
                       "app-backend-v1": "240.241.1.15", "app-backend-v2": "240.241.1.16",
                       "manual-endpointslices": "240.241.1.17"}
INFRA_CERTIFICATE = "tls-validity-checks-certificate"  # in MESH_NS
WEB_CERTIFICATE = "certificate"                         # in WEB_NS


def gateway_route(name, rules, hostnames=None, section=None, namespace=MESH_NS,
                  gateway=GATEWAY_NAME):
    parent_ref = {"group": GROUP, "kind": "Gateway", "name": gateway, "namespace": MESH_NS}
    if section:
        parent_ref["sectionName"] = section
    doc = {"apiVersion": API_VERSION, "kind": "HTTPRoute",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"parentRefs": [parent_ref], "rules": rules}}
    if hostnames:
        doc["spec"]["hostnames"] = list(hostnames)
    return doc


def kube_object(m, plural, namespace, name, group=GROUP):
    """An object as the fake Kubernetes API server stores it (with the status the control plane
    wrote), or None."""
    path = "/apis/%s/v1/" % group
    if namespace:
        path += "namespaces/%s/" % namespace
    try:
        obj = m.cluster.kube_get("%s%s/%s" % (path, plural, name))
    except (harness.E2EError, ValueError, subprocess.SubprocessError):
        return None
    return obj if obj and obj.get("kind") != "Status" else None


def gateway_doc(name, listeners):
    """A Gateway of class meshlet in the Gateways' namespace (upstream's infra namespace)."""
    return {"apiVersion": API_VERSION, "kind": "Gateway",
            "metadata": {"name": name, "namespace": MESH_NS, "generation": 1},
            "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": listeners}}


def listener(name, port=80, protocol="HTTP", hostname=None, allowed="Same", kinds=None,
             certificates=()):
    """A listener; `allowed`: allowedRoutes.namespaces.from (a dict: a Selector's matchLabels);
    `kinds`: allowedRoutes.kinds; `certificates`: certificateRefs (dicts)."""
    out = {"name": name, "port": port, "protocol": protocol, "allowedRoutes": {
        "namespaces": {"from": "Selector", "selector": {"matchLabels": allowed}}
        if isinstance(allowed, dict) else {"from": allowed}}}
    if hostname:
        out["hostname"] = hostname
    if kinds is not None:
        out["allowedRoutes"]["kinds"] = kinds
    if certificates:
        out["tls"] = {"certificateRefs": list(certificates)}
    return out


def secret_ref(name, namespace=None, group="", kind="Secret"):
    ref = {"group": group, "kind": kind, "name": name}
    if namespace:
        ref["namespace"] = namespace
    return ref


def tls_secret(name, namespace, cert):
    """A kubernetes.io/tls Secret of `cert` (certificate path, key path)."""
    data = {}
    for key, path in (("tls.crt", cert[0]), ("tls.key", cert[1])):
        with open(path, "rb") as f:
            data[key] = base64.b64encode(f.read()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace}, "data": data}


def setup_gateway(m):
    """GatewayClass meshlet and Gateway same-namespace in the Kubernetes API server, the gateway
    pod played, until the Gateway is Programmed with the pod's address; and what the other cases
    share (gateway.yaml: echo-v3, web-backend and their namespaces; the certificate Secrets,
    made here from a CA of the run's own)."""
    c = m.cluster
    started = time.monotonic()
    c.kube_put("gatewayclasses", {
        "apiVersion": API_VERSION, "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS, "generation": 1},
        "spec": {"controllerName": GATEWAY_CONTROLLER}})
    CLUSTER_IPS.update(GATEWAY_CLUSTER_IPS)
    documents = c.inject([GATEWAY_YAML])
    for doc in documents:
        ns = doc["metadata"].get("namespace", MESH_NS)
        if doc["kind"] == "Namespace":
            c.kube_put("namespaces", doc)
        elif doc["kind"] == "ServiceAccount":
            c.create_join_token(doc["metadata"]["name"], namespace=ns)
    backends = [("%s-0" % d["metadata"]["name"], d["spec"]["template"],
                 d["metadata"]["namespace"]) for d in documents if d["kind"] == "Deployment"]
    pods = play_gateways(m, [gateway_doc(GATEWAY_NAME, [listener("http")])],
                         wait=lambda: c.wait_ready([b[0] for b in backends]), more=backends)
    m.publish_services([d for d in documents if d["kind"] == "Service"], clients=())
    d = os.path.join(m.run.dir, "gateway-certificates")
    os.makedirs(d)
    if cluster_lib.INTEGRATION_DIR not in sys.path:
        sys.path.insert(0, cluster_lib.INTEGRATION_DIR)
    import mesh_util
    ca = mesh_util.make_ca(d, "gateway-conformance-ca")
    m.gateway_ca = ca[0]
    # Upstream's names: *.org (which Python's hostname check does not take) and the names sent
    # (secure.test.com: GatewayModifyListeners' HTTPS listener; https-listener.org: the
    # re-encrypting BackendTLSPolicy case's).
    infra = mesh_util.make_server_cert(d, INFRA_CERTIFICATE, ca, ",".join(
        "DNS:" + n for n in ("*.org", "example.org", "second-example.org",
                             "unknown-example.org", "secure.test.com", "https-listener.org")))
    c.kube_put("secrets", tls_secret(INFRA_CERTIFICATE, MESH_NS, infra))
    web = mesh_util.make_server_cert(d, "web-backend-certificate", ca, "DNS:*")
    c.kube_put("secrets", tls_secret(WEB_CERTIFICATE, WEB_NS, web))
    m.wait_acked()
    return "gateway pod %s (%s) serving Gateway %s/%s, Programmed; %s ready; in %.1f s" % (
        pods[0], c.pods[pods[0]]["ip"], MESH_NS, GATEWAY_NAME, ", ".join(b[0] for b in backends),
        time.monotonic() - started)


def gateway_pod(name):
    return "gateway-%s-0" % name


def play_gateways(m, gateways, wait=None, more=(), ips=None, programmed=True):
    """Each Gateway (gateway_doc()) put into the Kubernetes API server and its proxy played as
    the pod the control plane deploys in a cluster (the Deployment `meshctl inject
    --gateway-class meshlet` writes for it, one replica), all at once and with the pods of `more`
    ((name, template, namespace)); `wait`() while they start; until every Gateway is Programmed
    with its pod's address (not waited for without `programmed`). `ips`: pod name -> the address
    a pod is played at (a Gateway's static address: its Service's externalIP, which the network
    routes to the pod). Returns the gateways' pods."""
    c = m.cluster
    started = time.monotonic()
    pods = []
    for gateway in gateways:
        c.kube_put("gateways", gateway)
    for gateway in gateways:
        name = gateway["metadata"]["name"]
        path = os.path.join(m.run.dir, "gateway-%s.json" % name)
        with open(path, "w") as f:
            json.dump(gateway, f)
        documents = c.inject([path], ("--gateway-class", GATEWAY_CLASS))
        for doc in documents:
            if doc["kind"] == "ServiceAccount":
                c.create_join_token(doc["metadata"]["name"], namespace=MESH_NS)
        deployment = next(d for d in documents if d["kind"] == "Deployment")
        template = deployment["spec"]["template"]
        # podman 4.3 does not apply a pod's sysctls (the unprivileged-port one a cluster
        # applies): here the proxy runs as root to bind ports below 1024.
        template["spec"].pop("securityContext", None)
        template["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0, "runAsGroup": 0}
        pods.append((gateway_pod(name), template, MESH_NS))
    pods = c.play_pods(pods + list(more), ips=ips)[:len(gateways)]
    played = time.monotonic()
    if wait:
        wait()
    c.wait_ready(pods)
    for gateway, pod in zip(gateways, pods if programmed else []):
        name, ip = gateway["metadata"]["name"], c.pods[pod]["ip"]

        def programmed():
            gw = kube_object(m, "gateways", MESH_NS, name)
            conds = {x["type"]: x for x in (gw or {}).get("status", {}).get("conditions", [])}
            addresses = [a.get("value") for a in (gw or {}).get("status", {}).get("addresses",
                                                                                  [])]
            return conds.get("Programmed", {}).get("status") == "True" and ip in addresses
        m.run.wait_until(programmed, EVENTUAL_S, "Gateway %s to be Programmed at %s" % (
            name, ip), lambda: json.dumps((kube_object(
                m, "gateways", MESH_NS, name) or {}).get("status"))[:1500])
    m.wait_acked()
    harness.log("gateway pods %s played in %.1f s, Programmed %.1f s later" % (
        ", ".join(pods), played - started, time.monotonic() - played))
    return pods


def remove_gateways(m, gateways):
    """The Gateways' pods deleted, then the Gateways."""
    started = time.monotonic()
    m.cluster.delete_pods([gateway_pod(g["metadata"]["name"]) for g in gateways
                           if gateway_pod(g["metadata"]["name"]) in m.cluster.pods],
                          grace=GATEWAY_GRACE_S)
    for gateway in gateways:
        m.cluster.kube_delete("gateways", gateway["metadata"]["name"], MESH_NS)
    m.wait_acked()
    harness.log("Gateways %s and their pods removed in %.1f s" % (", ".join(
        g["metadata"]["name"] for g in gateways), time.monotonic() - started))


def with_gateways(m, gateways, body, objects=(), ips=None, programmed=True):
    """`objects` ((plural, document): Secrets, ReferenceGrants) and `gateways` put into the API
    server, the gateways' pods played (play_gateways' `ips` and `programmed`); body(); all
    removed again."""
    for plural, doc in objects:
        m.cluster.kube_put(plural, doc)
    try:
        play_gateways(m, gateways, ips=ips, programmed=programmed)
        return body()
    finally:
        remove_gateways(m, gateways)
        for plural, doc in objects:
            m.cluster.kube_delete(plural, doc["metadata"]["name"], doc["metadata"]["namespace"])


def through_gateway(m, requests, pod=GATEWAY_POD, port=80, ca=None):
    """`requests` (made with req()) sent to the listener on `port` of a gateway pod instead;
    with `ca`, over HTTPS (the certificate verified against `ca` for the Host's name, the SNI)."""
    out = []
    for r in requests:
        r = json.loads(json.dumps(r))
        r["ip"], r["port"] = m.cluster.pods[pod]["ip"], port
        if ca:
            r["tls"] = {"ca": ca}
        out.append(r)
    return out


def gateway_expect(m, requests, **where):
    return m.expect(through_gateway(m, requests, **where), client=GATEWAY_CLIENT)


def route_accepted(m, doc, gateway=GATEWAY_NAME):
    """Until each of the route's entries for the Gateway (one per parentRef naming it) is
    Accepted and ResolvedRefs with the route's generation, written by the gateway controller."""
    def ok():
        obj = m.route_object("HTTPRoute", doc["metadata"]["namespace"], doc["metadata"]["name"])
        entries = [p for p in (obj or {}).get("status", {}).get("parents", [])
                   if p.get("parentRef", {}).get("name") == gateway and
                   p.get("controllerName") == GATEWAY_CONTROLLER]
        wanted = sum(1 for p in doc["spec"]["parentRefs"] if p["name"] == gateway)
        gen = (obj or {}).get("metadata", {}).get("generation")
        for p in entries:
            conds = {x["type"]: x for x in p.get("conditions", [])}
            if not all(conds.get(t, {}).get("status") == "True" and
                       conds[t].get("observedGeneration") == gen
                       for t in ("Accepted", "ResolvedRefs")):
                return None
        return "Accepted and ResolvedRefs" if entries and len(entries) == wanted else None
    return m.run.wait_until(ok, EVENTUAL_S, "%s accepted by the Gateway %s" % (
        doc["metadata"]["name"], gateway), lambda: m.describe_status(doc))


def gw_simple_same_namespace(m):
    r = gateway_route("gateway-conformance-infra-test", [rule([backend("echo-v1")])])

    def body():
        status = route_accepted(m, r)
        return "%s; %s" % (status, gateway_expect(m, [req("/", backend="echo-v1")]))
    return m.with_routes([r], body)


def gw_exact_path_matching(m):
    r = gateway_route("exact-path-matching", [
        rule([backend("echo-v1")], matches=[exact("/one")]),
        rule([backend("echo-v2")], matches=[exact("/two")])])
    return m.with_routes([r], lambda: gateway_expect(m, [
        req("/one", backend="echo-v1"), req("/two", backend="echo-v2"),
        req("/", status=404), req("/one/example", status=404), req("/two/", status=404),
        req("/Two", status=404), req("/on", status=404), req("/One", status=404)]))


def gw_path_match_order(m):
    """Rules in an order against precedence: an exact path wins over every prefix, and the longer
    prefix over the shorter, whatever rule lists it first."""
    r = gateway_route("path-matching-order", [
        rule([backend("echo-v1")], matches=[exact("/match")]),
        rule([backend("echo-v2")], matches=[exact("/match/exact")]),
        rule([backend("echo-v3")], matches=[exact("/match/exact/one")]),
        rule([backend("echo-v3")], matches=[prefix("/match/")]),
        rule([backend("echo-v1")], matches=[prefix("/match/prefix/")]),
        rule([backend("echo-v2")], matches=[prefix("/match/prefix/one")])])
    return m.with_routes([r], lambda: gateway_expect(m, [
        req("/match/exact/one", backend="echo-v3"), req("/match/exact", backend="echo-v2"),
        req("/match", backend="echo-v1"), req("/match/prefix/one/any", backend="echo-v2"),
        req("/match/prefix/any", backend="echo-v1"), req("/match/any", backend="echo-v3")]))


def gw_matching(m):
    r = gateway_route("matching", [
        rule([backend("echo-v1")], matches=[prefix("/"), headers_match(version="one")]),
        rule([backend("echo-v2")], matches=[prefix("/v2"), headers_match(version="two")])])
    v1, v2 = "echo-v1", "echo-v2"
    return m.with_routes([r], lambda: gateway_expect(m, [
        req("/", backend=v1), req("/example", backend=v1),
        req("/", headers={"Version": "one"}, backend=v1),
        req("/v2", backend=v2), req("/v2/example", backend=v2),
        req("/", headers={"Version": "two"}, backend=v2), req("/v2/", backend=v2),
        req("/v2example", backend=v1), req("/foo/v2/example", backend=v1)]))


def gw_header_matching(m):
    def r(backend_name, **pairs):
        return rule([backend(backend_name)], matches=[headers_match(**pairs)])
    route_doc = gateway_route("header-matching", [
        r("echo-v1", version="one"), r("echo-v2", version="two"),
        r("echo-v1", version="two", color="orange"),
        r("echo-v1", color="blue"), r("echo-v1", color="green"),
        r("echo-v2", color="red"), r("echo-v2", color="yellow")])
    v1, v2 = "echo-v1", "echo-v2"
    return m.with_routes([route_doc], lambda: gateway_expect(m, [
        req(headers={"Version": "one"}, backend=v1), req(headers={"Version": "two"}, backend=v2),
        req(headers={"Version": "two", "Color": "orange"}, backend=v1),
        req(headers={"Version": "foobar", "Color": "orange"}, status=404),
        req(headers={"Color": "blue"}, backend=v1), req(headers={"Color": "green"}, backend=v1),
        req(headers={"Color": "red"}, backend=v2), req(headers={"Color": "yellow"}, backend=v2),
        req(headers={"Color": "purple"}, status=404),
        req(headers={"Version": "One"}, status=404)]))


def gw_request_header_modifier(m):
    r = gateway_route("request-header-modifier", header_modifier_rules(False))
    return m.with_routes([r], lambda: gateway_expect(m, header_modifier_requests(True)))


def gateway_parent_conditions(m, doc, gateway=GATEWAY_NAME):
    """The route's conditions for the Gateway (gateway controller's entry), with its generation."""
    obj = m.route_object("HTTPRoute", doc["metadata"]["namespace"], doc["metadata"]["name"])
    for p in (obj or {}).get("status", {}).get("parents", []):
        if p.get("parentRef", {}).get("name") == gateway and \
                p.get("controllerName") == GATEWAY_CONTROLLER:
            return {x["type"]: x for x in p.get("conditions", [])}, obj["metadata"].get(
                "generation")
    return {}, None


def wait_route_condition(m, doc, kind, status, reason, gateway=GATEWAY_NAME):
    def ok():
        conds, gen = gateway_parent_conditions(m, doc, gateway)
        c = conds.get(kind, {})
        if (c.get("status"), c.get("reason")) == (status, reason) and \
                c.get("observedGeneration") == gen:
            return "%s %s (%s)" % (kind, status, reason)
        return None
    return m.run.wait_until(ok, EVENTUAL_S, "%s's %s to be %s/%s" % (
        doc["metadata"]["name"], kind, status, reason), lambda: m.describe_status(doc))


def gw_weight(m):
    r = gateway_route("weighted-backends", [rule([backend("echo-v1", weight=70),
                                                  backend("echo-v2", weight=30)])])

    def send():
        return http_answers_by_backend(m, WEIGHT_REQUESTS, client=GATEWAY_CLIENT,
                                       ip=m.cluster.pods[GATEWAY_POD]["ip"])
    return m.with_routes([r], lambda: m.expect_weights(
        send, {"echo-v1": 0.7, "echo-v2": 0.3}, "requests through the gateway"))


def gw_invalid_backend(name, backend_ref, reason):
    """A rule whose backendRef cannot be resolved: ResolvedRefs False with `reason`, the route
    still Accepted, and its requests answered 500."""
    def case(m):
        r = gateway_route(name, [rule([backend_ref])])

        def body():
            accepted = wait_route_condition(m, r, "Accepted", "True", "Accepted")
            resolved = wait_route_condition(m, r, "ResolvedRefs", "False", reason)
            return "%s; %s; %s" % (accepted, resolved, gateway_expect(m, [req("/", status=500)]))
        return m.with_routes([r], body)
    return case


def gw_invalid_parent(name, **parent):
    """A parentRef naming no listener of the Gateway (sectionName or port): Accepted False
    NoMatchingParent."""
    def case(m):
        r = gateway_route(name, [rule([backend("echo-v1")])])
        r["spec"]["parentRefs"][0].update(parent)
        return m.with_routes([r], lambda: wait_route_condition(
            m, r, "Accepted", "False", "NoMatchingParent"))
    return case


def listener_attached_routes(m):
    gw = kube_object(m, "gateways", MESH_NS, GATEWAY_NAME) or {}
    return {x.get("name"): x.get("attachedRoutes")
            for x in gw.get("status", {}).get("listeners", [])}


def gw_attached_routes(m):
    """The listener's attachedRoutes counts the routes attached to it: 1 with one route, 2 with
    a second, and a route whose parentRef names no listener is not counted."""
    routes = [gateway_route("http-route-%d" % i, [rule([backend("echo-v1")])]) for i in (1, 2)]
    bad = gateway_route("http-route-unattached", [rule([backend("echo-v1")])], section="nope")

    def counted(n):
        return m.run.wait_until(lambda: listener_attached_routes(m).get("http") == n,
                                EVENTUAL_S, "attachedRoutes %d" % n,
                                lambda: json.dumps(listener_attached_routes(m)))

    def body():
        counted(1)
        m.apply([routes[1], bad])
        try:
            wait_route_condition(m, bad, "Accepted", "False", "NoMatchingParent")
            counted(2)
        finally:
            m.delete([routes[1], bad])
        return "attachedRoutes 1, then 2 with a second route (not counting one of no listener)"
    return m.with_routes(routes[:1], body)


def wait_object_generation(m, plural, namespace, name, generation, types):
    def ok():
        obj = kube_object(m, plural, namespace, name) or {}
        conds = {x["type"]: x for x in obj.get("status", {}).get("conditions", [])}
        return all(conds.get(t, {}).get("status") == "True" and
                   conds[t].get("observedGeneration") == generation for t in types)
    m.run.wait_until(ok, EVENTUAL_S, "%s %s's %s at observedGeneration %d" % (
        plural, name, "/".join(types), generation), lambda: json.dumps((kube_object(
            m, plural, namespace, name) or {}).get("status"))[:1500])


def gw_gateway_generation_bump(m):
    """The Gateway's spec changed (a listener added, then removed): its conditions'
    observedGeneration follows metadata.generation, Accepted and Programmed True throughout."""
    gw = kube_object(m, "gateways", MESH_NS, GATEWAY_NAME)
    check(gw is not None, "Gateway %s not found" % GATEWAY_NAME)
    gen = gw["metadata"].get("generation", 1)
    wait_object_generation(m, "gateways", MESH_NS, GATEWAY_NAME, gen, ("Accepted", "Programmed"))
    changed = {k: gw[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    changed = json.loads(json.dumps(changed))
    changed["metadata"]["generation"] = gen + 1
    changed["spec"]["listeners"].append({"name": "http-8081", "port": 8081, "protocol": "HTTP"})
    m.cluster.kube_put("gateways", changed)
    try:
        wait_object_generation(m, "gateways", MESH_NS, GATEWAY_NAME, gen + 1,
                               ("Accepted", "Programmed"))
    finally:
        restored = json.loads(json.dumps(changed))
        restored["metadata"]["generation"] = gen + 2
        restored["spec"]["listeners"].pop()
        m.cluster.kube_put("gateways", restored)
    wait_object_generation(m, "gateways", MESH_NS, GATEWAY_NAME, gen + 2,
                           ("Accepted", "Programmed"))
    m.wait_acked()
    return "observedGeneration %d, %d, %d" % (gen, gen + 1, gen + 2)


def gw_class_generation_bump(m):
    """The GatewayClass's spec changed (a description): Accepted's observedGeneration follows."""
    gc = kube_object(m, "gatewayclasses", None, GATEWAY_CLASS)
    check(gc is not None, "GatewayClass %s not found" % GATEWAY_CLASS)
    gen = gc["metadata"].get("generation", 1)
    wait_object_generation(m, "gatewayclasses", None, GATEWAY_CLASS, gen, ("Accepted",))
    changed = json.loads(json.dumps({k: gc[k] for k in ("apiVersion", "kind", "metadata",
                                                         "spec")}))
    changed["metadata"]["generation"] = gen + 1
    changed["spec"]["description"] = "observedGeneration bump"
    m.cluster.kube_put("gatewayclasses", changed)
    wait_object_generation(m, "gatewayclasses", None, GATEWAY_CLASS, gen + 1, ("Accepted",))
    return "Accepted at observedGeneration %d, then %d" % (gen, gen + 1)


# --- the Gateway profile: listeners, hostnames, namespaces, ReferenceGrants, HTTPS ----------------
#
# Upstream's cases of these deploy Gateways of their own beside same-namespace (in its infra
# namespace, MESH_NS here): each is played as its own gateway pod for the case (with_gateways).

def listener_status(m, gateway):
    gw = kube_object(m, "gateways", MESH_NS, gateway) or {}
    return gw, {x.get("name"): x for x in gw.get("status", {}).get("listeners", [])}


def wait_listeners(m, gateway, expected):
    """Until the Gateway's status lists exactly the listeners of `expected` ({name: (kinds,
    conditions, attachedRoutes)}), each supporting at least `kinds` (none when empty), with
    each (type, status, reason) of `conditions` (reason None: any) at the Gateway's generation
    and `attachedRoutes` routes."""
    def ok():
        gw, listeners = listener_status(m, gateway)
        if set(listeners) != set(expected):
            return None
        gen = gw["metadata"].get("generation")
        for name, (kinds, conditions, attached) in expected.items():
            got = listeners[name]
            supported = {(k.get("group", GROUP), k.get("kind")) for k in
                         got.get("supportedKinds", [])}
            if (not kinds and supported) or any((GROUP, k) not in supported for k in kinds):
                return None
            if got.get("attachedRoutes") != attached:
                return None
            conds = {x["type"]: x for x in got.get("conditions", [])}
            for kind, status, reason in conditions:
                c = conds.get(kind, {})
                if c.get("status") != status or (reason and c.get("reason") != reason) or \
                        c.get("observedGeneration") != gen:
                    return None
        return "%s: %s" % (gateway, "; ".join(
            "listener %s %s, attachedRoutes %d" % (name, " ".join(
                "%s=%s(%s)" % (k, s, r or "any") for k, s, r in conds), attached)
            for name, (_, conds, attached) in sorted(expected.items())))
    return m.run.wait_until(ok, EVENTUAL_S, "Gateway %s's listeners" % gateway,
                            lambda: json.dumps(listener_status(m, gateway)[1])[:2000])


def with_objects(m, objects, body):
    """`objects` ((plural, document)) put into the API server for body(), removed after."""
    for plural, doc in objects:
        m.cluster.kube_put(plural, doc)
    try:
        return body()
    finally:
        for plural, doc in objects:
            m.cluster.kube_delete(plural, doc["metadata"]["name"],
                                  doc["metadata"].get("namespace"))
        m.wait_acked()


def reference_grant(name, namespace, from_kind, from_namespace, to_kind, to_name=None,
                    from_group=GROUP, to_group=""):
    to = {"group": to_group, "kind": to_kind}
    if to_name:
        to["name"] = to_name
    return ("referencegrants", {
        "apiVersion": GROUP + "/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"from": [{"group": from_group, "kind": from_kind, "namespace": from_namespace}],
                 "to": [to]}})


def gw_invalid_route_kind(m):
    """allowedRoutes.kinds naming a kind that is no route: the listener's ResolvedRefs False
    InvalidRouteKinds, supportedKinds empty, or HTTPRoute alone when listed too."""
    only = gateway_doc("gateway-only-invalid-route-kind", [
        listener("http", allowed="All", kinds=[{"kind": "InvalidRoute"}])])
    both = gateway_doc("gateway-supported-and-invalid-route-kind", [
        listener("http", allowed="All", kinds=[{"kind": "InvalidRoute"}, {"kind": "HTTPRoute"}])])
    invalid = [("ResolvedRefs", "False", "InvalidRouteKinds")]
    return with_objects(m, [("gateways", only), ("gateways", both)], lambda: "; ".join([
        wait_listeners(m, only["metadata"]["name"], {"http": ([], invalid, 0)}),
        wait_listeners(m, both["metadata"]["name"], {"http": (["HTTPRoute"], invalid, 0)})]))


def https_gateway(name, certificate):
    return gateway_doc(name, [listener("https", 443, "HTTPS", allowed="All",
                                       certificates=[certificate])])


HTTPS_EXPECTED = (["HTTPRoute"], [("ResolvedRefs", "False", "InvalidCertificateRef")], 0)


def gw_invalid_tls_configuration(m):
    """An HTTPS listener whose certificateRef is a missing Secret, of another group or kind, or a
    Secret that holds no certificate: ResolvedRefs False InvalidCertificateRef."""
    malformed = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                 "metadata": {"name": "malformed-certificate", "namespace": MESH_NS},
                 # Not PEM, and the key the same as the certificate (upstream's).
                 "data": {"tls.crt": base64.b64encode(b"Hello world\n").decode(),
                          "tls.key": base64.b64encode(b"Hello world\n").decode()}}
    gateways = [
        https_gateway("gateway-certificate-nonexistent-secret",
                      secret_ref("nonexistent-certificate")),
        https_gateway("gateway-certificate-unsupported-group",
                      secret_ref(INFRA_CERTIFICATE, group="wrong.group.company.io")),
        https_gateway("gateway-certificate-unsupported-kind",
                      secret_ref(INFRA_CERTIFICATE, kind="WrongKind")),
        https_gateway("gateway-certificate-malformed-secret",
                      secret_ref("malformed-certificate"))]
    return with_objects(m, [("secrets", malformed)] + [("gateways", g) for g in gateways],
                        lambda: "; ".join(wait_listeners(m, g["metadata"]["name"],
                                                         {"https": HTTPS_EXPECTED})
                                          for g in gateways))


def web_certificate_gateway(name):
    return https_gateway(name, secret_ref(WEB_CERTIFICATE, WEB_NS))


REF_NOT_PERMITTED = (["HTTPRoute"], [("ResolvedRefs", "False", "RefNotPermitted")], 0)


def gw_secret_missing_reference_grant(m):
    """A certificateRef to a Secret of another namespace with no ReferenceGrant there:
    ResolvedRefs False RefNotPermitted."""
    g = web_certificate_gateway("gateway-secret-missing-reference-grant")
    return with_objects(m, [("gateways", g)], lambda: wait_listeners(
        m, g["metadata"]["name"], {"https": REF_NOT_PERMITTED}))


def gw_secret_invalid_reference_grant(m):
    """As above with ReferenceGrants that each miss by one field (their namespace, the from
    group, kind or namespace, the to group, kind or name): RefNotPermitted."""
    g = web_certificate_gateway("gateway-secret-invalid-reference-grant")
    grants = [
        reference_grant("reference-grant-wrong-namespace", APP_NS, "Gateway", MESH_NS, "Secret",
                        WEB_CERTIFICATE),
        reference_grant("reference-grant-wrong-from-group", WEB_NS, "Gateway", MESH_NS, "Secret",
                        WEB_CERTIFICATE, from_group="not-the-group-youre-looking-for"),
        reference_grant("reference-grant-wrong-from-kind", WEB_NS, "HTTPRoute", MESH_NS, "Secret",
                        WEB_CERTIFICATE),
        reference_grant("reference-grant-wrong-from-namespace", WEB_NS, "Gateway",
                        "not-the-namespace-youre-looking-for", "Secret", WEB_CERTIFICATE),
        reference_grant("reference-grant-wrong-to-group", WEB_NS, "Gateway", MESH_NS, "Secret",
                        "not-the-certificate-youre-looking-for",
                        to_group="not-the-group-youre-looking-for"),
        reference_grant("reference-grant-wrong-to-kind", WEB_NS, "Gateway", MESH_NS, "Service",
                        WEB_CERTIFICATE),
        reference_grant("reference-grant-wrong-to-name", WEB_NS, "Gateway", MESH_NS, "Secret",
                        "not-the-certificate-youre-looking-for")]
    return with_objects(m, grants + [("gateways", g)], lambda: wait_listeners(
        m, g["metadata"]["name"], {"https": REF_NOT_PERMITTED}))


def gw_secret_reference_grant(name, grant_name, secret_name):
    """A certificateRef to a Secret of another namespace, granted by a ReferenceGrant there
    naming it (or every Secret): the listener Programmed and ResolvedRefs, its proxy serving
    it."""
    def case(m):
        g = web_certificate_gateway(name)
        grant = reference_grant(grant_name, WEB_NS, "Gateway", MESH_NS, "Secret", secret_name)
        return with_gateways(m, [g], lambda: wait_listeners(m, name, {"https": (
            ["HTTPRoute"], [("Programmed", "True", "Programmed"), ("ResolvedRefs", "True", None)],
            0)}), objects=[grant])
    return case


def gw_matching_across_routes(m):
    """Two routes on one listener, the second's hostnames fewer: their rules merged per host."""
    part1 = gateway_route("matching-part1", [rule([backend("echo-v1")], matches=[
        prefix("/"), headers_match(version="one")])], hostnames=["example.com", "example.net"])
    part2 = gateway_route("matching-part2", [rule([backend("echo-v2")], matches=[
        prefix("/v2"), headers_match(version="two")])], hostnames=["example.com"])
    v1, v2 = "echo-v1", "echo-v2"

    def body():
        accepted = [route_accepted(m, r) for r in (part1, part2)]
        return "%s; %s" % (", ".join(accepted), gateway_expect(m, [
            req("/", host="example.com", backend=v1),
            req("/example", host="example.com", backend=v1),
            req("/example", host="example.net", backend=v1),
            req("/example", host="example.com", headers={"Version": "one"}, backend=v1),
            req("/v2", host="example.com", backend=v2),
            req("/v2", host="example.net", backend=v1),
            req("/v2/example", host="example.com", backend=v2),
            req("/", host="example.com", headers={"Version": "two"}, backend=v2)]))
    return m.with_routes([part1, part2], body)


def gw_invalid_cross_namespace_backend_ref(m):
    """A backendRef to a Service of another namespace with no ReferenceGrant: the route
    Accepted, ResolvedRefs False RefNotPermitted, its requests answered 500."""
    r = gateway_route("invalid-cross-namespace-backend-ref",
                      [rule([backend("web-backend", namespace=WEB_NS)])])
    return m.with_routes([r], lambda: ref_not_permitted(m, r, [req("/", status=500)]))


def ref_not_permitted(m, doc, requests):
    """Until the route is Accepted with ResolvedRefs False RefNotPermitted, then `requests`
    through the gateway."""
    accepted = route_accepted_only(m, doc)
    resolved = wait_route_condition(m, doc, "ResolvedRefs", "False", "RefNotPermitted")
    return "%s; %s; %s" % (accepted, resolved, gateway_expect(m, requests))


def route_accepted_only(m, doc, gateway=GATEWAY_NAME):
    return wait_route_condition(m, doc, "Accepted", "True", "Accepted", gateway)


def gw_invalid_cross_namespace_parent_ref(m):
    """A route of another namespace on same-namespace (routes of its own namespace only):
    ResolvedRefs True, Accepted False NotAllowedByListeners, and the listener counts none."""
    r = gateway_route("invalid-cross-namespace-parent-ref",
                      [rule([backend("web-backend")])], namespace=WEB_NS)

    def body():
        resolved = wait_route_condition(m, r, "ResolvedRefs", "True", "ResolvedRefs")
        accepted = wait_route_condition(m, r, "Accepted", "False", "NotAllowedByListeners")
        obj = m.route_object("HTTPRoute", WEB_NS, r["metadata"]["name"]) or {}
        parents = obj.get("status", {}).get("parents", [])
        check(len(parents) <= 1, "parents in status: %s" % json.dumps(parents)[:1500])
        m.run.wait_until(lambda: listener_attached_routes(m) == {"http": 0}, EVENTUAL_S,
                         "same-namespace's listener to count no route",
                         lambda: json.dumps(listener_attached_routes(m)))
        return "%s; %s; listener http attachedRoutes 0" % (resolved, accepted)
    return m.with_routes([r], body)


def gw_reference_grant(m):
    """A backendRef to web-backend of another namespace, granted by a ReferenceGrant there:
    answered by web-backend; the grant deleted, answered 500."""
    grant = reference_grant("reference-grant", WEB_NS, "HTTPRoute", MESH_NS, "Service",
                            "web-backend")
    r = gateway_route("reference-grant", [rule([backend("web-backend", namespace=WEB_NS)])])

    deleted = []

    def body():
        accepted = route_accepted(m, r)
        granted = gateway_expect(m, [req("/", backend="web-backend", namespace=WEB_NS)])
        m.cluster.kube_delete("referencegrants", "reference-grant", WEB_NS)
        deleted.append(True)
        revoked = gateway_expect(m, [req("/", status=500)])
        return "%s; granted: %s; grant deleted: %s" % (accepted, granted, revoked)
    m.cluster.kube_put(*grant)
    try:
        return m.with_routes([r], body)
    finally:
        if not deleted:  # the fake API server takes no delete of what it does not hold
            m.cluster.kube_delete("referencegrants", "reference-grant", WEB_NS)


def gw_cross_namespace(m):
    """A route of gateway-conformance-web-backend attached to backend-namespaces, which allows
    routes of namespaces labelled gateway-conformance: backend: answered by web-backend."""
    g = gateway_doc("backend-namespaces", [
        listener("http", allowed={"gateway-conformance": "backend"})])
    r = gateway_route("cross-namespace", [rule([backend("web-backend")])], namespace=WEB_NS,
                      gateway="backend-namespaces")

    def body():
        accepted = route_accepted(m, r, "backend-namespaces")
        return "%s; %s" % (accepted, gateway_expect(
            m, [req("/", backend="web-backend", namespace=WEB_NS)],
            pod=gateway_pod("backend-namespaces")))
    return with_gateways(m, [g], lambda: m.with_routes([r], body))


def gw_https_listener(m):
    """HTTPS listeners on 443, one for any name and one for second-example.org, their
    certificate a Secret: example.org to v1 by its route's hostname, second-example.org to v2
    by the route on that listener alone, unknown-example.org 404; each over HTTPS with the
    certificate verified for the name sent."""
    name = "same-namespace-with-https-listener"
    cert = secret_ref(INFRA_CERTIFICATE, MESH_NS)
    g = gateway_doc(name, [
        listener("https", 443, "HTTPS", certificates=[cert]),
        listener("https-with-hostname", 443, "HTTPS", hostname="second-example.org",
                 certificates=[cert])])
    routes = [gateway_route("httproute-https-test", [rule([backend("echo-v1")])],
                            hostnames=["example.org"], gateway=name),
              gateway_route("httproute-https-test-no-hostname", [rule([backend("echo-v2")])],
                            section="https-with-hostname", gateway=name)]

    def body():
        accepted = [route_accepted(m, r, name) for r in routes]
        return "%s; %s" % (", ".join(accepted), gateway_expect(m, [
            req("/", host="example.org", backend="echo-v1"),
            req("/", host="unknown-example.org", status=404),
            req("/", host="second-example.org", backend="echo-v2")],
            pod=gateway_pod(name), port=443, ca=m.gateway_ca))
    return with_gateways(m, [g], lambda: m.with_routes(routes, body))


def prefix_rule(path, backend_name):
    return rule([backend(backend_name)], matches=[prefix(path)])


def gw_hostname_intersection(m):
    """Routes attach to the listeners whose hostnames intersect theirs and take requests for the
    intersection only; a route intersecting none is Accepted False NoMatchingListenerHostname;
    a listener without a hostname takes the route's hostnames as they are."""
    name, all_name = "httproute-hostname-intersection", "httproute-hostname-intersection-all"
    g = gateway_doc(name, [listener("listener-1", hostname="very.specific.com"),
                           listener("listener-2", hostname="*.wildcard.io"),
                           listener("listener-3", hostname="*.anotherwildcard.io")])
    g_all = gateway_doc(all_name, [listener("listener-1")])

    def r(route_name, hostnames, path, backend_name, gateway=name):
        return gateway_route(route_name, [prefix_rule(path, backend_name)] if path else
                             [rule([backend(backend_name)])], hostnames=hostnames,
                             gateway=gateway)
    matching = [
        r("specific-host-matches-listener-specific-host",
          ["non.matching.com", "*.nonmatchingwildcard.io", "very.specific.com"], "/s1", "echo-v1"),
        r("specific-host-matches-listener-wildcard-host",
          ["non.matching.com", "wildcard.io", "foo.wildcard.io", "bar.wildcard.io",
           "foo.bar.wildcard.io"], "/s2", "echo-v2"),
        r("wildcard-host-matches-listener-specific-host",
          ["non.matching.com", "*.specific.com"], "/s3", "echo-v3"),
        r("wildcard-host-matches-listener-wildcard-host", ["*.anotherwildcard.io"], "/s4",
          "echo-v1")]
    none = r("no-intersecting-hosts", ["specific.but.wrong.com", "wildcard.io"], "/s5",
             "echo-v2")
    to_all = r("httproute-hostname-intersection-all",
               ["first.com", "sub.first.com", "second.com", "sub.second.com"], None, "echo-v2",
               gateway=all_name)

    def q(host, path, backend_name=None):
        return req(path, host=host, backend=backend_name) if backend_name else \
            req(path, host=host, status=404)

    def body():
        accepted = [route_accepted(m, x, name) for x in matching]
        first = gateway_expect(m, [
            q("very.specific.com", "/s1", "echo-v1"), q("very.specific.com:1234", "/s1", "echo-v1"),
            q("non.matching.com", "/s1"), q("foo.nonmatchingwildcard.io", "/s1"),
            q("foo.wildcard.io", "/s1"), q("very.specific.com", "/non-matching-prefix"),
            q("foo.wildcard.io", "/s2", "echo-v2"), q("bar.wildcard.io", "/s2", "echo-v2"),
            q("foo.bar.wildcard.io", "/s2", "echo-v2"), q("non.matching.com", "/s2"),
            q("wildcard.io", "/s2"), q("very.specific.com", "/s2"),
            q("foo.wildcard.io", "/non-matching-prefix"),
            q("very.specific.com", "/s3", "echo-v3"), q("non.matching.com", "/s3"),
            q("foo.specific.com", "/s3"), q("foo.wildcard.io", "/s3"),
            q("very.specific.com", "/non-matching-prefix"),
            q("foo.anotherwildcard.io", "/s4", "echo-v1"),
            q("bar.anotherwildcard.io", "/s4", "echo-v1"),
            q("foo.bar.anotherwildcard.io", "/s4", "echo-v1"), q("anotherwildcard.io", "/s4"),
            q("foo.wildcard.io", "/s4"), q("very.specific.com", "/s4"),
            q("foo.anotherwildcard.io", "/non-matching-prefix")], pod=gateway_pod(name))
        refused = wait_route_condition(m, none, "Accepted", "False", "NoMatchingListenerHostname",
                                       name)
        obj = m.route_object("HTTPRoute", MESH_NS, none["metadata"]["name"]) or {}
        parents = obj.get("status", {}).get("parents", [])
        check(len(parents) == 1, "no-intersecting-hosts has %d parents in status: %s" % (
            len(parents), json.dumps(parents)[:1500]))
        second = gateway_expect(m, [q("specific.but.wrong.com", "/s5"), q("wildcard.io", "/s5")],
                                pod=gateway_pod(name))
        all_accepted = route_accepted(m, to_all, all_name)
        third = gateway_expect(m, [
            q("first.com", "/", "echo-v2"), q("sub.first.com", "/", "echo-v2"),
            q("second.com", "/", "echo-v2"), q("sub.second.com", "/", "echo-v2"),
            q("third.com", "/"), q("sub.third.com", "/")], pod=gateway_pod(all_name))
        return "%s; intersecting: %s; none: %s, %s; unspecified hostname: %s, %s" % (
            ", ".join(accepted), first, refused, second, all_accepted, third)
    return with_gateways(m, [g, g_all], lambda: m.with_routes(matching + [none, to_all], body))


def gw_listener_hostname_matching(m):
    """Four HTTP listeners on port 80 told apart by hostname (bar.com, foo.bar.com, *.bar.com,
    *.foo.com), a route on each: the most specific listener's route answers."""
    name = "httproute-listener-hostname-matching"
    g = gateway_doc(name, [listener("listener-1", hostname="bar.com"),
                           listener("listener-2", hostname="foo.bar.com"),
                           listener("listener-3", hostname="*.bar.com"),
                           listener("listener-4", hostname="*.foo.com")])
    routes = [gateway_route("backend-v1", [rule([backend("echo-v1")])], section="listener-1",
                            gateway=name),
              gateway_route("backend-v2", [rule([backend("echo-v2")])], section="listener-2",
                            gateway=name),
              gateway_route("backend-v3", [rule([backend("echo-v3")])], section="listener-3",
                            gateway=name)]
    second_ref = dict(routes[2]["spec"]["parentRefs"][0], sectionName="listener-4")
    routes[2]["spec"]["parentRefs"].append(second_ref)

    def body():
        accepted = [route_accepted(m, r, name) for r in routes]
        return "%s; %s" % (", ".join(accepted), gateway_expect(m, [
            req(host="bar.com", backend="echo-v1"), req(host="foo.bar.com", backend="echo-v2"),
            req(host="baz.bar.com", backend="echo-v3"), req(host="boo.bar.com", backend="echo-v3"),
            req(host="multiple.prefixes.bar.com", backend="echo-v3"),
            req(host="multiple.prefixes.foo.com", backend="echo-v3"),
            req(host="foo.com", status=404), req(host="no.matching.host", status=404)],
            pod=gateway_pod(name)))
    return with_gateways(m, [g], lambda: m.with_routes(routes, body))


def gw_invalid_reference_grant(m):
    """A backendRef to web-backend of another namespace whose ReferenceGrants each miss by one
    field (their namespace, the from group, kind or namespace, the to group or kind, the to name):
    the route Accepted, ResolvedRefs False RefNotPermitted, its requests answered 500."""
    grants = [
        reference_grant("reference-grant-wrong-namespace", MESH_NS, "HTTPRoute", MESH_NS,
                        "Service", "web-backend"),
        reference_grant("reference-grant-wrong-from-group", WEB_NS, "HTTPRoute", MESH_NS,
                        "Service", "web-backend", from_group="not-the-group-youre-looking-for"),
        reference_grant("reference-grant-wrong-from-kind", WEB_NS, "Gateway", MESH_NS, "Service",
                        "web-backend"),
        reference_grant("reference-grant-wrong-from-namespace", WEB_NS, "HTTPRoute",
                        "not-the-namespace-youre-looking-for", "Service", "web-backend"),
        reference_grant("reference-grant-wrong-to-group", WEB_NS, "HTTPRoute", MESH_NS,
                        "Service", "web-backend", to_group="not-the-group-youre-looking-for"),
        reference_grant("reference-grant-wrong-to-kind", WEB_NS, "HTTPRoute", MESH_NS, "Secret",
                        "web-backend"),
        reference_grant("reference-grant-wrong-to-name", WEB_NS, "HTTPRoute", MESH_NS, "Secret",
                        "not-the-service-youre-looking-for")]
    r = gateway_route("reference-grant", [rule([backend("web-backend", namespace=WEB_NS)])])
    return with_objects(m, grants, lambda: m.with_routes(
        [r], lambda: ref_not_permitted(m, r, [req("/", status=500)])))


def gw_partially_invalid_reference_grant(m):
    """A route with a rule to app-backend-v2 of another namespace, whose ReferenceGrant names
    app-backend-v1 only, and a rule to app-backend-v1: the route Accepted, ResolvedRefs False
    RefNotPermitted; /v2 answered 500, the rest by app-backend-v1."""
    grant = reference_grant("invalid-reference-grant", APP_NS, "HTTPRoute", MESH_NS, "Service",
                            "app-backend-v1")
    r = gateway_route("invalid-reference-grant", [
        rule([backend("app-backend-v2", namespace=APP_NS)], matches=[prefix("/v2")]),
        rule([backend("app-backend-v1", namespace=APP_NS)])])
    return with_objects(m, [grant], lambda: m.with_routes([r], lambda: ref_not_permitted(m, r, [
        req("/v2", status=500), req("/", backend="app-backend-v1", namespace=APP_NS)])))


def route_latest_conditions(m, doc, gateway=GATEWAY_NAME):
    """Until every condition of the route's entry for the Gateway has the route's generation,
    Accepted and ResolvedRefs True (upstream's HTTPRouteMustHaveLatestConditions and
    HTTPRouteMustHaveResolvedRefsConditionsTrue); the generation."""
    def ok():
        conds, gen = gateway_parent_conditions(m, doc, gateway)
        if not conds or any(c.get("observedGeneration") != gen for c in conds.values()):
            return None
        if any(conds.get(t, {}).get("status") != "True" for t in ("Accepted", "ResolvedRefs")):
            return None
        return gen
    return m.run.wait_until(ok, EVENTUAL_S, "%s's conditions at its generation" % (
        doc["metadata"]["name"]), lambda: m.describe_status(doc))


def gw_route_generation_bump(m):
    """The route's backendRef changed (echo-v1 to echo-v2): every condition's observedGeneration
    follows metadata.generation, Accepted and ResolvedRefs True; (this test's addition) its
    requests answered by echo-v1, then by echo-v2."""
    r = gateway_route("observed-generation-bump", [rule([backend("echo-v1")])])

    def body():
        before = route_latest_conditions(m, r)
        first = gateway_expect(m, [req("/", backend="echo-v1")])
        changed = json.loads(json.dumps(r))
        changed["spec"]["rules"][0]["backendRefs"][0]["name"] = "echo-v2"
        if m.through_kube("HTTPRoute"):
            changed["metadata"]["generation"] = before + 1
        m.apply([changed])
        after = route_latest_conditions(m, changed)
        check(after != before, "the route's generation stayed %s after a change" % before)
        second = gateway_expect(m, [req("/", backend="echo-v2")])
        return "observedGeneration %s, then %s; echo-v1: %s; then echo-v2: %s" % (
            before, after, first, second)
    return m.with_routes([r], body)


def service_types_objects(m):
    """upstream's Services of HTTPRouteServiceTypes, each to echo-v1's pod (infra-backend-v1
    there): manual-endpointslices (no selector, its EndpointSlices written by hand, as upstream's
    case patches them), headless (clusterIP None, a selector: its EndpointSlice what the
    EndpointSlice controller writes, here the test) and headless-manual-endpointslices (both);
    (plural, document) pairs. The Services' port 8080 goes to the echo's 8080 (upstream's 3000)."""
    pod = m.cluster.pods[CLIENT]
    port = {"name": "first-port", "protocol": "TCP", "port": 8080, "targetPort": 8080}
    endpoint = {"addresses": [pod["ip"]],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "targetRef": {"kind": "Pod", "name": CLIENT, "namespace": MESH_NS}}

    def service(name, headless, selector=None):
        spec = {"ports": [dict(port)]}
        if headless:
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
        else:  # what the API server allocates
            spec["type"], spec["clusterIP"] = "ClusterIP", CLUSTER_IPS[name]
            spec["clusterIPs"] = [CLUSTER_IPS[name]]
        if selector:
            spec["selector"] = selector
        return ("services", {"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": name, "namespace": MESH_NS}, "spec": spec})

    def slice_(service_name, name, family, endpoints):
        return ("endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": MESH_NS,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": family,
            "ports": [{"name": "first-port", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints})
    out = []
    for name in ("manual-endpointslices", "headless-manual-endpointslices"):
        out += [service(name, name.startswith("headless")),
                # The pods have IPv4 addresses only: the IPv6 slices stay without endpoints.
                slice_(name, name + "-ip4", "IPv4", [endpoint]),
                slice_(name, name + "-ip6", "IPv6", [])]
    out += [service("headless", True, pod["labels"]),
            slice_("headless", "headless-x7k2p", "IPv4", [endpoint])]
    return out


def gw_service_types(m):
    """A route's rules to a Service with hand-written EndpointSlices, a headless Service and a
    headless one with hand-written EndpointSlices, all of echo-v1's pod: the route Accepted and
    ResolvedRefs, each path answered by echo-v1."""
    kinds = ["manual-endpointslices", "headless", "headless-manual-endpointslices"]
    r = gateway_route("service-types", [
        rule([backend(k)], matches=[exact("/" + k)]) for k in kinds])

    def body():
        accepted = route_accepted(m, r)
        return "%s; %s" % (accepted, gateway_expect(m, [
            req("/" + k, backend="echo-v1") for k in kinds]))
    return with_objects(m, service_types_objects(m), lambda: m.with_routes([r], body))


def gateway_latest_conditions(m, name):
    """Until every condition of the Gateway has its generation (upstream's
    GatewayMustHaveLatestConditions); the generation."""
    def ok():
        gw = kube_object(m, "gateways", MESH_NS, name) or {}
        gen = gw.get("metadata", {}).get("generation")
        conds = gw.get("status", {}).get("conditions", [])
        return gen if conds and all(c.get("observedGeneration") == gen for c in conds) else None
    return m.run.wait_until(ok, EVENTUAL_S, "Gateway %s's conditions at its generation" % name,
                            lambda: json.dumps((kube_object(m, "gateways", MESH_NS, name) or {})
                                               .get("status"))[:1500])


def modify_gateway(m, name, change):
    """The Gateway's spec changed in place by change(spec), its generation bumped, put into the
    API server; the generation before."""
    gw = kube_object(m, "gateways", MESH_NS, name)
    check(gw is not None, "Gateway %s not found" % name)
    changed = json.loads(json.dumps({k: gw[k] for k in ("apiVersion", "kind", "metadata",
                                                         "spec")}))
    gen = changed["metadata"].get("generation", 1)
    changed["metadata"]["generation"] = gen + 1
    change(changed["spec"])
    m.cluster.kube_put("gateways", changed)
    return gen


def modify_listeners(m, name, change):
    """The Gateway's listeners changed by change(listeners) (a new list), as modify_gateway."""
    return modify_gateway(m, name, lambda spec: spec.update(listeners=change(spec["listeners"])))


def gw_modify_listeners(m):
    """A listener added to a live Gateway (HTTP on 80 for data.test.com beside HTTPS on 443 for
    secure.test.com) and one removed from another (its HTTPS one): the listeners in status are the
    new ones, each Accepted and ResolvedRefs with its route attached, every condition at the new
    generation; (this test's addition) the Gateways' proxies serve the added listener and stop
    serving the removed one."""
    cert = secret_ref(INFRA_CERTIFICATE, MESH_NS)
    https = listener("https", 443, "HTTPS", hostname="secure.test.com", allowed="All",
                     certificates=[cert])
    http = listener("http", allowed="All")
    add, remove = "gateway-add-listener", "gateway-remove-listener"
    gateways = [gateway_doc(add, [https]), gateway_doc(remove, [https, http])]
    routes = [gateway_route("http-route-1", [rule([backend("echo-v1")])], gateway=add),
              gateway_route("http-route-2", [rule([backend("echo-v1")])], gateway=remove)]
    ready = (["HTTPRoute"], [("Accepted", "True", None), ("ResolvedRefs", "True", None)], 1)
    secure = req("/", host="secure.test.com", backend="echo-v1")
    data = req("/", host="data.test.com", backend="echo-v1")

    def serves(name, port, request, ca=None):
        return gateway_expect(m, [request], pod=gateway_pod(name), port=port, ca=ca)

    def refuses(name, port):
        calls = [{k: v for k, v in r.items() if k != "expect"} for r in through_gateway(
            m, [secure], pod=gateway_pod(name), port=port, ca=m.gateway_ca)]

        def gone():
            error = m.agent(GATEWAY_CLIENT, "http", calls)[0].get("error", "")
            return error if "ConnectionRefused" in error else None
        return m.run.wait_until(gone, EVENTUAL_S, "%s to refuse connections on port %d" % (
            name, port))

    def body():
        accepted = [route_accepted(m, r, r["spec"]["parentRefs"][0]["name"]) for r in routes]
        served = serves(add, 443, secure, m.gateway_ca)
        gen = modify_listeners(m, add, lambda ls: ls + [dict(http, hostname="data.test.com")])
        added = wait_listeners(m, add, {"https": ready, "http": ready})
        check(gateway_latest_conditions(m, add) == gen + 1, "%s's generation" % add)
        added_serves = serves(add, 80, data)
        before = serves(remove, 443, secure, m.gateway_ca)
        gen = modify_listeners(m, remove, lambda ls: [x for x in ls if x["name"] == "http"])
        removed = wait_listeners(m, remove, {"http": ready})
        check(gateway_latest_conditions(m, remove) == gen + 1, "%s's generation" % remove)
        refused = refuses(remove, 443)
        still = serves(remove, 80, secure)
        return ("%s; %s on 443: %s; added: %s, on 80: %s; %s on 443 before: %s; removed: %s, 443 "
                "refused (%s), 80: %s" % (", ".join(accepted), add, served, added, added_serves,
                                          remove, before, removed, refused, still))
    return with_gateways(m, gateways, lambda: m.with_routes(routes, body))


class ThroughGateway:
    """A mesh case run on the gateway: its routes with the Gateway as their only parent, its
    requests sent from the gateway's client to the gateway's listener (the rest is the
    Conformance's). For the cases whose Gateway-profile twin deploys the same rules and sends the
    same requests."""

    def __init__(self, m):
        self.m = m

    def __getattr__(self, name):
        return getattr(self.m, name)

    def with_routes(self, documents, body):
        docs = []
        for d in documents:
            g = gateway_route(d["metadata"]["name"], d["spec"]["rules"],
                              namespace=d["metadata"]["namespace"])
            g["kind"] = d["kind"]
            docs.append(g)
        return self.m.with_routes(docs, body)

    def expect(self, requests, client=None, timeout=EVENTUAL_S):
        return self.m.expect(through_gateway(self.m, requests), client=GATEWAY_CLIENT,
                             timeout=timeout)


def on_gateway(mesh_case):
    return lambda m: mesh_case(ThroughGateway(m))


# --- the list, and the report ---------------------------------------------------------------------

MESH_HTTP, MESH_GRPC = "MESH-HTTP", "MESH-GRPC"
CORE = {MESH_HTTP: {"Mesh", "HTTPRoute"}, MESH_GRPC: {"Mesh", "GRPCRoute"}}
Case = collections.namedtuple("Case", "name profiles features provisional run")

CASES = [
    Case("MeshBasic", [MESH_HTTP, MESH_GRPC], ["Mesh"], False, mesh_basic),
    Case("MeshFrontend", [MESH_HTTP], ["Mesh", "HTTPRoute",
                                       "HTTPRouteResponseHeaderModification"], False,
         mesh_frontend),
    Case("MeshFrontendHostname", [MESH_HTTP],
         ["Mesh", "MeshClusterIPMatching", "HTTPRoute", "HTTPRouteResponseHeaderModification"],
         False, mesh_frontend_hostname),
    Case("MeshPorts", [MESH_HTTP], ["Mesh", "HTTPRoute", "HTTPRouteParentRefPort",
                                    "HTTPRouteResponseHeaderModification"], False, mesh_ports),
    Case("MeshTrafficSplit", [MESH_HTTP], ["Mesh", "HTTPRoute"], False, mesh_traffic_split),
    Case("MeshHTTPRouteWeight", [MESH_HTTP], ["Mesh", "HTTPRoute"], False,
         mesh_http_route_weight),
    Case("MeshHTTPRouteSimpleSameNamespace", [MESH_HTTP], ["Mesh", "HTTPRoute"], False,
         mesh_simple_same_namespace),
    Case("MeshConsumerRoute", [MESH_HTTP], ["Mesh", "MeshConsumerRoute", "HTTPRoute",
                                            "HTTPRouteResponseHeaderModification"], False,
         mesh_consumer_route),
    Case("MeshHTTPRouteMatching", [MESH_HTTP], ["Mesh", "HTTPRoute"], False, mesh_matching),
    Case("MeshHTTPRouteQueryParamMatching", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "MeshHTTPRouteQueryParamMatching"], False,
         mesh_query_param_matching),
    Case("MeshHTTPRouteRequestHeaderModifier", [MESH_HTTP], ["Mesh", "HTTPRoute"], False,
         mesh_request_header_modifier),
    Case("MeshHTTPRouteBackendRequestHeaderModifier", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "MeshHTTPRouteBackendRequestHeaderModification"], False,
         mesh_backend_request_header_modifier),
    Case("MeshHTTPRouteRewritePath", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "MeshHTTPRouteRewritePath"], False, mesh_rewrite_path),
    Case("MeshHTTPRouteRedirectPath", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "MeshHTTPRouteRedirectPath"], False, mesh_redirect_path),
    Case("MeshHTTPRouteRedirectPort", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "MeshHTTPRouteRedirectPort"], False, mesh_redirect_port),
    Case("MeshHTTPRouteSchemeRedirect", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "MeshHTTPRouteSchemeRedirect"], False, mesh_scheme_redirect),
    Case("MeshHTTPRouteRedirectHostAndStatus", [MESH_HTTP], ["Mesh", "HTTPRoute"], False,
         mesh_redirect_host_and_status),
    Case("MeshHTTPRoute303Redirect", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "HTTPRoute303RedirectStatusCode"], True,
         status_redirect(303, "/redirect")),
    Case("MeshHTTPRoute307Redirect", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "HTTPRoute307RedirectStatusCode"], True,
         status_redirect(307, "/temporary")),
    Case("MeshHTTPRoute308Redirect", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "HTTPRoute308RedirectStatusCode"], True,
         status_redirect(308, "/permanent")),
    Case("MeshHTTPRouteNamedRule", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "MeshHTTPRouteNamedRouteRule"], True, mesh_named_rule),
    Case("HTTPRouteTimeoutRequest", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "HTTPRouteRequestTimeout"], False,
         timeout_case("request", "/request-timeout", "/disable-request-timeout")),
    Case("HTTPRouteTimeoutBackendRequest", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "HTTPRouteBackendTimeout"], False,
         timeout_case("backendRequest", "/backend-timeout", "/disable-backend-timeout")),
    Case("HTTPRouteRetry", [MESH_HTTP], ["Mesh", "HTTPRoute", "HTTPRouteRetry"], False,
         http_route_retry),
    Case("HTTPRouteRetryWithTimeouts", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "HTTPRouteRetry", "HTTPRouteRetryBackendTimeout",
          "HTTPRouteRequestTimeout", "HTTPRouteBackendTimeout"], False,
         http_route_retry_with_timeouts),
    Case("HTTPRouteRetryConnectionError", [MESH_HTTP],
         ["Mesh", "HTTPRoute", "HTTPRouteRetry", "HTTPRouteRetryConnectionError"], False,
         http_route_retry_connection_error),
    Case("MeshGRPCRouteWeight", [MESH_GRPC], ["Mesh", "GRPCRoute"], False, mesh_grpc_weight),
    Case("MeshGRPCRouteRequestHeaderModifier", [MESH_GRPC], ["Mesh", "GRPCRoute"], False,
         mesh_grpc_request_header_modifier),
    # Not a conformance case of its own (every upstream case checks its routes are accepted):
    # the status conditions read back; not in the report.
    Case("RouteStatus", [], [], False, route_status),
    # The Gateway profile's HTTPRouteRequestHeaderModifierBackendWeights on the mesh; not in the
    # report.
    Case("BackendHeaderModifierWeights", [], [], False, backend_header_modifier_weights),
]
# Upstream cases this test does not run, with why (the report's skippedTests): none today.
NOT_RUN = {}

GATEWAY_HTTP = "GATEWAY-HTTP"
CORE[GATEWAY_HTTP] = {"Gateway", "HTTPRoute", "ReferenceGrant"}
GATEWAY_CASES = [
    Case("HTTPRouteSimpleSameNamespace", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_simple_same_namespace),
    Case("HTTPRouteExactPathMatching", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_exact_path_matching),
    Case("HTTPRouteMatching", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False, gw_matching),
    Case("HTTPRoutePathMatchOrder", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_path_match_order),
    Case("HTTPRouteHeaderMatching", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_header_matching),
    Case("HTTPRouteRequestHeaderModifier", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_request_header_modifier),
    Case("HTTPRouteWeight", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False, gw_weight),
    Case("HTTPRouteInvalidNonExistentBackendRef", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_invalid_backend("invalid-nonexistent-backend-ref", backend("nonexistent"),
                            "BackendNotFound")),
    Case("HTTPRouteInvalidBackendRefUnknownKind", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_invalid_backend("invalid-backend-ref-unknown-kind",
                            dict(backend("echo-v1"), group="unknownkind.example.com",
                                 kind="NonExistent"), "InvalidKind")),
    Case("HTTPRouteInvalidParentRefNotMatchingSectionName", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute"], False,
         gw_invalid_parent("invalid-parent-ref-section-name", sectionName="foo")),
    Case("HTTPRouteInvalidParentRefNotMatchingListenerPort", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute"], False,
         gw_invalid_parent("invalid-parent-ref-listener-port", port=81)),
    Case("GatewayWithAttachedRoutes", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_attached_routes),
    Case("GatewayObservedGenerationBump", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_gateway_generation_bump),
    Case("GatewayClassObservedGenerationBump", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_class_generation_bump),
    Case("GatewayInvalidRouteKind", [GATEWAY_HTTP],
         ["Gateway"], False,
         gw_invalid_route_kind),
    Case("GatewayInvalidTLSConfiguration", [GATEWAY_HTTP],
         ["Gateway"], False,
         gw_invalid_tls_configuration),
    Case("GatewaySecretInvalidReferenceGrant", [GATEWAY_HTTP],
         ["Gateway", "ReferenceGrant"], False,
         gw_secret_invalid_reference_grant),
    Case("GatewaySecretMissingReferenceGrant", [GATEWAY_HTTP],
         ["Gateway", "ReferenceGrant"], False,
         gw_secret_missing_reference_grant),
    Case("GatewaySecretReferenceGrantAllInNamespace", [GATEWAY_HTTP],
         ["Gateway", "ReferenceGrant"], False,
         gw_secret_reference_grant(
             "gateway-secret-reference-grant-all-in-namespace",
             "reference-grant-all-in-namespace", None)),
    Case("GatewaySecretReferenceGrantSpecific", [GATEWAY_HTTP],
         ["Gateway", "ReferenceGrant"], False,
         gw_secret_reference_grant(
             "gateway-secret-reference-grant-specific", "reference-grant-specific",
             WEB_CERTIFICATE)),
    Case("HTTPRouteCrossNamespace", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute"], False,
         gw_cross_namespace),
    Case("HTTPRouteHTTPSListener", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute"], False,
         gw_https_listener),
    Case("HTTPRouteHostnameIntersection", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute"], False,
         gw_hostname_intersection),
    Case("HTTPRouteInvalidCrossNamespaceBackendRef", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "ReferenceGrant"], False,
         gw_invalid_cross_namespace_backend_ref),
    Case("HTTPRouteInvalidCrossNamespaceParentRef", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute"], False,
         gw_invalid_cross_namespace_parent_ref),
    Case("HTTPRouteListenerHostnameMatching", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute"], False,
         gw_listener_hostname_matching),
    Case("HTTPRouteMatchingAcrossRoutes", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute"], False,
         gw_matching_across_routes),
    Case("HTTPRouteReferenceGrant", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "ReferenceGrant"], False,
         gw_reference_grant),
    Case("HTTPRouteQueryParamMatching", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "HTTPRouteQueryParamMatching"], False,
         on_gateway(mesh_query_param_matching)),
    Case("HTTPRouteRewritePath", [GATEWAY_HTTP], ["Gateway", "HTTPRoute", "HTTPRoutePathRewrite"],
         False, on_gateway(mesh_rewrite_path)),
    Case("HTTPRouteRedirectPath", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "HTTPRoutePathRedirect"], False, on_gateway(mesh_redirect_path)),
    Case("HTTPRouteRedirectPort", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "HTTPRoutePortRedirect"], False, on_gateway(mesh_redirect_port)),
    Case("HTTPRouteRedirectScheme", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "HTTPRouteSchemeRedirect"], False,
         on_gateway(mesh_scheme_redirect)),
    Case("HTTPRouteRedirectHostAndStatus", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         on_gateway(mesh_redirect_host_and_status)),
    Case("HTTPRouteTimeoutRequest", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "HTTPRouteRequestTimeout"], False,
         on_gateway(timeout_case("request", "/request-timeout", "/disable-request-timeout"))),
    Case("HTTPRouteTimeoutBackendRequest", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "HTTPRouteBackendTimeout"], False,
         on_gateway(timeout_case("backendRequest", "/backend-timeout",
                                 "/disable-backend-timeout"))),
    Case("GatewayModifyListeners", [GATEWAY_HTTP], ["Gateway"], False, gw_modify_listeners),
    Case("HTTPRouteInvalidReferenceGrant", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "ReferenceGrant"], False, gw_invalid_reference_grant),
    Case("HTTPRouteObservedGenerationBump", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_route_generation_bump),
    Case("HTTPRoutePartiallyInvalidViaInvalidReferenceGrant", [GATEWAY_HTTP],
         ["Gateway", "HTTPRoute", "ReferenceGrant"], False,
         gw_partially_invalid_reference_grant),
    Case("HTTPRouteServiceTypes", [GATEWAY_HTTP], ["Gateway", "HTTPRoute"], False,
         gw_service_types),
]
# The Gateway profile's core HTTP cases not run (the report's skippedTests, with the reason in
# docs/gateway.md): none today.
GATEWAY_NOT_RUN = {}
# Skipped cases whose features meshlet has (not listed as unsupported in the report).
NOT_TRANSCRIBED = set()
# The extended HTTP cases and GATEWAY-GRPC (gateway_conformance_extended.py).
GATEWAY_PROFILES = gateway_conformance_extended.register(sys.modules[__name__])
PROFILES = {"mesh": ((MESH_HTTP, MESH_GRPC), CASES, NOT_RUN),
            "gateway": (GATEWAY_PROFILES, GATEWAY_CASES, GATEWAY_NOT_RUN)}


# The report's implementation block; url and contact come from --implementation-url and
# --contact (a published report needs both).
IMPLEMENTATION = {"organization": "meshlet", "project": "meshlet", "url": "",
                  "version": harness.RELEASE, "contact": []}


def build_report(results, mode, profile_set="mesh"):
    """A ConformanceReport (gateway.networking.k8s.io/v1) of `results` ({case: True/False/None
    for not run}) of the profiles of PROFILES[profile_set]."""
    profile_names, cases, not_run = PROFILES[profile_set]
    by_name = {c.name: c for c in cases}
    entries = [(c.name, c.profiles, c.features, c.provisional, results.get(c.name))
               for c in cases if c.profiles]
    entries += [(name, profiles, features, False, None)
                for name, (profiles, features) in not_run.items()]
    profiles = []
    for profile in profile_names:
        levels = {"core": {"Passed": 0, "Failed": 0, "Skipped": 0, "failed": [], "skipped": []},
                  "extended": {"Passed": 0, "Failed": 0, "Skipped": 0, "failed": [],
                               "skipped": []}}
        supported, unsupported = set(), set()
        for name, in_profiles, features, _, result in entries:
            if profile not in in_profiles:
                continue
            extra = set(features) - CORE[profile]
            level = levels["extended" if extra else "core"]
            if result is None:
                level["Skipped"] += 1
                level["skipped"].append(name)
                if name in not_run and name not in NOT_TRANSCRIBED:
                    unsupported |= extra
            elif result:
                level["Passed"] += 1
                supported |= extra
            else:
                level["Failed"] += 1
                level["failed"].append(name)
                supported |= extra
        unsupported -= supported

        def status(level):
            out = {"result": "failure" if level["Failed"] else
                   "partial" if level["Skipped"] else "success",
                   "statistics": {k: level[k] for k in ("Failed", "Passed", "Skipped")}}
            if level["skipped"]:
                out["skippedTests"] = sorted(level["skipped"])
            if level["failed"]:
                out["failedTests"] = sorted(level["failed"])
            return out
        words = {"success": "succeeded", "partial": "partially succeeded", "failure": "failed"}
        core = status(levels["core"])
        entry = {"name": profile, "core": core,
                 "summary": "Core tests %s." % words[core["result"]]}
        ext = levels["extended"]
        if ext["Passed"] + ext["Failed"] + ext["Skipped"]:
            extended = status(ext)
            extended["supportedFeatures"] = sorted(supported)
            if unsupported:
                extended["unsupportedFeatures"] = sorted(unsupported)
            entry["extended"] = extended
            entry["summary"] += " Extended tests %s." % words[extended["result"]]
        profiles.append(entry)
    report = {
        "apiVersion": API_VERSION, "kind": "ConformanceReport",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gatewayAPIVersion": GATEWAY_API_VERSIONS[profile_set], "gatewayAPIChannel": "experimental",
        "mode": mode,
        "implementation": dict(IMPLEMENTATION),
        "profiles": profiles,
    }
    provisional = sorted(n for n, _, _, prov, result in entries if prov and result)
    if provisional:
        report["succeededProvisionalTests"] = provisional
    assert set(results) <= set(by_name)
    return report


def write_report(report, paths):
    import yaml  # python3-yaml
    text = yaml.safe_dump(report, sort_keys=True, default_flow_style=False)
    for path in paths:
        with open(path, "w") as f:
            f.write(text)
    return text


def kube_route_resources():
    """The route resources (httproutes, grpcroutes) the fake Kubernetes API server serves."""
    sys.path.insert(0, cluster_lib.INTEGRATION_DIR)
    try:
        import fake_kubernetes_api
    finally:
        sys.path.pop(0)
    return set(getattr(fake_kubernetes_api, "KINDS", {}).values()) & set(
        ROUTE_RESOURCES.values())


def kube_serves_routes():
    """Whether the fake Kubernetes API server serves HTTPRoutes (the control plane then watches
    them there)."""
    return "httproutes" in kube_route_resources()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--profile", default="mesh",
                   help="mesh: the GAMMA cases against sidecars; gateway: the Gateway profile's "
                        "cases against a gateway proxy pod; mesh,gateway: both in one run "
                        "(their pods and control plane shared)")
    p.add_argument("--only", default="", help="comma-separated case names (default: all)")
    p.add_argument("--routes", choices=["auto", "kube", "meshctl"], default="auto",
                   help="how routes reach the control plane (auto: kube when the fake API "
                        "server serves HTTPRoutes, else meshctl)")
    p.add_argument("--report", default="", help="also write the ConformanceReport here")
    p.add_argument("--implementation-url", default="", help="the report's implementation.url")
    p.add_argument("--contact", action="append", default=[],
                   help="the report's implementation.contact (repeatable)")
    args = p.parse_args()
    IMPLEMENTATION["url"] = args.implementation_url
    IMPLEMENTATION["contact"] = list(args.contact)
    only = [n for n in args.only.split(",") if n]
    profiles = [n for n in args.profile.split(",") if n]
    if not profiles or set(profiles) - set(PROFILES) or len(set(profiles)) != len(profiles):
        p.error("--profile: a comma-separated list of %s, each once" % ", ".join(sorted(PROFILES)))
    if args.report and len(profiles) > 1:
        p.error("--report: one profile at a time")
    cases = [c for profile in profiles for c in PROFILES[profile][1]]
    unknown = set(only) - {c.name for c in cases}
    if unknown:
        p.error("unknown cases %s; known: %s" % (", ".join(sorted(unknown)),
                                                 ", ".join(c.name for c in cases)))
    routes = args.routes
    if routes == "auto":
        routes = "kube" if kube_serves_routes() else "meshctl"
    results = {profile: {} for profile in profiles}

    def body(run, suite):
        suite.scenario("images", lambda: run.build_images(os.path.abspath(args.bin_dir)) or
                       ", ".join(run.images), fatal=True)
        conf = Conformance(run, os.path.abspath(args.bin_dir), routes)
        suite.scenario("setup", conf.setup, fatal=True)
        for profile in profiles:
            if profile == "gateway":
                suite.scenario("gateway", lambda: setup_gateway(conf), fatal=True)
            for case in PROFILES[profile][1]:
                if only and case.name not in only:
                    continue
                results[profile][case.name] = suite.scenario(case.name,
                                                             lambda c=case: c.run(conf))

    status = harness.Suite("gamma" if profiles == ["mesh"] else
                           "gateway" if profiles == ["gateway"] else "conformance").main(body)
    for profile in profiles:
        if not results[profile]:
            continue
        paths = [p for p in (args.report,) if p]
        outputs = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
        if outputs:
            paths.append(os.path.join(outputs, REPORT_NAME if profile == "mesh" else
                                      "gateway-conformance-gateway-report.yaml"))
        report = build_report(results[profile], routes, profile)
        write_report(report, paths)
        for p in report["profiles"]:
            print("report %-10s %s" % (p["name"], p["summary"]))
        if paths:
            print("report written to %s" % ", ".join(paths))
    return status


if __name__ == "__main__":
    sys.exit(main())
