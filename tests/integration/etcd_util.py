"""A real etcd (Debian's etcd-server) on loopback for tests: one member or a cluster of three,
each member stoppable and restartable on its own data. Every member is started in its own
process group; stop_all() ends them all (call it from tearDown, also after a failure). And
control-plane replicas on it (Replica).

The members serve clients and each other over TLS and require client certificates of both
(--client-cert-auth, --peer-client-cert-auth), as the bundled etcd of k8s/etcd does; the
certificates are made at start with openssl: a CA, one member certificate for 127.0.0.1 (server
and client use), and the control plane's client certificate. `plaintext=True` gives the old
plaintext members, for tests of what refuses them."""

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import cp_api
from mesh_util import (make_ca, make_leaf, meshctl, start_control_plane,
                       start_plaintext_control_plane, stop_process)
from ports import free_port

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"


def etcd_installed():
    return os.access(ETCD, os.X_OK)


class EtcdCluster:
    def __init__(self, directory, members=1, plaintext=False):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.names = [f"m{i}" for i in range(members)]
        self.client = {n: free_port() for n in self.names}
        self.peer = {n: free_port() for n in self.names}
        self.procs = {}
        self.plaintext = plaintext
        self.scheme = "http" if plaintext else "https"
        # The replicas' store encryption key (--store-encryption-key-file), shared by all of them.
        self.key_file = os.path.join(directory, "store-key")
        with open(os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        if not plaintext:
            tls = os.path.join(directory, "etcd-tls")
            os.makedirs(tls, exist_ok=True)
            self.ca = make_ca(tls, "etcd-ca")
            self.member = make_leaf(tls, "member", self.ca,
                                    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                    "extendedKeyUsage=serverAuth,clientAuth\n"
                                    "basicConstraints=critical,CA:FALSE\n")
            self.client_cert = make_leaf(tls, "control-plane", self.ca,
                                         "extendedKeyUsage=clientAuth\n"
                                         "basicConstraints=critical,CA:FALSE\n")

    @property
    def url(self):
        """https://... (http://... when plaintext) naming every member, for --store."""
        return f"{self.scheme}://" + ",".join(f"127.0.0.1:{self.client[n]}" for n in self.names)

    def tls_args(self):
        """The control plane's flags for TLS to these members."""
        if self.plaintext:
            return ["--etcd-insecure-plaintext"]
        return ["--etcd-cacert", self.ca[0], "--etcd-cert", self.client_cert[0],
                "--etcd-key", self.client_cert[1]]

    def store_args(self):
        """--store, the TLS flags and the store key: what a control plane needs to use these
        members."""
        return ["--store", self.url, *self.tls_args(),
                "--store-encryption-key-file", self.key_file]

    def etcdctl(self, *args, anonymous=False, stdin=None):
        """etcdctl (v3) against the members with the client certificate (none when `anonymous`),
        `stdin` its input (`put KEY` reads the value there): the CompletedProcess, output
        captured as text."""
        command = [ETCDCTL, "--endpoints", self.url, "--dial-timeout", "3s"]
        if not self.plaintext:
            command += ["--cacert", self.ca[0]]
            if not anonymous:
                command += ["--cert", self.client_cert[0], "--key", self.client_cert[1]]
        return subprocess.run(command + list(args), input=stdin, capture_output=True, text=True,
                              errors="replace", timeout=30)

    def start(self, name=None):
        """Starts every member (or `name`) and waits until its client port accepts."""
        for n in [name] if name else self.names:
            cluster = ",".join(f"{m}={self.scheme}://127.0.0.1:{self.peer[m]}" for m in self.names)
            client = f"{self.scheme}://127.0.0.1:{self.client[n]}"
            peer = f"{self.scheme}://127.0.0.1:{self.peer[n]}"
            tls = [] if self.plaintext else [
                "--cert-file", self.member[0], "--key-file", self.member[1],
                "--trusted-ca-file", self.ca[0], "--client-cert-auth",
                "--peer-cert-file", self.member[0], "--peer-key-file", self.member[1],
                "--peer-trusted-ca-file", self.ca[0], "--peer-client-cert-auth"]
            with open(os.path.join(self.dir, f"etcd-{n}.log"), "ab") as log:
                self.procs[n] = subprocess.Popen(
                    [ETCD, "--name", n, "--data-dir", os.path.join(self.dir, f"etcd-{n}"),
                     "--listen-client-urls", client, "--advertise-client-urls", client,
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", cluster, "--initial-cluster-state", "new",
                     "--initial-cluster-token", "meshlet-test", "--log-level", "warn", *tls],
                    stdout=log, stderr=log)
        for n in [name] if name else self.names:
            self.wait_port(n)

    def wait_port(self, name, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.client[name]), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"etcd member {name} did not start; see {self.dir}")

    def kill(self, name):
        """SIGKILL, as a crash would."""
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.kill()
            proc.wait()

    def stop_all(self):
        for name in list(self.procs):
            stop_process(self.procs.pop(name))


