"""A meshed application on pods: what a Kubernetes cluster does for meshlet, done for podman.

    with harness.Run(name="mesh") as run:
        run.build_images(bin_dir)
        cluster = Cluster(run, meshctl=bin_dir + "/control-plane/cli/meshctl")
        cluster.start_control_plane()                 # the control plane as a pod
        cluster.deploy(["examples/pods/"])            # meshctl inject, then podman kube play
        cluster.wait_ready()
        cluster.exec("productpage-v1-0", ["testapp", "get", "http://reviews:9080/"])

The application's manifests are plain Kubernetes YAML (ServiceAccounts, Services, Deployments,
Pods). `deploy` runs them through the host's `meshctl inject --mode classic --podman --identity
join-token -o json` and plays what comes out, as a cluster would run what `kubectl apply` sent.
The app containers carry no meshlet configuration: injection adds all of it.

podman 4.3 plays Pod YAML but is not a cluster. What a cluster's parts would do, and what podman
lacks, this module does, each step named after the part it stands in for:

  controllers     a Deployment (ReplicaSet, StatefulSet) becomes `replicas` Pods named
                  NAME-0, NAME-1, ... with the template's labels; restartPolicy OnFailure
                  (podman reruns init containers under Always, README.md)
  service IPs     a Service becomes the control plane's Service of the same name and ports
                  (meshctl apply), whose virtual address the control plane allocates; a port's
                  appProtocol, or its name's prefix as Istio reads it, gives its protocol (the
                  API server below holds only what a scenario puts there)
  cluster DNS     every pod's hostAliases name each Service (NAME, NAME.NS, NAME.NS.svc,
                  NAME.NS.svc.cluster.local) at its virtual address, and the control plane's
                  Service name at the control plane pod's address
  join tokens     each ServiceAccount gets the Secret `meshctl token create -o secret` writes, and
                  a --podman pod's ConfigMap of that name (-o configmap) its data
  kubelet         what podman 4.3 does not do of a kubelet, for the pods the webhook injects
                  (`meshctl inject --podman` writes what podman needs into its output itself):
                  downward-API fields other than metadata.name (metadata.namespace,
                  status.podIP, spec.serviceAccountName, spec.nodeName (empty: no node),
                  the pod's labels) become values, and $(VAR) references in
                  command and args are expanded (podman expands neither); Secret volumes become
                  ConfigMap volumes holding the decoded data (podman 4.3 mounts a Secret's data
                  base64-encoded, stringData not at all); every volume is named after its pod too (podman keeps volumes by name
                  for the whole storage, so two pods' emptyDirs would be one); containerPorts
                  without a hostPort are dropped (podman 4.3 publishes them on the host)
  pod network     a default route in each pod (every CNI gives one; podman's internal network
                  does not, and a connect to a service's virtual address then fails with
                  ENETUNREACH before the pod's nat rules can redirect it). Nothing answers
                  beyond the network: the run's network is internal and the host has no address
                  on it
  pod deletion    SIGTERM to every container, their exit awaited, then the pod's network goes
                  (`podman pod stop` tears the network down while the containers still drain)

A Kubernetes API server (start_kubernetes_api, before the control plane): the fake of
tests/integration/fake_kubernetes_api.py, HTTPS on 6443 in the network namespace of a pod of its
own, `kube-apiserver` at run.ip(9), with a cluster CA and a token of its own; the control plane
pod gets --kubernetes-api and the CA and token mounted, so its Kubernetes service discovery
follows what the test puts there (kube_put, kube_delete). The stand-in Services above stay
meshlet Services; the API server holds only what a scenario puts.

Pod IPs: the API server at run.ip(9), the control plane at run.ip(10), pods from run.ip(20) up in
the order played.
"""

import concurrent.futures
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time

import harness

# The fake API server and certificate helpers of the integration tests (start_kubernetes_api).
INTEGRATION_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")

