"""End-to-end: a canary control plane beside the current one, a namespace moved to it with
`meshctl upgrade` and back, under traffic (docs/upgrades.md, ADR 0069 and 0070).

    revision_test.py --bin-dir DIR

Two control planes run as pods: revisions 0-2-0 and canary, each with its own name
(meshlet-control-plane-REVISION: Service, certificate, service account) and one CA root made at
test time, so that their workloads trust each other. Each signs with an external signer
(docs/security.md, "External signers"): 0-2-0 with an intermediate under the root whose key is
only in a SoftHSM2 token (--ca-pkcs11-*: the token store, PIN, module and the OpenSSL library it
needs mounted from the host), canary's workload certificates through the Kubernetes CSR API
(--ca-csr-signer-name), answered by csr_signer.py with another intermediate, run in the API
server pod's network (canary's own certificates from the root, its key given). Every proxy's
certificate is checked to come from its revision's signer after setup and after each move. Both follow the (fake) Kubernetes API server, which holds what a cluster would: the
namespaces `front` and `shop` labelled meshlet.io/rev, the Deployments, their Pods (with the
annotations injection writes), Services and EndpointSlices, and the control planes' own
Deployments. `client` and `reviews` run in `front` on 0-2-0, `productpage` (2 replicas) in `shop`,
first on 0-2-0; client calls productpage.shop, which calls reviews.front: once shop is on canary,
every request crosses revisions both ways, over mTLS.

The test plays what the cluster would do with what `meshctl upgrade` changes (ADR 0070): the
Deployment controller (a pod template whose kubectl.kubernetes.io/restartedAt changed is rolled
one pod at a time, the new pod first: it is injected as the revision's webhook would, for the
namespace's label, with the same code through `meshctl inject`, played, and becomes ready;
then the old pod leaves its EndpointSlice, drains and is deleted) and the Deployment's status.
`meshctl upgrade` itself runs in the target revision's control-plane pod against the fake API
server, exactly as a user runs it against a cluster.

  setup      both control planes, the app injected for 0-2-0, everything ready
  revisions  meshctl version and proxy-status name each proxy's revision
  upgrade    meshctl upgrade --revision canary -n shop under load: shop's pods move to canary
             (its control plane lists them with revision canary, 0-2-0's no longer), 0 failed
  rollback   back through a tag: meshctl tag set stable --revision 0-2-0, then meshctl
             upgrade --revision stable -n shop under load (shop labelled meshlet.io/rev=stable,
             its pods on 0-2-0; meshctl told only --revision stable, which implies 0-2-0's API
             identity for --check-proxies once the tag is resolved), 0 failed
     cleanup nothing of the run remains

Without root or a working podman it prints a SKIP line and exits 0, unless
MESHLET_REQUIRE_E2E=1.
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import cluster as cluster_lib
import harness

CONTROL_PLANE_NAMESPACE = cluster_lib.CONTROL_PLANE_NAMESPACE
OLD, NEW = "0-2-0", "canary"
LOAD_RATE = 100
# The Services' ClusterIPs: an unroutable range, as in the mesh test's scenario n.
CLUSTER_IPS = {("front", "reviews"): "240.241.2.10", ("shop", "productpage"): "240.241.2.11",
               ("front", "client"): "240.241.2.12"}
CA_DIR = "/etc/meshlet/ca"
# The external signers (docs/security.md, "External signers"): 0-2-0 signs with an intermediate
# whose key is in a SoftHSM2 token, canary's workload certificates come from a signer process
# answering the Kubernetes CSR API; both intermediates are under the one root.
HSM_DIR = "/opt/softhsm"          # the token store, the module and its libraries, in 0-2-0's pod
HSM_TOKEN, HSM_KEY_LABEL = "meshlet-ca", "meshlet-intermediate"
HSM_INTERMEDIATE = "meshlet-hsm-intermediate"
CSR_INTERMEDIATE = "meshlet-csr-api-intermediate"
SIGNER_NAME = "example.com/meshlet-e2e"
CONTROL_PLANE_UID = 65532         # the control-plane image's user
INTERMEDIATE_EXTENSIONS = ("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                           "keyUsage=critical,keyCertSign,cRLSign\n"
                           "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n")


def read(path):
    with open(path) as f:
        return f.read()


def control_plane_name(revision):
    return "meshlet-control-plane-" + revision


def deployment(name, namespace, replicas, env, service_account):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": labels, "annotations": {}}, "spec": {
                         "serviceAccountName": service_account,
                         "containers": [{
                             "name": name, "image": cluster_lib.image("testapp"),
                             "env": [{"name": "TESTAPP_SERVICE", "value": name},
                                     {"name": "TESTAPP_LISTEN", "value": "0.0.0.0:9080"}] + env,
                             "ports": [{"name": "http", "containerPort": 9080}]}]}}},
            "status": {}}


class RevisionMesh:
    def __init__(self, run, bin_dir):
        self.run = run
        self.bin_dir = bin_dir
        self.cluster = cluster_lib.Cluster(
            run, os.path.join(bin_dir, "control-plane", "cli", "meshctl"))
        self.control_planes = {}   # revision -> {"ip", "container"}
        self.deployments = {}      # (namespace, name) -> the Deployment as in the API server
        self.pods = {}             # (namespace, deployment) -> [pod names], oldest first
        self.generation = {}       # (namespace, name) -> the pod-template generation played
        self.rolled = {}           # (namespace, name) -> the restartedAt value rolled out
        self.pod_counter = 0
        self.lock = threading.Lock()
        self.controller_error = None
        self.tags = {}             # revision tag -> revision, as `meshctl tag set` made them

    # --- the control planes ---------------------------------------------------------------

    def start_control_planes(self):
        api = self.cluster.kube_api
        root = read(self.ca[0])
        self.cluster.trust_pem = root
        took = []
        for i, revision in enumerate((OLD, NEW)):
            name = control_plane_name(revision)
            ip = self.run.ip(10 + i)
            signing = self.signing[revision]
            config_maps = [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name + "-kube"},
                 "data": {"ca.crt": api["ca"], "token": api["token"]}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name + "-ca"},
                 "data": dict(signing["files"], **{"cert.pem": root})}]
            volumes = [{"name": name + "-kube", "configMap": {"name": name + "-kube"}},
                       {"name": name + "-ca", "configMap": {"name": name + "-ca"}}]
            mounts = [{"name": name + "-kube", "mountPath": "/var/run/kube-api", "readOnly": True},
                      {"name": name + "-ca", "mountPath": CA_DIR, "readOnly": True}]
            if signing.get("host_dir"):
                volumes.append({"name": name + "-hsm", "hostPath": {
                    "path": signing["host_dir"], "type": "Directory"}})
                mounts.append({"name": name + "-hsm", "mountPath": HSM_DIR})
            pod = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": CONTROL_PLANE_NAMESPACE,
                             "labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "control-plane", "image": cluster_lib.image("control-plane"),
                    "args": ["--api-address", "0.0.0.0:15014", "--zipkin-address=",
                             "--revision", revision] + signing["args"] + [
                             "--kubernetes-api", api["address"],
                             "--kubernetes-ca-file", "/var/run/kube-api/ca.crt",
                             "--kubernetes-token-file", "/var/run/kube-api/token",
                             # No webhook configuration nor ConfigMaps in this cluster.
                             "--webhook-configuration=", "--trust-bundle-namespaces="],
                    "env": [{"name": "POD_NAMESPACE", "value": CONTROL_PLANE_NAMESPACE}] +
                           signing.get("env", []),
                    "volumeMounts": mounts}],
                    "volumes": volumes}}
            self.run.play(pod, ip, extra_documents=config_maps)
            container = name + "-control-plane"
            self.control_planes[revision] = {"ip": ip, "container": container}
            # What meshctl upgrade checks first: the revision's control plane Deployment.
            self.cluster.kube_put("deployments", {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": CONTROL_PLANE_NAMESPACE, "generation": 1},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {}}},
                "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                           "readyReplicas": 1, "availableReplicas": 1}})
        for revision in (OLD, NEW):
            took.append(self.run.wait_ready(self.control_planes[revision]["container"],
                                            self.meshctl_args(revision, "check"), timeout=60))
        return "revisions %s at %s and %s at %s, one CA root; ready after %.1f s" % (
            OLD, self.control_planes[OLD]["ip"], NEW, self.control_planes[NEW]["ip"], max(took))

    # --- the external signers -----------------------------------------------------------------

    def hsm_signing(self, mesh_util, d):
        """0-2-0's signing: an intermediate under the root whose key is imported into a SoftHSM2
        token and then deleted; the token store, the PIN, the module and the libraries it needs
        that the control-plane image lacks go into one host directory mounted at HSM_DIR, owned
        by the image's user (a token is written to when a session opens). Under
        AddressSanitizer, which refuses the RTLD_DEEPBIND the module needs, the key stays a file
        (noted in the scenario's line)."""
        chain = self.intermediate(mesh_util, d, HSM_INTERMEDIATE)
        key = os.path.join(d, HSM_INTERMEDIATE + "-key.pem")
        if os.environ.get("ASAN_OPTIONS"):
            return {"files": {"chain.pem": chain, "key.pem": read(key)},
                    "args": ["--ca-cert", CA_DIR + "/chain.pem", "--ca-key", CA_DIR + "/key.pem"],
                    "what": "0-2-0 signing with a key file (AddressSanitizer: no PKCS#11 module)"}
        module = mesh_util.softhsm_module()
        if module is None or shutil.which("softhsm2-util") is None:
            raise harness.E2EError("SoftHSM2 is not installed (apt-get install softhsm2; "
                                   "./dev test installs it)")
        host = os.path.join(self.run.dir, "softhsm")
        for sub in ("tokens", "lib"):
            os.makedirs(os.path.join(host, sub))
        conf = os.path.join(host, "softhsm2-host.conf")
        with open(conf, "w") as f:
            f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
                    "log.level = ERROR\n" % host)
        with open(os.path.join(host, "softhsm2.conf"), "w") as f:
            f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
                    "log.level = ERROR\n" % HSM_DIR)
        pin = "e2e-" + os.urandom(6).hex()
        env = dict(os.environ, SOFTHSM2_CONF=conf)
        for args in (["--init-token", "--free", "--label", HSM_TOKEN, "--pin", pin,
                      "--so-pin", "so-" + pin],
                     ["--import", key, "--token", HSM_TOKEN, "--label", HSM_KEY_LABEL,
                      "--id", "a1", "--pin", pin]):
            r = subprocess.run(["softhsm2-util"] + args, capture_output=True, text=True,
                               env=env, timeout=30)
            if r.returncode != 0:
                raise harness.E2EError("softhsm2-util %s: %s%s" % (args[0], r.stdout, r.stderr))
        os.remove(key)  # only the token has it now
        with open(os.path.join(host, "pin"), "w") as f:
            f.write(pin + "\n")
        os.chmod(os.path.join(host, "pin"), 0o600)
        # The module, and what it links that the control plane's image does not hold (OpenSSL's
        # libcrypto.so.3: the image's libcrypto is BoringSSL's, another soname).
        sys.path.insert(0, os.path.dirname(harness.BUILD_IMAGES))
        import build as image_build  # deploy/images/build.py: what the images hold, by ldd
        have = {os.path.basename(lib) for lib in image_build.shared_libraries(
            os.path.join(self.bin_dir, "control-plane", "control-plane"))}
        shutil.copy2(module, os.path.join(host, "lib", "libsofthsm2.so"))
        for lib in image_build.shared_libraries(module):
            if os.path.basename(lib) not in have:
                shutil.copy2(os.path.realpath(lib), os.path.join(host, "lib",
                                                                 os.path.basename(lib)))
        for root, dirs, files in os.walk(host):
            for entry in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.chown(entry, CONTROL_PLANE_UID, CONTROL_PLANE_UID)
        os.chmod(host, 0o700)
        return {"files": {"chain.pem": chain}, "host_dir": host,
                "args": ["--ca-cert", CA_DIR + "/chain.pem",
                         "--ca-pkcs11-module", HSM_DIR + "/lib/libsofthsm2.so",
                         "--ca-pkcs11-token", HSM_TOKEN, "--ca-pkcs11-key-label", HSM_KEY_LABEL,
                         "--ca-pkcs11-pin-file", HSM_DIR + "/pin"],
                "env": [{"name": "SOFTHSM2_CONF", "value": HSM_DIR + "/softhsm2.conf"},
                        {"name": "LD_LIBRARY_PATH", "value": HSM_DIR + "/lib"}],
                "what": "0-2-0 signing in a SoftHSM2 token"}

    def csr_signing(self, mesh_util, d):
        """canary's signing: its own certificates and the trust bundle from the root (its key
        given), the workloads' through the Kubernetes CSR API, answered by csr_signer.py with
        an intermediate under the root, run in the API server pod's network."""
        chain = self.intermediate(mesh_util, d, CSR_INTERMEDIATE)
        api = self.cluster.kube_api
        token_file = os.path.join(d, "signer-token")
        with open(token_file, "w") as f:
            f.write(api["token"])
        log = os.path.join(self.run.dir, "csr-signer.log")
        proc = self.run.start_in_pod_network("kube-apiserver", [
            "/usr/bin/python3", os.path.join(cluster_lib.INTEGRATION_DIR, "csr_signer.py"),
            "--api", api["address"], "--token-file", token_file,
            "--ca-cert", os.path.join(d, CSR_INTERMEDIATE + ".pem"),
            "--ca-key", os.path.join(d, CSR_INTERMEDIATE + "-key.pem"),
            "--signer-name", SIGNER_NAME, "--cafile", self.api_ca_file], log)

        def watching():
            if proc.poll() is not None:
                raise harness.E2EError("csr_signer.py exited: %s" % read(log)[-2000:])
            return "watching" in read(log)
        self.run.wait_until(watching, 20, "the CSR signer to watch")
        self.signer_log = log
        del chain  # canary signs its own certificates with the root
        return {"files": {"key.pem": read(self.ca[1])},
                "args": ["--ca-cert", CA_DIR + "/cert.pem", "--ca-key", CA_DIR + "/key.pem",
                         "--ca-csr-signer-name", SIGNER_NAME],
                "what": "canary's workload certificates through the CSR API (%s)" % SIGNER_NAME}

    def intermediate(self, mesh_util, d, name):
        """An intermediate CA `name` under the root: its chain (PEM text, root last); its key
        in d/NAME-key.pem."""
        cert, _ = mesh_util.make_leaf(d, name, self.ca, INTERMEDIATE_EXTENSIONS)
        return read(cert) + read(self.ca[0])

    def check_signers(self):
        """Each proxy's certificate comes from its revision's signer: 0-2-0's from the HSM's
        intermediate, canary's from the CSR API's; every canary proxy's SPIFFE id was signed by
        the signer process. A line on what was checked."""
        want = {OLD: "CN=" + HSM_INTERMEDIATE, NEW: "CN=" + CSR_INTERMEDIATE}
        counts = {OLD: 0, NEW: 0}
        signed = read(self.signer_log)
        for pods in self.pods.values():
            for pod in pods:
                status, body = self.cluster.pod_http(pod, "http://127.0.0.1:15000/certs")
                if status != 200:
                    raise harness.E2EError("%s's /certs: %s %s" % (pod, status, body[:300]))
                certificate = json.loads(body)["workload_certificate"]
                leaf, spiffe_id = certificate["chain"][0], certificate["identity"]
                revision = self.cluster.pods[pod]["revision"]
                if leaf["issuer"] != want[revision]:
                    raise harness.E2EError("%s (on %s) holds a certificate issued by %r, not %r" % (
                        pod, revision, leaf["issuer"], want[revision]))
                if revision == NEW and " %s\n" % spiffe_id not in signed:
                    raise harness.E2EError("%s's id %s is not in the CSR signer's log:\n%s" % (
                        pod, spiffe_id, signed[-2000:]))
                counts[revision] += 1
        return "%d certificates from the HSM's intermediate, %d through the CSR API" % (
            counts[OLD], counts[NEW])

    def meshctl_args(self, revision, *args):
        # The API's certificate is issued by the shared root (no generated root in the data
        # directory) to the revision's own identity.
        return ["meshctl", "--token-file", cluster_lib.API_TOKEN, "--ca-file",
                CA_DIR + "/cert.pem", "--server-identity",
                "spiffe://cluster.local/ns/%s/sa/%s" % (CONTROL_PLANE_NAMESPACE,
                                                        control_plane_name(revision))] + list(args)

    def meshctl(self, revision, *args, check=True, timeout=60):
        return self.run.podman(
            ["exec", "-i", self.control_planes[revision]["container"]] +
            self.meshctl_args(revision, *args), check=check, timeout=timeout)

    def proxies(self, revision):
        """{proxy id: revision} of the sidecars connected to `revision`'s control plane."""
        items = json.loads(self.meshctl(revision, "proxy-status", "-o", "json"))["items"]
        return {p["id"]: p.get("revision") for p in items}

    # --- what the cluster holds -------------------------------------------------------------

    def kube_get(self, path):
        """GET `path` from the fake API server (curl in its pod's network namespace)."""
        api = self.cluster.kube_api
        r = self.run.in_pod_network("kube-apiserver", [
            "curl", "-s", "--fail-with-body", "--cacert", self.api_ca_file,
            "-H", "Authorization: Bearer " + api["token"], api["address"] + path])
        return json.loads(r.stdout)

    def namespace_revision(self, namespace):
        labels = self.kube_get("/api/v1/namespaces/" + namespace)["metadata"].get("labels", {})
        return labels.get("meshlet.io/rev", "")

    def put_namespace(self, namespace, revision):
        self.cluster.kube_put("namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {
                "kubernetes.io/metadata.name": namespace, "meshlet.io/rev": revision}}})

    def put_endpoints(self, namespace, service):
        """The Service's EndpointSlice: its ready pods (as the endpoints controller keeps it)."""
        pods = [p for p in self.pods[(namespace, service)] if self.cluster.pods[p].get("ready")]
        self.cluster.kube_put("endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": service + "-x1", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [self.cluster.pods[p]["ip"]],
                           "conditions": {"ready": True},
                           "targetRef": {"kind": "Pod", "name": p, "namespace": namespace}}
                          for p in pods]})

    def put_status(self, namespace, name):
        """The Deployment's status as its controller writes it, from the pods played."""
        d = self.kube_get("/apis/apps/v1/namespaces/%s/deployments/%s" % (namespace, name))
        pods = self.pods[(namespace, name)]
        current = [p for p in pods if self.cluster.pods[p]["generation"] ==
                   self.generation[(namespace, name)]]
        ready = [p for p in pods if self.cluster.pods[p].get("ready")]
        d["status"] = {"observedGeneration": self.generation[(namespace, name)],
                       "replicas": len(pods), "updatedReplicas": len(current),
                       "readyReplicas": len(ready),
                       "availableReplicas": len([p for p in current if p in ready])}
        self.cluster.kube_put("deployments", d)

    # --- the Deployment controller and the webhook, played ------------------------------------

    def start_pod(self, namespace, name, template, revision):
        """A new pod of the Deployment: injected for `revision` (what that revision's webhook
        does), its join token from that revision's control plane, played, ready, then listed
        in the API server and the EndpointSlice."""
        path = os.path.join(self.run.dir, "manifests", "template-%s-%s.json" % (namespace, name))
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": dict(template["metadata"], name=name, namespace=namespace),
               "spec": template["spec"]}
        with open(path, "w") as f:
            json.dump(pod, f)
        # A label naming a tag: its revision's webhook injects it (meshctl inject --tag).
        label, revision = revision, self.tags.get(revision, revision)
        injected = self.cluster.inject([path], extra=["--revision", revision] + [
            "--tag=%s=%s" % tag for tag in self.tags.items() if tag[0] == label])[0]
        sa = template["spec"]["serviceAccountName"]
        secret = self.meshctl(revision, "token", "create", "-n", namespace,
                              "--service-account", sa, "--ttl", "2h", "-o", "secret")
        # The Secret is YAML of a fixed shape (meshctl token create -o secret).
        secret_name = re.search(r"^  name: (\S+)$", secret, re.M).group(1)
        token = re.search(r'^  token: "(.*)"$', secret, re.M).group(1)
        self.cluster.secrets[(namespace, secret_name)] = {"token": token}
        self.pod_counter += 1
        pod_name = "%s-%d" % (name, self.pod_counter)
        cp = self.control_planes
        injected["spec"]["hostAliases"] = [
            {"ip": cp[r]["ip"], "hostnames": ["%s.%s.svc" % (control_plane_name(r),
                                                             CONTROL_PLANE_NAMESPACE)]}
            for r in cp] + [
            {"ip": ip, "hostnames": [svc + "." + ns, "%s.%s.svc" % (svc, ns),
                                     "%s.%s.svc.cluster.local" % (svc, ns)]}
            for (ns, svc), ip in CLUSTER_IPS.items()]
        self.cluster.play_pod(pod_name, injected, namespace=namespace)
        info = self.cluster.pods[pod_name]
        info["generation"] = self.generation[(namespace, name)]
        info["revision"] = revision
        self.cluster.wait_ready([pod_name], timeout=60)
        info["ready"] = True
        annotations = injected["metadata"].get("annotations", {})
        self.cluster.kube_put("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": namespace,
                         "labels": injected["metadata"].get("labels", {}),
                         "annotations": {k: v for k, v in annotations.items()
                                         if k.startswith("sidecar.meshlet.io/")}},
            "spec": {"serviceAccountName": sa},
            "status": {"phase": "Running", "podIP": info["ip"],
                       "conditions": [{"type": "Ready", "status": "True"}]}})
        with self.lock:
            self.pods.setdefault((namespace, name), []).append(pod_name)
        self.put_endpoints(namespace, name)
        return pod_name

    def stop_pod(self, namespace, name, pod_name):
        """An old pod goes: out of the EndpointSlice first (a terminating endpoint is not
        ready), its callers' proxies given the change, then SIGTERM and its drain."""
        self.cluster.pods[pod_name]["ready"] = False
        self.put_endpoints(namespace, name)
        # Both control planes push the endpoint's removal; the proxies' own readiness report
        # (on SIGTERM) takes it out of its control plane's callers too.
        time.sleep(1.5)
        with self.lock:
            self.pods[(namespace, name)].remove(pod_name)
        self.cluster.delete_pod(pod_name)
        self.cluster.kube_delete("pods", pod_name, namespace)

    def revision_for(self, namespace, template):
        """The revision a pod of `template` in `namespace` gets: its own label, else its
        namespace's (the webhooks' selectors)."""
        return (template["metadata"].get("labels", {}).get("meshlet.io/rev") or
                self.namespace_revision(namespace))

    def deploy(self, d):
        namespace, name = d["metadata"]["namespace"], d["metadata"]["name"]
        self.deployments[(namespace, name)] = d
        self.generation[(namespace, name)] = 1
        self.rolled[(namespace, name)] = ""
        self.cluster.kube_put("deployments", d)
        self.pods[(namespace, name)] = []
        self.cluster.kube_put("services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "ClusterIP", "clusterIP": CLUSTER_IPS[(namespace, name)],
                     "clusterIPs": [CLUSTER_IPS[(namespace, name)]],
                     "selector": {"app": name},
                     "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}})
        template = d["spec"]["template"]
        for _ in range(d["spec"]["replicas"]):
            self.start_pod(namespace, name, template, self.revision_for(namespace, template))
        self.put_status(namespace, name)

    def reconcile(self, namespace, name):
        """One pass of the Deployment controller: a changed pod template is rolled out one pod
        at a time, new before old (maxSurge 1, maxUnavailable 0). True when something was
        rolled."""
        d = self.kube_get("/apis/apps/v1/namespaces/%s/deployments/%s" % (namespace, name))
        template = d["spec"]["template"]
        restarted = template["metadata"].get("annotations", {}).get(
            "kubectl.kubernetes.io/restartedAt", "")
        if restarted == self.rolled[(namespace, name)]:
            return False
        self.generation[(namespace, name)] = int(d["metadata"]["generation"])
        self.put_status(namespace, name)
        revision = self.revision_for(namespace, template)
        for old in list(self.pods[(namespace, name)]):
            self.start_pod(namespace, name, template, revision)
            self.put_status(namespace, name)
            self.stop_pod(namespace, name, old)
            self.put_status(namespace, name)
        self.rolled[(namespace, name)] = restarted
        return True

    def controller(self, stop):
        """Reconciles every Deployment until `stop` is set (a thread)."""
        try:
            while not stop.is_set():
                for namespace, name in list(self.deployments):
                    self.reconcile(namespace, name)
                stop.wait(0.5)
        except Exception as e:  # reported by the scenario that runs it
            self.controller_error = e

    # --- the scenarios ------------------------------------------------------------------------

    def setup(self):
        d = os.path.join(self.run.dir, "mesh-ca")
        os.makedirs(d)
        sys.path.insert(0, cluster_lib.INTEGRATION_DIR)
        import mesh_util
        self.ca = mesh_util.make_ca(d, "mesh-root")
        self.cluster.start_kubernetes_api()
        self.api_ca_file = os.path.join(self.run.dir, "kube-api-ca.pem")
        with open(self.api_ca_file, "w") as f:
            f.write(self.cluster.kube_api["ca"])
        self.signing = {OLD: self.hsm_signing(mesh_util, d), NEW: self.csr_signing(mesh_util, d)}
        detail = self.start_control_planes()
        self.put_namespace("front", OLD)
        self.put_namespace("shop", OLD)
        started = time.monotonic()
        self.deploy(deployment("reviews", "front", 1, [], "reviews"))
        self.deploy(deployment("productpage", "shop", 2,
                               [{"name": "TESTAPP_CALL", "value": "http://reviews.front:9080/"}],
                               "productpage"))
        self.deploy(deployment("client", "front", 1, [], "client"))
        # The call chain answers through both services.
        answer = json.loads(self.client_get("http://productpage.shop:9080/x"))
        if answer["calls"][0]["status"] != 200:
            raise harness.E2EError("productpage -> reviews: %s" % answer)
        return ("%s; %s; 4 pods ready in %.1f s, client -> productpage.shop -> reviews.front "
                "200; %s") % (detail, ", ".join(s["what"] for s in self.signing.values()),
                              time.monotonic() - started, self.check_signers())

    def endpoints(self, pod, service, namespace):
        """{address: host} of `service`.`namespace`'s outbound cluster in `pod`'s proxy
        (/clusters, JSON): each host says whether it is reached over mTLS (`tls`)."""
        status, body = self.cluster.pod_http(pod, "http://127.0.0.1:15000/clusters?format=json")
        if status != 200:
            raise harness.E2EError("%s's /clusters: %s %s" % (pod, status, body[:300]))
        found = {}
        for c in json.loads(body).get("clusters", []):
            if c["name"].startswith("outbound|9080|") and \
                    c["name"].endswith("|%s.%s" % (service, namespace)):
                for h in c.get("hosts", []):
                    found[h["address"]] = h
        return found

    def check_mtls_across(self, revision, other):
        """The hops between revisions are mTLS: the client's proxy (on `other`) reaches
        productpage's pods (on `revision`) over TLS, and theirs reach reviews (on `other`)."""
        hops = [(self.client_pod(), "productpage", "shop", self.pods[("shop", "productpage")])]
        hops += [(p, "reviews", "front", self.pods[("front", "reviews")])
                 for p in self.pods[("shop", "productpage")]]
        for pod, service, namespace, members in hops:
            want = {self.cluster.pods[m]["ip"] for m in members}
            hosts = self.run.wait_until(
                lambda: (lambda h: h if {a.rsplit(":", 1)[0] for a in h} == want else None)(
                    self.endpoints(pod, service, namespace)),
                10, "%s's proxy to list %s" % (pod, sorted(want)))
            plain = [a for a, h in hosts.items() if not h.get("tls")]
            if plain:
                raise harness.E2EError("%s (on %s) reaches %s.%s at %s without TLS: %s" % (
                    pod, self.cluster.pods[pod]["revision"], service, namespace, plain, hosts))
        return len(hops)

    def client_pod(self):
        return self.pods[("front", "client")][0]

    def client_get(self, url):
        return self.cluster.exec(self.client_pod(), ["testapp", "get", url]).strip()

    def revisions(self):
        expected = {p + "." + ns: OLD for (ns, _), pods in self.pods.items() for p in pods}
        seen = self.proxies(OLD)
        if seen != expected:
            raise harness.E2EError("0-2-0's proxies %s, expected %s" % (seen, expected))
        if self.proxies(NEW):
            raise harness.E2EError("canary has proxies before the upgrade: %s" % self.proxies(NEW))
        version = self.meshctl(OLD, "version")
        want = "control-plane %s (revision %s)" % (harness.RELEASE, OLD)
        if want not in version or "(revision %s): 4 (" % OLD not in version:
            raise harness.E2EError("meshctl version: %s" % version)
        table = self.meshctl(OLD, "proxy-status")
        if "REVISION" not in table.splitlines()[0]:
            raise harness.E2EError("proxy-status: %s" % table)
        return "4 proxies on %s (meshctl version: %r), none on %s" % (
            OLD, version.splitlines()[-1], NEW)

    def kube_flags(self):
        """How meshctl in a control-plane pod reaches the fake API server."""
        return ["--kubernetes-api", self.cluster.kube_api["address"],
                "--kubernetes-ca-file", "/var/run/kube-api/ca.crt",
                "--kubernetes-token-file", "/var/run/kube-api/token"]

    def move(self, revision, other, dry_run_first=False, tag=None):
        """meshctl upgrade --revision `revision` (or `tag`, which points at it) -n shop under
        load, in `revision`'s control plane pod, while the controller plays the rollout. Given a
        tag, meshctl gets no --server-identity: --revision TAG implies the identity of the tag's
        revision's API, which --check-proxies then verifies."""
        label = tag or revision
        upgrade = ["upgrade", "--revision", label, "-n", "shop", "--rollout-timeout", "3m",
                   "--check-proxies"] + self.kube_flags()
        command = (self.meshctl_args(revision, *upgrade) if tag is None else
                   ["meshctl", "--token-file", cluster_lib.API_TOKEN, "--ca-file",
                    CA_DIR + "/cert.pem"] + upgrade)
        if dry_run_first:
            plan = self.meshctl(revision, *(upgrade + ["--dry-run"]))
            if "deployment/productpage: restart (2 on %s)" % other not in plan or \
                    self.namespace_revision("shop") != other:
                raise harness.E2EError("dry run: %s (shop on %s)" % (
                    plan, self.namespace_revision("shop")))
        old_pods = list(self.pods[("shop", "productpage")])
        load = self.start_load(120)
        stop = threading.Event()
        controller = threading.Thread(target=self.controller, args=(stop,))
        controller.start()
        started = time.monotonic()
        try:
            time.sleep(2)  # load before the move
            r = self.run.podman(["exec", self.control_planes[revision]["container"]] + command,
                                check=False, timeout=240)
            took = time.monotonic() - started
            time.sleep(2)  # and after
        finally:
            stop.set()
            controller.join(timeout=120)
            self.stop_load(load)
        summary = self.load_result(load)
        if self.controller_error is not None:
            raise harness.E2EError("the Deployment controller stand-in: %r" %
                                   self.controller_error)
        if r.returncode != 0:
            raise harness.E2EError("meshctl upgrade failed (exit %d): %s %s" % (
                r.returncode, r.stdout, r.stderr))
        failed = summary["requests"] - summary["statuses"].get("200", 0)
        if failed or summary["requests"] < 100:
            raise harness.E2EError("load during the move: %d of %d failed: %s" % (
                failed, summary["requests"], summary))
        new_pods = self.pods[("shop", "productpage")]
        if set(new_pods) & set(old_pods) or len(new_pods) != 2:
            raise harness.E2EError("productpage pods %s after, %s before" % (new_pods, old_pods))
        moved = {p + ".shop" for p in new_pods}
        on_target = self.proxies(revision)
        on_other = self.proxies(other)
        if any(on_target.get(p) != revision for p in moved) or moved & set(on_other):
            raise harness.E2EError("after the move: %s's proxies %s, %s's %s" % (
                revision, on_target, other, on_other))
        if self.namespace_revision("shop") != label:
            raise harness.E2EError("shop labelled %s" % self.namespace_revision("shop"))
        # Still every hop answers, across revisions, over mTLS.
        answer = json.loads(self.client_get("http://productpage.shop:9080/y"))
        if answer["calls"][0]["status"] != 200:
            raise harness.E2EError("productpage -> reviews after the move: %s" % answer)
        hops = self.check_mtls_across(revision, other)
        if "pods on %s, ready, their proxies connected to it and ACKed" % revision not in r.stdout:
            raise harness.E2EError("meshctl upgrade did not check the proxies: %s" % r.stdout)
        report = [line for line in r.stdout.splitlines() if line.startswith("namespace shop: on")]
        return ("%d requests during the move, 0 failed; %s now on %s (%s), %d hops to and from "
                "them mTLS; %s; meshctl: %s") % (
            summary["requests"], " ".join(sorted(new_pods)), revision,
            ", ".join("%s %s" % (p, on_target[p]) for p in sorted(moved)), hops,
            self.check_signers(), report[0] if report else r.stdout.strip().splitlines()[-1])

    def rollback_by_tag(self):
        """The tag stable pointed at 0-2-0 (meshctl tag set, against the fake API server, which
        holds 0-2-0's webhook configuration as its control plane would keep it), then shop moved
        back by the tag."""
        # Its webhooks select as the install's do: meshctl tag set and upgrade check that no
        # two configurations select the same pods (ADR 0082).
        not_the_mesh = {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                        "values": ["kube-system", CONTROL_PLANE_NAMESPACE]}
        on_old = {"key": "meshlet.io/rev", "operator": "In", "values": [OLD]}
        not_off = {"key": "sidecar.meshlet.io/inject", "operator": "NotIn", "values": ["false"]}
        hooks = []
        for kind, namespaces, pods in (
                ("namespace", [on_old, not_the_mesh],
                 [{"key": "meshlet.io/rev", "operator": "DoesNotExist"}, not_off]),
                ("object", [not_the_mesh], [on_old, not_off])):
            hooks.append({"name": "%s.%s.sidecar.meshlet.io" % (kind, OLD),
                          "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "rules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                     "operations": ["CREATE"], "resources": ["pods"]}],
                          "namespaceSelector": {"matchExpressions": namespaces},
                          "objectSelector": {"matchExpressions": pods},
                          "clientConfig": {
                              "service": {"name": control_plane_name(OLD),
                                          "namespace": CONTROL_PLANE_NAMESPACE,
                                          "path": "/inject", "port": 443},
                              "caBundle": base64.b64encode(
                                  self.cluster.trust_pem.encode()).decode()}})
        self.cluster.kube_put("mutatingwebhookconfigurations", {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "meshlet-sidecar-injector-" + OLD,
                         "labels": {"app.kubernetes.io/part-of": "meshlet"}},
            "webhooks": hooks})
        out = self.meshctl(OLD, "tag", "set", "stable", "--revision", OLD, *self.kube_flags())
        if "tag stable -> revision %s" % OLD not in out:
            raise harness.E2EError("meshctl tag set: %s" % out)
        listed = self.meshctl(OLD, "tag", "list", *self.kube_flags())
        if not re.search(r"(?m)^stable\s+%s\s" % OLD, listed):
            raise harness.E2EError("meshctl tag list: %s" % listed)
        self.tags["stable"] = OLD
        return "tag stable -> %s; %s" % (OLD, self.move(OLD, NEW, tag="stable"))

    def start_load(self, seconds):
        marker = "load-%d" % time.monotonic_ns()
        cmd = self.run.podman_prefix() + [
            "exec", self.cluster.app(self.client_pod()), "testapp", "get",
            "http://productpage.shop:9080/load", "--duration", "%ds" % seconds,
            "--concurrency", "4", "--rate", str(LOAD_RATE), "-H", "x-e2e-load: " + marker]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=harness.podman_env())
        return {"proc": proc, "marker": marker}

    def stop_load(self, load):
        for found in harness.processes_mentioning(load["marker"]):
            pid, _, cmdline = found.partition(": ")
            if not cmdline.startswith("podman"):
                os.kill(int(pid), 15)

    def load_result(self, load):
        out, err = load["proc"].communicate(timeout=120)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise harness.E2EError("load gave no summary: %s %s" % (out[-500:], err[-500:]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True)
    args = p.parse_args()

    def body(run, suite):
        mesh = RevisionMesh(run, os.path.abspath(args.bin_dir))
        suite.scenario("images", lambda: run.build_images(os.path.abspath(args.bin_dir)) or
                       ", ".join(run.images), fatal=True)
        suite.scenario("setup", mesh.setup, fatal=True)
        suite.scenario("revisions", mesh.revisions)
        if suite.scenario("upgrade", lambda: mesh.move(NEW, OLD, dry_run_first=True)):
            suite.scenario("rollback", mesh.rollback_by_tag)

    sys.exit(harness.Suite("revision").main(body))


if __name__ == "__main__":
    main()
