"""The etcd that `meshctl install --set etcd=bundled` renders forms a working cluster over TLS.

Usage: bundled_etcd_test.py CONTROL_PLANE MESHCTL SIDECAR SERVICES_YAML [unittest args]

What a cluster would run is taken from meshctl's output and run here with Debian's etcd on
127.0.0.1:

- the install Job: its command (`meshctl install --secrets --create ...`) against a small
  Kubernetes API server of the test's own (HTTPS, a bearer token, Secrets get and create in the
  namespace). It creates the four Secrets (store key, the etcd CA, the members' and the control
  plane's certificates); run again, it keeps them as they are; with only one of the two
  certificates left, it refuses, saying why; without the CA (an install made before it was kept)
  it makes none and a renewal is refused, saying what to do. Their data is written to
  directories as the kubelet mounts them;
- the StatefulSet's command, arguments and environment, three times, as the three pods: each
  pod's stable name and port mapped to a loopback port of its own (what the headless Service's
  DNS gives in a cluster), the data directory moved to a temporary one, the Secret mounted. Every
  member passes the readiness probe the manifest declares, so the cluster formed over peer TLS
  from the rendered --initial-cluster and has a leader; a client without the client certificate
  is refused;
- the Deployment's store flags (--store, --etcd-*, --store-encryption-key-file), mapped the same
  way: a control plane stores a Service through its API, and another one started on the same
  store serves it;
- the store key rotated with `meshctl install --secrets --rotate-store-key` against the fake API
  server, the Secret's new data swapped into the mount as the kubelet does (the `..data`
  symlink): both running control planes take it without a restart and seal the ControlPlaneSecret
  records again (read back from etcd: the envelopes' key id); `--finish` is refused while a
  record is under the old key and then drops it; a control plane started with the new key alone
  serves. A malformed key file in the mount is refused by the running control planes (counted,
  the old keys kept), and a Secret with a broken key is refused by the rotation, unchanged.
- the certificates renewed with `meshctl install --secrets --renew-etcd-certificates` under the
  kept CA, the new data mounted as the kubelet does: every member, not restarted, presents its
  new certificate to new connections; the control plane takes its new client certificate (its
  meshlet_cp_etcd_client_certificate_expiry_seconds follows) and keeps writing and reading; the
  old client certificate still gets in (same CA, not expired).

Without the etcd binary the test prints SKIP.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import yaml

import cp_api
from etcd_util import ETCD, ETCDCTL, etcd_installed
from fake_kubernetes_api import JsonApiHandler
from mesh_util import (make_ca, make_leaf, make_server_cert, put_resource, serve_https,
                       start_plaintext_control_plane, stop_process)
from sidecar_test import free_port, wait_for

CONTROL_PLANE = MESHCTL = SERVICES = None  # set from argv
NAMESPACE = "mesh"
# Where the rendered pods mount their Secrets.
MOUNTS = {"/etc/etcd/tls": "meshlet-etcd-member", "/etc/meshlet/etcd": "meshlet-etcd-client",
          "/etc/meshlet/store-key": "meshlet-store-key"}


class SecretsApi:
    """The part of a Kubernetes API server the install Job and the store key rotation use: GET,
    POST and PUT of Secrets in one namespace (PUT conditional on metadata.resourceVersion), with
    a bearer token, over HTTPS for 127.0.0.1. .secrets: name -> the Secret."""

    def __init__(self, directory):
        self.secrets = {}
        self.revision = 0
        self.token = os.urandom(16).hex()
        ca = make_ca(directory, "kube-ca")
        self.ca_file = ca[0]
        self.token_file = os.path.join(directory, "kube-token")
        with open(self.token_file, "w") as f:
            f.write(self.token)
        api = self
        base = f"/api/v1/namespaces/{NAMESPACE}/secrets"

        class Handler(JsonApiHandler):
            def allowed(self):
                if self.headers.get("Authorization") == "Bearer " + api.token:
                    return True
                self.answer(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
                return False

            def do_GET(self):
                if not self.allowed():
                    return
                name = self.path[len(base) + 1:] if self.path.startswith(base + "/") else None
                if name in api.secrets:
                    return self.answer(200, api.secrets[name])
                self.answer(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.allowed():
                    return
                if self.path != base or body.get("kind") != "Secret":
                    return self.answer(400, {"kind": "Status", "code": 400})
                name = body["metadata"]["name"]
                if name in api.secrets:
                    return self.answer(409, {"kind": "Status", "code": 409,
                                             "reason": "AlreadyExists"})
                api.revision += 1
                body["metadata"]["resourceVersion"] = str(api.revision)
                api.secrets[name] = body
                self.answer(201, body)

            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.allowed():
                    return
                name = self.path[len(base) + 1:] if self.path.startswith(base + "/") else None
                if name not in api.secrets or body["metadata"].get("name") != name:
                    return self.answer(404, {"kind": "Status", "code": 404})
                if body["metadata"].get("resourceVersion") != \
                        api.secrets[name]["metadata"]["resourceVersion"]:
                    return self.answer(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
                api.revision += 1
                body["metadata"]["resourceVersion"] = str(api.revision)
                api.secrets[name] = body
                self.answer(200, body)

        self.server, url = serve_https(Handler, make_server_cert(directory, "kube-api", ca))
        self.address = url[len("https://"):]

    def stop(self):
        self.server.shutdown()


class BundledEtcdTest(unittest.TestCase):
    def setUp(self):
        if not etcd_installed():
            self.skipTest("etcd is not installed (Debian package etcd-server)")
        self.tmp = tempfile.mkdtemp(prefix="bundled-etcd-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        rendered = subprocess.run(
            [MESHCTL, "install", "--set", f"namespace={NAMESPACE}", "--set", "replicas=3",
             "--set", "etcd=bundled"], capture_output=True, text=True, timeout=30, check=True)
        self.objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
        self.members = [f"meshlet-etcd-{i}" for i in range(3)]
        # What each name:port resolves to here: one loopback port per member and port.
        self.ports = {(m, p): free_port() for m in self.members for p in (2379, 2380, 2381)}

    def one(self, kind):
        found = [o for o in self.objects if o["kind"] == kind]
        self.assertEqual(len(found), 1, kind)
        return found[0]

    def local(self, text, member):
        """`text` as it reads in `member`'s pod, with cluster names and ports made loopback and
        the Secrets' mount paths their directories here."""
        text = text.replace("$(POD_NAME)", member).replace("$(POD_NAMESPACE)", NAMESPACE)

        def named(match):
            return f"127.0.0.1:{self.ports[(match.group(1), int(match.group(2)))]}"
        text = re.sub(r"(meshlet-etcd-\d)\.meshlet-etcd\.%s\.svc:(\d+)" % NAMESPACE, named, text)
        text = re.sub(r"0\.0\.0\.0:(\d+)",
                      lambda m: f"127.0.0.1:{self.ports[(member, int(m.group(1)))]}", text)
        for path, secret in MOUNTS.items():
            text = text.replace(path + "/", os.path.join(self.tmp, secret) + "/")
        return text.replace("/var/lib/etcd", os.path.join(self.tmp, member))

    def run_job(self, api):
        """The install Job's container command against `api`: the CompletedProcess."""
        container = self.one("Job")["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(container["command"], ["/usr/local/bin/meshctl"])
        return subprocess.run(
            [MESHCTL, *container["args"], "--kubernetes-api", api.address,
             "--kubernetes-token-file", api.token_file, "--kubernetes-ca-file", api.ca_file],
            capture_output=True, text=True, timeout=30)

    def test_the_job_makes_the_secrets_once(self):
        api = SecretsApi(self.tmp)
        self.addCleanup(api.stop)
        # A renewal where the install's Secrets are not (the wrong namespace): refused, and no
        # second set of Secrets made there.
        nothing = self.renew(api)
        self.assertNotEqual(nothing.returncode, 0)
        self.assertIn("no Secrets meshlet-etcd-member and meshlet-etcd-client in namespace",
                      nothing.stderr)
        self.assertEqual(api.secrets, {})
        made = self.run_job(api)
        self.assertEqual(made.returncode, 0, made.stderr)
        names = ["meshlet-store-key", "meshlet-etcd-ca", "meshlet-etcd-member",
                 "meshlet-etcd-client"]
        self.assertEqual(sorted(api.secrets), sorted(names))
        self.assertEqual(made.stdout.splitlines(), [f"secret/{n} created" for n in names])
        before = json.dumps(api.secrets, sort_keys=True)
        again = self.run_job(api)
        self.assertEqual(again.returncode, 0, again.stderr)
        # Kept, the certificates too: a year left, renewed only in the last 30 days.
        self.assertEqual(again.stdout.splitlines()[:4],
                         [f"secret/{n} exists, kept" for n in names])
        self.assertIn("secret/meshlet-etcd-member: certificate kept", again.stdout)
        self.assertEqual(json.dumps(api.secrets, sort_keys=True), before)
        # An install made before the CA was kept: the Job makes no CA (it would not be the
        # certificates'), says they cannot be renewed; a forced renewal is refused, nothing
        # changed, saying what to do.
        ca = api.secrets.pop("meshlet-etcd-ca")
        old = self.run_job(api)
        self.assertEqual(old.returncode, 0, old.stderr)
        self.assertNotIn("meshlet-etcd-ca", api.secrets)
        self.assertIn("cannot be renewed (no Secret meshlet-etcd-ca", old.stdout)
        forced = self.renew(api)
        self.assertNotEqual(forced.returncode, 0)
        self.assertIn(f"Secret {NAMESPACE}/meshlet-etcd-ca does not exist", forced.stderr)
        self.assertIn("restart the etcd members and the control plane", forced.stderr)
        api.secrets["meshlet-etcd-ca"] = ca
        self.assertEqual(json.dumps(api.secrets, sort_keys=True), before)
        # Renewed now by an operator, through a kubeconfig: both certificates, under the same CA.
        kubeconfig = os.path.join(self.tmp, "kubeconfig")
        with open(kubeconfig, "w") as f:
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "test",
                "clusters": [{"name": "test", "cluster": {
                    "server": f"https://{api.address}", "certificate-authority": api.ca_file}}],
                "users": [{"name": "test", "user": {"token": api.token}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}, f)
        renewed = subprocess.run(
            [MESHCTL, "install", "--set", f"namespace={NAMESPACE}", "--set", "etcd=bundled",
             "--secrets", "--renew-etcd-certificates", "--kubeconfig", kubeconfig],
            capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": self.tmp})
        self.assertEqual(renewed.returncode, 0, renewed.stderr)
        for name in ("meshlet-etcd-member", "meshlet-etcd-client"):
            self.assertIn(f"secret/{name}: certificate renewed", renewed.stdout)
            self.assertNotEqual(api.secrets[name]["data"]["tls.crt"],
                                json.loads(before)[name]["data"]["tls.crt"])
            self.assertEqual(api.secrets[name]["data"]["ca.crt"],
                             json.loads(before)[name]["data"]["ca.crt"])
        before = json.dumps(api.secrets, sort_keys=True)
        # A certificate gone: issued again under the kept CA, the others as they were.
        del api.secrets["meshlet-etcd-client"]
        again = self.run_job(api)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("secret/meshlet-etcd-client created", again.stdout)
        self.assertEqual(api.secrets["meshlet-etcd-client"]["data"]["ca.crt"],
                         api.secrets["meshlet-etcd-ca"]["data"]["ca.crt"])
        for name in ("meshlet-store-key", "meshlet-etcd-ca", "meshlet-etcd-member"):
            self.assertEqual(api.secrets[name], json.loads(before)[name])
        # Without the CA, half of a pair of certificates is refused: a new client certificate
        # would come from a CA the members do not trust.
        del api.secrets["meshlet-etcd-client"]
        del api.secrets["meshlet-etcd-ca"]
        half = self.run_job(api)
        self.assertNotEqual(half.returncode, 0)
        self.assertIn(f"Secret {NAMESPACE}/meshlet-etcd-member exists but meshlet-etcd-client "
                      "does not", half.stderr)
        self.assertNotIn("meshlet-etcd-client", api.secrets)
        # A wrong token: refused by the API server, said so.
        api.token = "other"
        refused = self.run_job(api)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("401", refused.stderr)

    def renew(self, api):
        """`meshctl install --secrets --renew-etcd-certificates` against `api`."""
        return subprocess.run(
            [MESHCTL, "install", "--set", f"namespace={NAMESPACE}", "--set", "etcd=bundled",
             "--secrets", "--renew-etcd-certificates", "--kubernetes-api", api.address,
             "--kubernetes-token-file", api.token_file, "--kubernetes-ca-file", api.ca_file],
            capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": self.tmp})

    def mount(self, api, name, data=None):
        """Secret `name`'s data (or `data`) written as the kubelet mounts and updates it: the
        files in a new directory, then the `..data` symlink swapped to it in one rename."""
        directory = os.path.join(self.tmp, name)
        os.makedirs(directory, exist_ok=True)
        self.versions = getattr(self, "versions", 0) + 1
        version = f"..{self.versions}"
        os.makedirs(os.path.join(directory, version))
        for key, value in (data or api.secrets[name]["data"]).items():
            with open(os.path.join(directory, version, key), "wb") as f:
                f.write(base64.b64decode(value))
            if not os.path.islink(os.path.join(directory, key)):
                os.symlink(os.path.join("..data", key), os.path.join(directory, key))
        os.symlink(version, os.path.join(directory, "..data_tmp"))
        os.rename(os.path.join(directory, "..data_tmp"), os.path.join(directory, "..data"))

    def start_members(self):
        """The StatefulSet's three pods, on the mounted Secrets; waits until each is ready."""
        etcd = self.one("StatefulSet")
        pod = etcd["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(container["command"], ["etcd"])
        self.assertEqual({e["name"] for e in container["env"]}, {"POD_NAME", "POD_NAMESPACE"})
        self.assertEqual(etcd["spec"]["replicas"], len(self.members))
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        self.assertEqual(mounts["/etc/etcd/tls"], "tls")
        self.assertEqual(pod["volumes"][0]["secret"]["secretName"], "meshlet-etcd-member")
        self.member_procs = {}
        for member in self.members:
            log = open(os.path.join(self.tmp, f"{member}.log"), "ab")
            self.addCleanup(log.close)
            proc = subprocess.Popen([ETCD] + [self.local(a, member) for a in container["args"]],
                                    stdout=log, stderr=log)
            self.addCleanup(stop_process, proc)
            self.member_procs[member] = proc

        probe = container["readinessProbe"]["httpGet"]

        def ready(member):
            url = f"http://127.0.0.1:{self.ports[(member, probe['port'])]}{probe['path']}"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.status == 200 and json.loads(r.read())["health"] == "true"
            except OSError:
                return False
        self.assertTrue(wait_for(lambda: all(ready(m) for m in self.members), timeout=30),
                        "every member passes its readiness probe: "
                        + open(os.path.join(self.tmp, "meshlet-etcd-0.log")).read()[-2000:])

    def store_flags(self):
        """The Deployment's store flags (--store, --etcd-*, the store key), mapped to here."""
        args = self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        store = [self.local(a, "meshlet-etcd-0") for a in args
                 if a.startswith(("--store", "--etcd-"))]
        self.assertTrue(any(a.startswith("--store=https://") for a in store), store)
        self.assertNotIn("--etcd-insecure-plaintext", store)
        return store

    def start_replica(self, name, *extra):
        """A control plane on the bundled etcd: (API address, token)."""
        directory = os.path.join(self.tmp, name)
        os.makedirs(directory)
        proc, api_address, _, token = start_plaintext_control_plane(
            CONTROL_PLANE, directory, *self.store_flags(), *extra, "--replica-name", name,
            "--otlp-address=", "--zipkin-address=")
        self.addCleanup(stop_process, proc)
        return api_address, token

    def start_cluster(self):
        """The Secrets, as the Job makes them and the kubelet mounts them, and the members on
        them: the fake API server holding the Secrets."""
        api = SecretsApi(self.tmp)
        self.addCleanup(api.stop)
        made = self.run_job(api)
        self.assertEqual(made.returncode, 0, made.stderr)
        for name in api.secrets:
            if name in MOUNTS.values():  # the CA's is mounted by nothing
                self.mount(api, name)
        self.start_members()
        return api

    def presented(self, member, client_dir):
        """The certificate (DER) `member` presents to a new connection from a client with the
        client certificate in `client_dir`."""
        context = ssl.create_default_context(cafile=os.path.join(client_dir, "ca.crt"))
        context.load_cert_chain(os.path.join(client_dir, "tls.crt"),
                                os.path.join(client_dir, "tls.key"))
        with socket.create_connection(("127.0.0.1", self.ports[(member, 2379)]), timeout=5) as s:
            with context.wrap_socket(s, server_hostname="localhost") as tls:
                return tls.getpeercert(binary_form=True)

    def not_after(self, cert):
        """When the certificate in file `cert` expires, in Unix seconds."""
        end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", cert],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return ssl.cert_time_to_seconds(end.strip().split("=", 1)[1])

    def etcd_version(self, member, client_dir):
        """GET /version of `member` with the client certificate in `client_dir`: the status."""
        context = ssl.create_default_context(cafile=os.path.join(client_dir, "ca.crt"))
        context.load_cert_chain(os.path.join(client_dir, "tls.crt"),
                                os.path.join(client_dir, "tls.key"))
        with urllib.request.urlopen(
                f"https://localhost:{self.ports[(member, 2379)]}/version", timeout=5,
                context=context) as r:
            return r.status

    def test_the_rendered_members_form_a_cluster_over_tls_the_control_plane_uses(self):
        self.start_cluster()

        # A client that trusts the members but has no client certificate is refused.
        context = ssl.create_default_context(
            cafile=os.path.join(self.tmp, "meshlet-etcd-member", "ca.crt"))
        with self.assertRaises(OSError):
            urllib.request.urlopen(
                f"https://127.0.0.1:{self.ports[('meshlet-etcd-0', 2379)]}/version",
                timeout=5, context=context).read()

        replicas = [self.start_replica(name) for name in ("a", "b")]
        with open(SERVICES) as f:
            first = next(d for d in yaml.safe_load_all(f) if d and d["kind"] == "Service")
        put_resource(replicas[0][0], replicas[0][1],
                     f"namespaces/default/services/{first['metadata']['name']}",
                     yaml.safe_dump(first))
        status, body = cp_api.request(
            replicas[1][0], "GET",
            f"/apis/meshlet.io/v1/namespaces/default/services/{first['metadata']['name']}",
            token=replicas[1][1])
        self.assertEqual(status, 200, body)

    def sealed_in_etcd(self):
        """ControlPlaneSecret name -> the key id its envelope in etcd names."""
        client = os.path.join(self.tmp, "meshlet-etcd-client")
        got = subprocess.run(
            [ETCDCTL, "--endpoints", f"https://127.0.0.1:{self.ports[('meshlet-etcd-0', 2379)]}",
             "--cacert", os.path.join(client, "ca.crt"), "--cert", os.path.join(client, "tls.crt"),
             "--key", os.path.join(client, "tls.key"), "get", "--prefix", "/", "-w", "json"],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(got.returncode, 0, got.stderr)
        sealed = {}
        for kv in json.loads(got.stdout).get("kvs", []):
            key = base64.b64decode(kv["key"]).decode()
            if "/ControlPlaneSecret/" in key:
                value = base64.b64decode(kv["value"]).decode()
                self.assertTrue(value.startswith("meshlet-sealed:v1:"), value)
                sealed[key.rsplit("/", 1)[1]] = value.split(":")[2]
        return sealed

    def metric(self, api_address, line_start):
        """The value of the first /metrics line of `api_address` starting with `line_start`."""
        status, body = cp_api.request(api_address, "GET", "/metrics")
        self.assertEqual(status, 200)
        for line in (body.decode() if isinstance(body, bytes) else body).splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return None

    def rotate(self, api, *extra, finish=False):
        """`meshctl install --secrets --rotate-store-key extra` against `api`."""
        return subprocess.run(
            [MESHCTL, *extra, "install", "--set", f"namespace={NAMESPACE}", "--secrets",
             "--rotate-store-key", "--kubernetes-api", api.address, "--kubernetes-token-file",
             api.token_file, "--kubernetes-ca-file", api.ca_file]
            + (["--finish"] if finish else []),
            capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": self.tmp})

    def key_ids(self, api):
        """The key ids of Secret meshlet-store-key, in order."""
        lines = base64.b64decode(api.secrets["meshlet-store-key"]["data"]["store-key"]).decode()
        return [hashlib.sha256(base64.b64decode(k)).hexdigest()[:16]
                for k in lines.split() if k and not k.startswith("#")]

    def test_the_store_key_is_rotated_without_restarting_the_control_planes(self):
        api = self.start_cluster()
        interval = "--store-key-check-interval=200ms"
        replicas = [self.start_replica(name, interval) for name in ("a", "b")]
        [old] = self.key_ids(api)
        sealed = self.sealed_in_etcd()
        self.assertIn("api-token", sealed)
        self.assertEqual(set(sealed.values()), {old}, sealed)
        record = '{record="ControlPlaneSecret/api-token",key_id="%s"}'
        self.assertTrue(wait_for(lambda: self.metric(
            replicas[0][0], "meshlet_cp_store_sealed_records" + record % old) == 1, timeout=10))

        # A Secret with a broken key: refused, said where, left as it is.
        good = api.secrets["meshlet-store-key"]["data"]["store-key"]
        api.secrets["meshlet-store-key"]["data"]["store-key"] = base64.b64encode(
            base64.b64decode(good)[:20]).decode()
        broken = self.rotate(api)
        self.assertNotEqual(broken.returncode, 0)
        self.assertIn(f"Secret {NAMESPACE}/meshlet-store-key, store-key: line 1: not a key",
                      broken.stderr)
        self.assertEqual(len(base64.b64decode(api.secrets["meshlet-store-key"]["data"]
                                              ["store-key"])), 20)
        api.secrets["meshlet-store-key"]["data"]["store-key"] = good

        rotated = self.rotate(api)
        self.assertEqual(rotated.returncode, 0, rotated.stderr)
        new, kept = self.key_ids(api)
        self.assertEqual(kept, old)
        self.assertIn(f"key {new} first", rotated.stdout)
        # Finishing before the control plane re-sealed: refused, naming the records.
        server = ["--server", replicas[0][0], "--ca-file", cp_api.ca_file_for(replicas[0][0]),
                  "--token", replicas[0][1]]
        early = self.rotate(api, *server, finish=True)
        self.assertNotEqual(early.returncode, 0)
        self.assertIn(f"not finishing: ControlPlaneSecret/api-token (key {old})", early.stderr)
        self.assertEqual(self.key_ids(api), [new, old])

        # A malformed key file in the mount: refused by the running replicas, old keys kept.
        self.mount(api, "meshlet-store-key", {"store-key": base64.b64encode(
            f"{base64.b64encode(os.urandom(32)).decode()}\nnot a key\n".encode()).decode()})
        for replica, _ in replicas:
            self.assertTrue(wait_for(lambda: self.metric(
                replica, 'meshlet_cp_store_key_reloads_total{result="failed"}') == 1, timeout=10))
        self.assertEqual(set(self.sealed_in_etcd().values()), {old})

        # The kubelet updates the mount: taken live by both, the records sealed again.
        self.mount(api, "meshlet-store-key")
        for replica, _ in replicas:
            self.assertTrue(wait_for(lambda: self.metric(
                replica, 'meshlet_cp_store_key_reloads_total{result="ok"}') == 1, timeout=10))
        self.assertTrue(wait_for(lambda: set(self.sealed_in_etcd().values()) == {new},
                                 timeout=10), self.sealed_in_etcd())
        resealed = sum(self.metric(r, "meshlet_cp_store_resealed_records_total") for r, _ in
                       replicas)
        self.assertEqual(resealed, len(self.sealed_in_etcd()))  # each record once
        self.assertTrue(wait_for(lambda: self.metric(
            replicas[1][0], "meshlet_cp_store_sealed_records" + record % new) == 1, timeout=10))
        self.assertEqual(self.metric(replicas[1][0],
                                     "meshlet_cp_store_sealed_records" + record % old), 0)

        finished = self.rotate(api, *server, finish=True)
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertEqual(self.key_ids(api), [new])
        self.mount(api, "meshlet-store-key")
        # A control plane with the new key alone starts on the store and serves its token.
        address, token = self.start_replica("c", interval)
        self.assertEqual(token, replicas[0][1])
        status, body = cp_api.request(address, "GET", "/apis/meshlet.io/v1/namespaces/default/"
                                      "services", token=token)
        self.assertEqual(status, 200, body)
        for replica, _ in replicas:
            self.assertTrue(wait_for(lambda: self.metric(
                replica, 'meshlet_cp_store_key_reloads_total{result="ok"}') == 2, timeout=10))

    def cluster_with_a_service(self):
        """The cluster, a control plane on it checking its files every 200ms, a Service stored
        through it: (fake API, control plane address, token, the Service, its API path)."""
        api = self.start_cluster()
        address, token = self.start_replica("a", "--store-key-check-interval=200ms")
        with open(SERVICES) as f:
            service = next(d for d in yaml.safe_load_all(f) if d and d["kind"] == "Service")
        path = f"namespaces/default/services/{service['metadata']['name']}"
        put_resource(address, token, path, yaml.safe_dump(service))
        return api, address, token, service, path

    def test_the_control_plane_takes_changed_etcd_certificates_without_a_restart(self):
        # What Debian's etcd (3.4) does with changed files, and the test relies on: it reads its
        # certificate and key again for each new connection, but its trusted CA only at start.
        api, address, token, service, path = self.cluster_with_a_service()

        # A CA of its own signs the members' new certificate; both bundles carry old and new.
        other = os.path.join(self.tmp, "other-ca")
        os.makedirs(other)
        ca = make_ca(other, "etcd-ca-2")
        member = make_leaf(other, "member", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                           "extendedKeyUsage=serverAuth,clientAuth\n"
                           "basicConstraints=critical,CA:FALSE\n")

        def b64(path):
            with open(path, "rb") as f:
                return base64.b64encode(f.read()).decode()
        bundle = base64.b64encode(
            base64.b64decode(api.secrets["meshlet-etcd-client"]["data"]["ca.crt"])
            + open(ca[0], "rb").read()).decode()
        # A broken bundle first: refused, counted, the files read before stay.
        self.mount(api, "meshlet-etcd-client", {
            **api.secrets["meshlet-etcd-client"]["data"], "ca.crt": base64.b64encode(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n").decode()})
        self.assertTrue(wait_for(lambda: self.metric(
            address, 'meshlet_cp_etcd_tls_reloads_total{result="failed"}') == 1, timeout=10))
        self.mount(api, "meshlet-etcd-client",
                   {**api.secrets["meshlet-etcd-client"]["data"], "ca.crt": bundle})
        self.assertTrue(wait_for(lambda: self.metric(
            address, 'meshlet_cp_etcd_tls_reloads_total{result="ok"}') == 1, timeout=10))
        self.mount(api, "meshlet-etcd-member", {"ca.crt": bundle, "tls.crt": b64(member[0]),
                                                "tls.key": b64(member[1])})
        # The members restarted on the new files (they read their CA only at start); the control
        # plane, not restarted, reconnects to members whose certificate only the new CA signed.
        for proc in self.member_procs.values():
            stop_process(proc)
        self.start_members()
        status = None
        for _ in range(100):
            status, body = cp_api.request(address, "GET", f"/apis/meshlet.io/v1/{path}",
                                          token=token)
            if status == 200:
                break
            time.sleep(0.1)
        self.assertEqual(status, 200, body)
        service["metadata"]["labels"] = {"renewed": "yes"}
        put_resource(address, token, path, yaml.safe_dump(service))

    def test_the_certificates_are_renewed_under_the_kept_ca_without_restarts(self):
        api, address, token, service, path = self.cluster_with_a_service()
        client_dir = os.path.join(self.tmp, "meshlet-etcd-client")
        old_client = os.path.join(self.tmp, "old-client")
        shutil.copytree(client_dir, old_client, symlinks=False)
        self.assertEqual(self.metric(
            address, "meshlet_cp_etcd_client_certificate_expiry_seconds"),
            self.not_after(os.path.join(client_dir, "tls.crt")))
        before = {m: self.presented(m, client_dir) for m in self.members}
        pids = {m: p.pid for m, p in self.member_procs.items()}
        old_data = {n: dict(api.secrets[n]["data"]) for n in MOUNTS.values()}

        renewed = self.renew(api)
        self.assertEqual(renewed.returncode, 0, renewed.stderr)
        self.assertIn("secret/meshlet-etcd-member: certificate renewed", renewed.stdout)
        self.assertIn("secret/meshlet-etcd-client: certificate renewed", renewed.stdout)
        for name in ("meshlet-etcd-member", "meshlet-etcd-client"):
            data = api.secrets[name]["data"]
            self.assertEqual(data["ca.crt"], old_data[name]["ca.crt"])
            self.assertNotEqual(data["tls.crt"], old_data[name]["tls.crt"])
            self.assertNotEqual(data["tls.key"], old_data[name]["tls.key"])
        self.assertEqual(api.secrets["meshlet-store-key"]["data"], old_data["meshlet-store-key"])
        new_member = ssl.PEM_cert_to_DER_cert(base64.b64decode(
            api.secrets["meshlet-etcd-member"]["data"]["tls.crt"]).decode())

        # The kubelet updates the mounts; nothing restarts.
        self.mount(api, "meshlet-etcd-member")
        self.mount(api, "meshlet-etcd-client")
        for member in self.members:
            self.assertTrue(wait_for(lambda: self.presented(member, client_dir) == new_member,
                                     timeout=10), member)
            self.assertNotEqual(before[member], new_member)
        self.assertEqual({m: p.pid for m, p in self.member_procs.items()}, pids)
        self.assertTrue(all(p.poll() is None for p in self.member_procs.values()))
        # The control plane took the new client certificate and keeps writing and reading.
        self.assertTrue(wait_for(lambda: self.metric(
            address, 'meshlet_cp_etcd_tls_reloads_total{result="ok"}') == 1, timeout=10))
        self.assertEqual(self.metric(
            address, "meshlet_cp_etcd_client_certificate_expiry_seconds"),
            self.not_after(os.path.join(client_dir, "tls.crt")))
        service["metadata"]["labels"] = {"renewed": "yes"}
        put_resource(address, token, path, yaml.safe_dump(service))
        status, body = cp_api.request(address, "GET", f"/apis/meshlet.io/v1/{path}", token=token)
        self.assertEqual(status, 200, body)
        self.assertIn("renewed", body.decode() if isinstance(body, bytes) else body)
        # Both the old client certificate (same CA, not expired) and the new one get in.
        for member in self.members:
            self.assertEqual(self.etcd_version(member, old_client), 200)
            self.assertEqual(self.etcd_version(member, client_dir), 200)


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, _, SERVICES = (os.path.abspath(a) for a in sys.argv[1:5])
    unittest.main(argv=sys.argv[:1] + sys.argv[5:], verbosity=2)
