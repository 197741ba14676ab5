"""A real etcd (Debian's etcd-server) on loopback for tests: one member or a cluster of three,
each member stoppable and restartable on its own data. Every member is started in its own
process group; stop_all() ends them all (call it from tearDown, also after a failure)."""

import os
import socket
import subprocess
import time

from mesh_util import stop_process
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