class Replica:
    """A control plane on the EtcdCluster `etcd` (its store flags), named `name`, in tmp/name
    (API and plaintext xDS on 127.0.0.1, or with `plaintext=False` xDS over TLS with the
    certificate its CA issues itself; `args` are further flags), and a meshctl context for it."""

    def __init__(self, control_plane, meshctl_binary, tmp, name, etcd, *args, plaintext=True):
        self.name = name
        self.meshctl_binary = meshctl_binary
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        if plaintext:
            self.proc, self.api, self.ads, self.token = start_plaintext_control_plane(
                control_plane, self.dir, *etcd.store_args(), *args)
        else:
            data = os.path.join(self.dir, "cp-data")
            self.proc, self.api, self.ads = start_control_plane(
                control_plane, os.path.join(self.dir, "cp.log"), "--data-dir", data,
                "--api-address", "127.0.0.1:0", "--xds-address", "127.0.0.1:0",
                *etcd.store_args(), *args)
            with open(os.path.join(data, "api-token")) as f:
                self.token = f.read().strip()
        self.context = os.path.join(self.dir, "meshctl.yaml")
        with open(self.context, "w") as f:
            f.write(f"server: {self.api}\n"
                    f"tokenFile: {os.path.join(self.dir, 'cp-data', 'api-token')}\n"
                    f"certificateAuthority: {cp_api.ca_file_for(self.api)}\n")

    def apply(self, text):
        """`meshctl apply -f -` of `text` through this replica; its stdout."""
        return meshctl(self.meshctl_binary, self.context, "apply", "-f", "-", stdin=text)

    def request(self, method, path, body=None):
        """(status, body) of an API request."""
        return cp_api.request(self.api, method, path, body=body, token=self.token, timeout=10)

    def workloads(self):
        """id -> the workload as this replica's API lists it."""
        status, body = self.request("GET", "/api/v1/workloads")
        if status != 200:
            raise AssertionError(f"GET /api/v1/workloads from {self.name}: {status} {body}")
        return {w["id"]: w for w in json.loads(body)["items"]}

    def stop(self):
        if self.proc.poll() is None:
            stop_process(self.proc)


def stop_mesh(holder):
    """Teardown of a test holding .sidecars, .apps, .replicas, .etcd and .tmp (any of them may be
    missing, after a failed start): sidecars first, then apps, replicas, etcd, files."""
    for s in getattr(holder, "sidecars", []):
        s.stop()
    for app in getattr(holder, "apps", []):
        app.close()
    for r in getattr(holder, "replicas", []):
        r.stop()
    if getattr(holder, "etcd", None) is not None:
        holder.etcd.stop_all()
    if hasattr(holder, "tmp"):
        shutil.rmtree(holder.tmp, ignore_errors=True)


class EtcdMeshTest(unittest.TestCase):
    """A test class over one mesh on etcd for all its tests: skipped without etcd; otherwise an
    EtcdCluster of ETCD_MEMBERS in a temporary directory (TMP_PREFIX), then the subclass's
    start_mesh() (a classmethod filling .replicas, .sidecars and .apps); all of it removed after
    the last test, and also when start_mesh() fails."""

    TMP_PREFIX = "etcd-mesh-"
    ETCD_MEMBERS = 1

    @classmethod
    def setUpClass(cls):
        if not etcd_installed():
            raise unittest.SkipTest("etcd is not installed (Debian package etcd-server)")
        cls.tmp = tempfile.mkdtemp(prefix=cls.TMP_PREFIX)
        cls.etcd = EtcdCluster(cls.tmp, members=cls.ETCD_MEMBERS)
        cls.replicas, cls.sidecars, cls.apps = [], [], []
        try:
            cls.start_mesh()
        except BaseException:
            cls.tearDownClass()  # unittest does not when setUpClass fails
            raise

    @classmethod
    def tearDownClass(cls):
        stop_mesh(cls)
