"""A real etcd (Debian's etcd-server) on loopback for tests: one member or a cluster of three,
each member stoppable and restartable on its own data. Every member is started in its own
process group; stop_all() ends them all (call it from tearDown, also after a failure). And
control-plane replicas on it (Replica)."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import cp_api
from mesh_util import meshctl, start_control_plane, start_plaintext_control_plane, stop_process
from ports import free_port

ETCD = "/usr/bin/etcd"


def etcd_installed():
    return os.access(ETCD, os.X_OK)


class EtcdCluster:
    def __init__(self, directory, members=1):
        self.dir = directory
        self.names = [f"m{i}" for i in range(members)]
        self.client = {n: free_port() for n in self.names}
        self.peer = {n: free_port() for n in self.names}
        self.procs = {}

    @property
    def url(self):
        """etcd://... naming every member, for --store."""
        return "etcd://" + ",".join(f"127.0.0.1:{self.client[n]}" for n in self.names)

    def start(self, name=None):
        """Starts every member (or `name`) and waits until its client port accepts."""
        for n in [name] if name else self.names:
            cluster = ",".join(f"{m}=http://127.0.0.1:{self.peer[m]}" for m in self.names)
            client = f"http://127.0.0.1:{self.client[n]}"
            peer = f"http://127.0.0.1:{self.peer[n]}"
            with open(os.path.join(self.dir, f"etcd-{n}.log"), "ab") as log:
                self.procs[n] = subprocess.Popen(
                    [ETCD, "--name", n, "--data-dir", os.path.join(self.dir, f"etcd-{n}"),
                     "--listen-client-urls", client, "--advertise-client-urls", client,
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", cluster, "--initial-cluster-state", "new",
                     "--initial-cluster-token", "meshlet-test", "--log-level", "warn"],
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
    """A control plane with the etcd store, named `name`, in tmp/name (API and plaintext xDS on
    127.0.0.1, or with `plaintext=False` xDS over TLS with the certificate its CA issues itself;
    `args` are further flags), and a meshctl context for it."""

    def __init__(self, control_plane, meshctl_binary, tmp, name, etcd_url, *args, plaintext=True):
        self.name = name
        self.meshctl_binary = meshctl_binary
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        if plaintext:
            self.proc, self.api, self.ads, self.token = start_plaintext_control_plane(
                control_plane, self.dir, "--store", etcd_url, *args)
        else:
            data = os.path.join(self.dir, "cp-data")
            self.proc, self.api, self.ads = start_control_plane(
                control_plane, os.path.join(self.dir, "cp.log"), "--data-dir", data,
                "--api-address", "127.0.0.1:0", "--xds-address", "127.0.0.1:0",
                "--store", etcd_url, *args)
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