CONTROL_PLANE_NAMESPACE = "meshlet-system"
CONTROL_PLANE_NAME = "meshlet-control-plane"
CONTROL_PLANE_CONTAINER = CONTROL_PLANE_NAME + "-control-plane"
CONTROL_PLANE_SERVICE = "%s.%s.svc" % (CONTROL_PLANE_NAME, CONTROL_PLANE_NAMESPACE)
CONTROL_PLANE_DATA = "/var/lib/meshlet"
API_TOKEN = "/var/lib/meshlet/api-token"
# The root the control plane's CA generated: it verifies the API's HTTPS certificate.
API_CA = "/var/lib/meshlet/ca/root-cert.pem"
CLUSTER_DOMAIN = "cluster.local"
IMAGE_TAG = harness.RELEASE
PODMAN_MAX_ANNOTATION = 63
NODE_NAME = "e2e-node"  # the node of every pod (start_node_agent's race repair)
# Pods the controllers make from a template, and how a port's protocol is read from a Service.
TEMPLATED_KINDS = ("Deployment", "ReplicaSet", "StatefulSet")
APP_PROTOCOLS = {"http": "HTTP", "http2": "HTTP2", "h2c": "HTTP2", "grpc": "GRPC", "tcp": "TCP"}
# $(VAR) in command and args (Kubernetes: $$ escapes).
VAR_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def image(name):
    return "localhost/meshlet-%s:%s" % (name, IMAGE_TAG)


def port_protocol(port):
    """The meshlet protocol of a Kubernetes ServicePort: appProtocol, else the name's prefix
    (http-web, grpc-api, tcp-db), else HTTP."""
    for hint in (port.get("appProtocol", ""), port.get("name", "").split("-")[0]):
        protocol = APP_PROTOCOLS.get(hint.lower().rsplit("/", 1)[-1])
        if protocol:
            return protocol
    return "HTTP"


def _logged(proc, path, pattern):
    """The first group of `pattern` in the log `path` of `proc`, None while it is not there;
    raises when `proc` exited."""
    with open(path) as f:
        text = f.read()
    found = re.search(pattern, text)
    if found:
        return found.group(1)
    if proc.poll() is not None:
        raise harness.E2EError("%s exited: %s" % (os.path.basename(path), text[-2000:]))
    return None


def expand(text, env):
    """Kubernetes' $(VAR) expansion: a defined variable's value; an undefined one stays as it
    is; $$ is a $."""
    return VAR_REFERENCE.sub(
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


class Cluster:
    def __init__(self, run, meshctl, namespace="default", control_plane_args=(), cni=False):
        """cni: pods injected for capture by meshlet-cni (`meshctl inject --cni`) on a CNI run
        (harness.Run(cni=True)) whose node agent start_node_agent() runs."""
        self.run = run
        self.cni = cni
        self.node = None             # start_node_agent(): the agent, its API server and files
        self.meshctl_binary = meshctl
        self.namespace = namespace
        self.control_plane_args = list(control_plane_args)
        self.control_plane_ip = run.ip(10)
        self.next_host = 20
        self.trust_pem = None
        self.service_addresses = {}  # service name -> virtual address
        # More hostAliases for the pods played from now on ({"ip", "hostnames"}).
        self.extra_host_aliases = []
        self.secrets = {}            # (namespace, Secret name) -> {key: value}
        self.pods = {}               # pod name -> {"ip", "labels", "service_account", ...}
        self.kube_api = None         # start_kubernetes_api(): its process, address and files

    # --- the control plane ----------------------------------------------------------------------

    def start_kubernetes_api(self):
        """Plays the kube-apiserver pod and starts the fake API server in its network namespace
        (see the module doc). Before start_control_plane."""
        ip = self.run.ip(9)
        if INTEGRATION_DIR not in sys.path:
            sys.path.insert(0, INTEGRATION_DIR)
        import mesh_util  # only here: the demo, which uses this module too, has no API server
        d = os.path.join(self.run.dir, "kube-api")
        os.makedirs(d)
        ca = mesh_util.make_ca(d, "e2e-cluster-ca")
        cert, key = mesh_util.make_server_cert(d, "kube-apiserver", ca, san="IP:%s" % ip)
        token = "e2e-control-plane-" + os.urandom(8).hex()
        self.run.play({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "kube-apiserver", "labels": {"app": "kube-apiserver"}},
            "spec": {"containers": [{
                "name": "holder", "image": image("testapp"),
                "env": [{"name": "TESTAPP_SERVICE", "value": "kube-apiserver"},
                        {"name": "TESTAPP_LISTEN", "value": "127.0.0.1:9080"}]}]},
        }, ip)
        fake = os.path.join(INTEGRATION_DIR, "fake_kubernetes_api.py")
        log = os.path.join(d, "fake-api-server.log")
        proc = self.run.start_in_pod_network("kube-apiserver", [
            "/usr/bin/python3", fake, "--address", "0.0.0.0:6443", "--cert", cert, "--key", key,
            "--token", token], log)

        def listening():
            with open(log) as f:
                text = f.read()
            if proc.poll() is not None:
                raise harness.E2EError("the fake API server exited: %s" % text)
            return "listening" in text
        self.run.wait_until(listening, 20, "the fake API server to listen")
        with open(ca[0]) as f:
            ca_pem = f.read()
        self.kube_api = {"process": proc, "address": "https://%s:6443" % ip, "ca": ca_pem,
                         "ca_file": ca[0], "token": token, "log": log}

    def start_node_agent(self, agent, plugin, repair=False):
        """What a node of a cluster in CNI mode runs, on the host: meshlet-cni-agent (`agent`)
        installing `plugin` into the run's CNI configuration, and, on loopback, the API server it
        and the plugin read pods from (the fake of tests/integration; podman's pods are the
        pods of that name in this cluster's namespace: the plugin's defaultNamespace). The pods
        play_pod() plays are put there first, with their annotations. Before the pods; returns
        the agent's HTTP address once it is ready (meshlet-cni in the chain). Called again after
        the agent stopped, it starts a new one with the same API server and files; with
        `repair`, the agent's race repair looks at the pods of NODE_NAME (every pod played here)
        every second, after a grace of 2 s, and evicts."""
        if self.node is not None:
            return self._start_agent(agent, plugin, repair)
        if INTEGRATION_DIR not in sys.path:
            sys.path.insert(0, INTEGRATION_DIR)
        import mesh_util
        d = os.path.join(self.run.dir, "cni-node")
        service_account = os.path.join(d, "serviceaccount")
        os.makedirs(service_account)
        ca = mesh_util.make_ca(d, "e2e-node-ca")
        cert, key = mesh_util.make_server_cert(d, "kube-apiserver", ca, san="IP:127.0.0.1")
        token = "e2e-cni-node-" + os.urandom(8).hex()
        shutil.copyfile(ca[0], os.path.join(service_account, "ca.crt"))
        with open(os.path.join(service_account, "token"), "w") as f:
            f.write(token)
        api_log = os.path.join(d, "fake-api-server.log")
        with open(api_log, "w") as log:
            api = subprocess.Popen(
                ["/usr/bin/python3", os.path.join(INTEGRATION_DIR, "fake_kubernetes_api.py"),
                 "--address", "127.0.0.1:0", "--cert", cert, "--key", key, "--token", token],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True)
        self.run.helpers.append(api)
        address = self.run.wait_until(lambda: _logged(api, api_log, r"listening on (\S+)"), 20,
                                      "the node's fake API server to listen")
        self.node = {"dir": d, "address": address, "service_account": service_account,
                     "api": api, "api_log": api_log, "agents": 0,
                     "plugin_log": os.path.join(d, "state", "cni.log")}
        return self._start_agent(agent, plugin, repair)

    def _start_agent(self, agent, plugin, repair):
        d = self.node["dir"]
        self.node["agents"] += 1
        agent_log = os.path.join(d, "agent-%d.log" % self.node["agents"])
        repair_args = ["--node-name", NODE_NAME, "--repair-mode", "evict", "--repair-grace",
                       "2s", "--repair-interval", "1s"] if repair else ["--node-name="]
        with open(agent_log, "w") as log:
            proc = subprocess.Popen(
                [agent, "--cni-conf-dir", self.run.cni_conf_dir,
                 "--cni-bin-dir", self.run.cni_bin_dir, "--plugin-binary", plugin,
                 "--state-dir", os.path.join(d, "state"),
                 "--kubernetes-server", self.node["address"],
                 "--service-account-dir", self.node["service_account"],
                 "--default-namespace", self.namespace,
                 "--http-address", "127.0.0.1:0", "--check-interval", "1s",
                 "--uninstall-on-exit"] + repair_args,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.run.helpers.append(proc)
        serving = self.run.wait_until(
            lambda: _logged(proc, agent_log, r"serving on (127\.0\.0\.1:\d+)"), 20,
            "meshlet-cni-agent to serve")
        self.node.update({"agent": proc, "agent_log": agent_log, "http": serving})
        self.run.wait_until(lambda: self.node_agent_get("/readyz")[0] == 200, 20,
                            "meshlet-cni-agent to be ready (meshlet-cni in the chain)",
                            lambda: open(agent_log).read()[-2000:])
        return serving

    def node_agent_get(self, path):
        """(status, body) of the node agent's HTTP endpoint `path` (/readyz, /metrics)."""
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen("http://%s%s" % (self.node["http"], path),
                                        timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def plugin_log(self):
        """meshlet-cni's log lines (one per run of the plugin)."""
        try:
            with open(self.node["plugin_log"]) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def kube_put(self, kind, obj):
        """Creates or replaces `obj` (a dict) of `kind` (services, endpointslices, pods) in the
        API server; its watchers see it at once."""
        self._kube_command({"put": kind, "object": obj})

    def kube_get(self, path):
        """The object (a dict) at `path` of the API server (`/apis/GROUP/v1/namespaces/NS/...`),
        as a client reads it: HTTPS verified with the cluster CA, the control plane's token."""
        r = self.run.in_pod_network("kube-apiserver", [
            "curl", "-sS", "-m", "5", "--cacert", self.kube_api["ca_file"], "-H",
            "Authorization: Bearer " + self.kube_api["token"],
            self.kube_api["address"] + path])
        return json.loads(r.stdout)

    def kube_delete(self, kind, name, namespace=None):
        self._kube_command({"delete": kind, "namespace": namespace or self.namespace,
                            "name": name})

    def _kube_command(self, command):
        proc = self.kube_api["process"]
        if proc.poll() is not None:
            with open(self.kube_api["log"]) as f:
                raise harness.E2EError("the fake API server exited: %s" % f.read()[-2000:])
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()

    def start_control_plane(self, timeout=60):
        """Plays the control plane as a pod (its own identity and discovery certificate, from
        its own CA) and waits until meshctl check passes in it; reads the trust bundle. With
        the API server, the control plane follows it (Kubernetes service discovery)."""
        args, volumes, mounts, config_maps = [], [], [], []
        if self.kube_api is not None:
            args = ["--kubernetes-api", self.kube_api["address"],
                    "--kubernetes-ca-file", "/var/run/kube-api/ca.crt",
                    "--kubernetes-token-file", "/var/run/kube-api/token",
                    # No injection webhook configuration to keep in this cluster.
                    "--webhook-configuration="]
            config_maps = [{"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "control-plane-kube-api"},
                            "data": {"ca.crt": self.kube_api["ca"],
                                     "token": self.kube_api["token"]}}]
            volumes = [{"name": "control-plane-kube-api",
                        "configMap": {"name": "control-plane-kube-api"}}]
            mounts = [{"name": "control-plane-kube-api", "mountPath": "/var/run/kube-api",
                       "readOnly": True}]
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": CONTROL_PLANE_NAME, "namespace": CONTROL_PLANE_NAMESPACE,
                         "labels": {"app": CONTROL_PLANE_NAME}},
            "spec": {"containers": [{
                "name": "control-plane",
                "image": image("control-plane"),
                "args": ["--api-address", "0.0.0.0:15014", "--zipkin-address="] +
                        self.control_plane_args + args,
                "env": [{"name": "POD_NAMESPACE", "value": CONTROL_PLANE_NAMESPACE}],
                "volumeMounts": mounts,
            }], "volumes": volumes},
        }
        self.run.play(pod, self.control_plane_ip, extra_documents=config_maps)
        took = self.run.wait_ready(CONTROL_PLANE_CONTAINER, self.meshctl_args("check"),
                                   timeout=timeout)
        self.trust_pem = self.meshctl("trust-bundle")
        if "BEGIN CERTIFICATE" not in self.trust_pem:
            raise harness.E2EError("meshctl trust-bundle: %r" % self.trust_pem[:200])
        return took

    def meshctl_args(self, *args):
        return ["meshctl", "--token-file", API_TOKEN, "--ca-file",
                getattr(self, "api_ca", API_CA)] + list(args)

    def meshctl(self, *args, input=None, check=True, timeout=60):
        """meshctl in the control plane's pod (its API on 127.0.0.1:15014, HTTPS verified with
        the CA root of its data directory, with the token there), run in its data directory;
        stdout, or the CompletedProcess when check is False."""
        return self.run.podman(["exec", "-i", "--workdir", CONTROL_PLANE_DATA,
                                CONTROL_PLANE_CONTAINER] + self.meshctl_args(*args),
                               check=check, input=input, timeout=timeout)

    def apply(self, documents, check=True):
        """meshctl apply -f - of policy documents (dicts) in the control plane's pod."""
        text = "".join("---\n" + json.dumps(d) + "\n" for d in documents)
        return self.meshctl("apply", "-f", "-", input=text, check=check)

    def apply_file(self, name, documents=None, source=None):
        """meshctl apply -f policies/NAME, as an operator applies a file: `documents` (dicts)
        written to it, or the file `source` copied, into policies/ of the control plane pod's
        data directory first. The objects then carry the file in their meshlet.io/applied-from
        annotation, which `meshctl explain` shows. Returns that path."""
        staged = os.path.join(self.run.dir, "policies")
        os.makedirs(staged, exist_ok=True)
        for old in os.listdir(staged):
            os.unlink(os.path.join(staged, old))
        if source is not None:
            shutil.copyfile(source, os.path.join(staged, name))
        else:
            with open(os.path.join(staged, name), "w") as f:
                f.write("".join("---\n" + json.dumps(d) + "\n" for d in documents))
        os.chmod(os.path.join(staged, name), 0o644)
        self.run.podman(["cp", staged + "/.", "%s:%s/policies" % (CONTROL_PLANE_CONTAINER,
                                                               CONTROL_PLANE_DATA)])
        path = "policies/" + name
        self.meshctl("apply", "-f", path)
        return path

    # --- the application --------------------------------------------------------------------

    def inject(self, paths, extra=()):
        """The documents of `paths` (files or directories of manifests) after meshctl inject, as
        dicts."""
        cmd = [self.meshctl_binary, "inject", "--mode", "classic", "--podman",
               "--identity", "join-token", "-o", "json"] + (["--cni"] if self.cni else []) + \
            list(extra)
        for path in paths:
            cmd += ["-f", path]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        self.run.transcript.append((cmd, r.returncode, (r.stdout + r.stderr)[-4000:]))
        if r.returncode != 0:
            raise harness.E2EError("meshctl inject failed (exit %d): %s" % (
                r.returncode, r.stderr.strip()))
        out = json.loads(r.stdout)
        return out["items"] if out.get("kind") == "List" else [out]

    def deploy(self, paths, only=None, extra=()):
        """Injects the manifests of `paths` (meshctl inject with `extra` flags too) and runs
        them: ServiceAccounts get their join-token Secret, Services their mesh Service and
        address, workloads their pods. `only`: the names of the objects to deploy (default
        all)."""
        documents = [d for d in self.inject(paths, extra)
                     if only is None or d["metadata"]["name"] in only]
        for doc in documents:
            if doc["kind"] == "ServiceAccount":
                self.create_join_token(doc["metadata"]["name"])
        services = [d for d in documents if d["kind"] == "Service"]
        if services:
            self.apply_services(services)
        played = []
        for doc in documents:
            if doc["kind"] == "Pod":
                played.append(self.play_pod(doc["metadata"]["name"], doc))
            elif doc["kind"] in TEMPLATED_KINDS:
                for i in range(int(doc["spec"].get("replicas", 1))):
                    played.append(self.play_pod("%s-%d" % (doc["metadata"]["name"], i),
                                                doc["spec"]["template"]))
        return played

    def create_join_token(self, service_account, ttl="4h", namespace=None):
        namespace = namespace or self.namespace
        secret = self.meshctl("token", "create", "-n", namespace, "--service-account",
                              service_account, "--ttl", ttl, "-o", "secret")
        # The Secret is YAML of a fixed shape (meshctl token create -o secret).
        name = re.search(r"^  name: (\S+)$", secret, re.M).group(1)
        token = re.search(r'^  token: "(.*)"$', secret, re.M).group(1)
        self.secrets[(namespace, name)] = {"token": token}
        return name

    def apply_services(self, services):
        """Each Kubernetes Service as the control plane's Service of the same name, labels and ports;
        records the virtual addresses the control plane allocated."""
        mesh = []
        for svc in services:
            ports = []
            for p in svc["spec"]["ports"]:
                port = {"name": p.get("name") or "port-%d" % p["port"], "port": p["port"],
                        "protocol": port_protocol(p)}
                if isinstance(p.get("targetPort"), int):
                    port["targetPort"] = p["targetPort"]
                ports.append(port)
            metadata = {"name": svc["metadata"]["name"], "namespace": self.namespace}
            if svc["metadata"].get("labels"):
                metadata["labels"] = svc["metadata"]["labels"]  # meshlet.io/export among them
            mesh.append({"apiVersion": "meshlet.io/v1", "kind": "Service", "metadata": metadata,
                         "spec": {"ports": ports}})
        self.apply(mesh)
        for svc in json.loads(self.meshctl("get", "svc", "-o", "json"))["items"]:
            addresses = svc.get("spec", {}).get("addresses") or \
                svc.get("status", {}).get("addresses") or []
            if addresses:
                self.service_addresses[svc["metadata"]["name"]] = addresses[0]

    # An "outside network" (join_outside_network): a /30 at the top of the benchmarking range,
    # where pods' subnets (the lowest free /24s of 198.18/16 and 198.19/16) come last.
    OUTSIDE_LINKS = (("198.19.255.253", "198.19.255.254", 30),  # pod end, far end, prefix
                     ("198.18.255.253", "198.18.255.254", 30))

    def outside_link(self):
        """(the pod's address, the outside end's, prefix length): not in the run's subnet."""
        for link in self.OUTSIDE_LINKS:
            if ipaddress.ip_address(link[0]) not in self.run.subnet:
                return link
        raise harness.E2EError("no outside link address apart from %s" % self.run.subnet)

    def join_outside_network(self, pod, netns, link):
        """Makes network namespace `netns`, an "outside network" that `pod` alone reaches: a veth
        pair with `link`'s pod end in the pod and its far end in `netns` (whose programs, run
        with `ip netns exec`, listen there). remove_outside_network(netns) undoes it; the pod's
        end goes with the pod."""
        pod_end, far_end, prefix = link
        pid = str(self.run.pod_pid(pod))
        veth = "mlx" + netns[-10:]
        for cmd in (["ip", "netns", "add", netns],
                    ["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"],
                    ["ip", "link", "set", veth, "netns", pid],
                    ["nsenter", "--target", pid, "--net", "ip", "addr", "add",
                     "%s/%d" % (pod_end, prefix), "dev", veth],
                    ["nsenter", "--target", pid, "--net", "ip", "link", "set", veth, "up"],
                    ["ip", "link", "set", veth + "p", "netns", netns],
                    ["ip", "netns", "exec", netns, "ip", "addr", "add",
                     "%s/%d" % (far_end, prefix), "dev", veth + "p"],
                    ["ip", "netns", "exec", netns, "ip", "link", "set", veth + "p", "up"],
                    ["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            self.run.transcript.append((cmd, r.returncode, r.stdout + r.stderr))
            if r.returncode != 0:
                raise harness.E2EError("%s: %s" % (" ".join(cmd), r.stderr.strip()))

    @staticmethod
    def remove_outside_network(netns):
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)

    def host_aliases(self):
        aliases = [{"ip": self.control_plane_ip, "hostnames": [
            CONTROL_PLANE_SERVICE, CONTROL_PLANE_SERVICE + "." + CLUSTER_DOMAIN]}]
        aliases += self.extra_host_aliases
        for name, address in sorted(self.service_addresses.items()):
            ns = self.namespace
            aliases.append({"ip": address, "hostnames": [
                name, "%s.%s" % (name, ns), "%s.%s.svc" % (name, ns),
                "%s.%s.svc.%s" % (name, ns, CLUSTER_DOMAIN)]})
        return aliases

    def play_pod(self, name, template, ip=None, namespace=None):
        """Plays one pod from `template` (a pod or pod template, as injected) in `namespace`
        (default the cluster's), as a kubelet on the cluster's network would run it (see the
        module doc). Pod names are podman's, so unique across namespaces. Returns the pod's
        name."""
        namespace = namespace or self.namespace
        ip = ip or self.run.ip(self.next_host)
        self.next_host += 1
        metadata = template.get("metadata") or {}
        spec = json.loads(json.dumps(template["spec"]))
        service_account = spec.get("serviceAccountName") or "default"
        spec["restartPolicy"] = "OnFailure"
        spec["hostAliases"] = self.host_aliases() + spec.get("hostAliases", [])
        # No node, and no topology labels on it (as a cluster without them).
        fields = {"metadata.name": name, "metadata.namespace": namespace,
                  "status.podIP": ip, "spec.serviceAccountName": service_account,
                  "spec.nodeName": ""}
        for key, value in (metadata.get("labels") or {}).items():
            fields["metadata.labels['%s']" % key] = value
        for key in ("topology.kubernetes.io/region", "topology.kubernetes.io/zone"):
            fields.setdefault("metadata.labels['%s']" % key, "")
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["name"] == "meshlet-proxy" and os.environ.get("MESHLET_E2E_ACCESS_LOG") == "1":
                c["args"] = c.get("args", []) + ["--access-log=/dev/stdout"]
            env = {}
            for e in c.get("env", []):
                field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                if field in fields and field != "metadata.name":
                    e.pop("valueFrom")
                    e["value"] = fields[field]
                if "value" in e:
                    e["value"] = expand(e["value"], env)
                env[e["name"]] = e.get("value", fields.get(field, ""))
            for key in ("command", "args"):
                if key in c:
                    c[key] = [expand(a, env) for a in c[key]]
            c["ports"] = [p for p in c.get("ports", []) if p.get("hostPort")]
            if not c["ports"]:
                del c["ports"]
        config_maps = []
        renamed = {}
        for v in spec.get("volumes", []):
            renamed[v["name"]] = "%s-%s" % (name, v["name"])
            v["name"] = renamed[v["name"]]
            if "secret" in v:
                secret = v.pop("secret")
                data = self.secrets.get((namespace, secret["secretName"]))
                if data is None:
                    raise harness.E2EError("pod %s mounts Secret %s, which does not exist" % (
                        name, secret["secretName"]))
                config_maps.append({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": v["name"]}, "data": data})
                v["configMap"] = {"name": v["name"], "items": secret.get("items", [])}
            elif "configMap" in v and v["configMap"]["name"] == "meshlet-trust":
                config_maps.append({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": v["name"]},
                                    "data": {"ca.pem": self.trust_pem}})
                v["configMap"]["name"] = v["name"]
            elif "configMap" in v and (namespace, v["configMap"]["name"]) in self.secrets:
                # The join token as `meshctl inject --podman` mounts it: a ConfigMap of the
                # Secret's name (meshctl token create -o configmap).
                config_maps.append({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": v["name"]},
                                    "data": self.secrets[(namespace, v["configMap"]["name"])]})
                v["configMap"]["name"] = v["name"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            for m in c.get("volumeMounts", []):
                m["name"] = renamed.get(m["name"], m["name"])
        # podman 4.3 refuses annotation values longer than 63 characters (Kubernetes allows
        # 256 KiB in all): such annotations, like the webhook's JSON injection status, which
        # nothing in the pod reads, are left out.
        annotations = {k: v for k, v in metadata.get("annotations", {}).items()
                       if len(v) <= PODMAN_MAX_ANNOTATION}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace,
                            "labels": metadata.get("labels", {}),
                            "annotations": annotations},
               "spec": spec}
        if self.node is not None:
            # The pod as the API server has it, with every annotation (what the plugin reads),
            # on NODE_NAME, owned by a ReplicaSet when played from a template, Running and not
            # ready (what the agent's race repair reads; it leaves captured pods alone).
            owners = [] if template.get("kind") == "Pod" else [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit("-", 1)[0],
                "uid": "rs-" + name.rsplit("-", 1)[0], "controller": True}]
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.node["api"].stdin.write(json.dumps({"put": "pods", "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "uid": os.urandom(8).hex(),
                             "labels": metadata.get("labels", {}),
                             "annotations": metadata.get("annotations", {}),
                             "ownerReferences": owners},
                "spec": dict(spec, nodeName=NODE_NAME),
                "status": {"phase": "Running", "startTime": started, "containerStatuses": [
                    {"name": c["name"], "ready": False} for c in spec["containers"]]}}}) + "\n")
            self.node["api"].stdin.flush()
        self.run.play(pod, ip, extra_documents=config_maps)
        meshed = any(c["name"] == "meshlet-proxy"
                     for c in spec.get("initContainers", []) + spec["containers"])
        self.pods[name] = {"ip": ip, "labels": metadata.get("labels", {}), "namespace": namespace,
                           "service_account": service_account, "meshed": meshed}
        self.run.add_default_route(name)
        return name

    def play_pods(self, pods, ips=None):
        """Plays several pods at once, each (name, template, namespace) as play_pod() plays it:
        their addresses given in the order listed (`ips`: pod name -> its address instead), their
        `podman kube play`s run side by side (each mostly waits for its containers to start).
        Returns their names; the first failure is raised once every play has ended."""
        given = ips or {}
        ips = []
        for name, _, _ in pods:
            if name in given:
                ips.append(given[name])
                continue
            ips.append(self.run.ip(self.next_host))
            self.next_host += 1
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(pods))) as pool:
            plays = [pool.submit(self.play_pod, name, template, ip, namespace)
                     for (name, template, namespace), ip in zip(pods, ips)]
            concurrent.futures.wait(plays)
        return [p.result() for p in plays]

    def delete_pods(self, pods, grace=30):
        """delete_pod() of each of `pods`, side by side; the first failure is raised once every
        deletion has ended."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(pods))) as pool:
            deletions = [pool.submit(self.delete_pod, pod, grace) for pod in pods]
            concurrent.futures.wait(deletions)
        for d in deletions:
            d.result()

    def wait_ready(self, pods=None, timeout=90):
        """Waits until every proxy of `pods` (default all) answers /ready with 200: it has its
        configuration, its certificate and sees its pod's capture in effect."""
        started = time.monotonic()
        for name in pods or self.meshed_pods():
            left = max(1, timeout - (time.monotonic() - started))
            self.run.wait_until(
                lambda n=name: self.pod_http(n, "http://127.0.0.1:15020/ready")[0] == 200,
                left, "%s's proxy to be ready" % name,
                lambda n=name: "%s\n%s" % (self.pod_http(n, "http://127.0.0.1:15020/ready"),
                                           self.run.logs(n + "-meshlet-proxy")[-3000:]))
        return time.monotonic() - started

    def meshed_pods(self):
        """The pods that have a proxy, in the order played."""
        return [name for name, pod in self.pods.items() if pod["meshed"]]

    def pod_http(self, pod, url, method="GET", timeout=5):
        """(status, body) of an HTTP request made from inside `pod`'s network namespace (host
        curl; the request never leaves the pod), e.g. the proxy's admin on 127.0.0.1:15000."""
        r = self.run.in_pod_network(pod, [
            "curl", "-s", "-m", str(timeout), "-X", method, "-o", "-", "-w", "\n%{http_code}",
            url], check=False)
        body, _, status = r.stdout.rpartition("\n")
        return int(status or 0), body

    def app(self, pod):
        """The app container's name of `pod` (its first container that is not the proxy)."""
        for container in self.containers(pod):
            if not container.endswith("-infra") and not container.endswith("-meshlet-proxy") \
                    and not container.endswith("-meshlet-init"):
                return container
        raise harness.E2EError("pod %s has no app container" % pod)

    def exec(self, pod, cmd, check=True, timeout=60):
        """Runs `cmd` in `pod`'s app container as the app's user."""
        return self.run.exec(self.app(pod), cmd, check=check, timeout=timeout)

    def delete_pod(self, pod, grace=30):
        """What a kubelet does when a pod is deleted: SIGTERM to every container at once, their
        exit awaited for up to `grace` seconds (then SIGKILL), and only then is the pod's network
        torn down. `podman pod stop` alone removes the pod's network within a tenth of a second
        of its SIGTERM, while the sidecar still drains: its last answers would never leave."""
        def running():
            return [c for c in self.containers(pod) if not c.endswith("-infra") and self.run.podman(
                ["inspect", "--format", "{{.State.Running}}", c], check=False).stdout.strip() ==
                "true"]
        still_running = running()
        if still_running:  # a finished pod (a Job's) has none left
            self.run.podman(["kill", "--signal", "TERM"] + still_running)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and running():
            time.sleep(0.1)
        self.run.podman(["pod", "stop", "--time", "0", pod], timeout=60)
        self.run.save_logs(pod)
        self.run.podman(["pod", "rm", "--force", pod], timeout=60)
        self.pods.pop(pod, None)

    def containers(self, pod):
        return self.run.podman(["pod", "inspect", pod, "--format",
                                "{{range .Containers}}{{.Name}} {{end}}"]).split()
