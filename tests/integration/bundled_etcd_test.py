"""The etcd that `meshctl install --set etcd=bundled` renders forms a working cluster.

Usage: bundled_etcd_test.py CONTROL_PLANE MESHCTL SIDECAR SERVICES_YAML [unittest args]

The StatefulSet's command, arguments and environment are taken from meshctl's output and run
three times with Debian's etcd on 127.0.0.1, as the three pods: each pod's stable name and port
mapped to a loopback port of its own (what the headless Service's DNS gives in a cluster), the
data directory moved to a temporary one. Then:

- every member passes the readiness probe the manifest declares (its path on its port), so the
  cluster formed from the rendered --initial-cluster and has a leader;
- a control plane given the rendered --store (mapped the same way) stores a Service through its
  API, and another one started on the same store serves it.

Without the etcd binary the test prints SKIP.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import yaml

import cp_api
from etcd_util import ETCD, etcd_installed
from mesh_util import put_resource, start_plaintext_control_plane, stop_process
from sidecar_test import free_port, wait_for

CONTROL_PLANE = MESHCTL = SERVICES = None  # set from argv
NAMESPACE = "mesh"


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
        """`text` as it reads in `member`'s pod, with cluster names and ports made loopback."""
        text = text.replace("$(POD_NAME)", member).replace("$(POD_NAMESPACE)", NAMESPACE)

        def named(match):
            return f"127.0.0.1:{self.ports[(match.group(1), int(match.group(2)))]}"
        text = re.sub(r"(meshlet-etcd-\d)\.meshlet-etcd\.%s\.svc:(\d+)" % NAMESPACE, named, text)
        text = re.sub(r"0\.0\.0\.0:(\d+)",
                      lambda m: f"127.0.0.1:{self.ports[(member, int(m.group(1)))]}", text)
        return text.replace("/var/lib/etcd", os.path.join(self.tmp, member))

    def test_the_rendered_members_form_a_cluster_the_control_plane_uses(self):
        etcd = self.one("StatefulSet")
        pod = etcd["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(container["command"], ["etcd"])
        self.assertEqual({e["name"] for e in container["env"]}, {"POD_NAME", "POD_NAMESPACE"})
        self.assertEqual(etcd["spec"]["replicas"], len(self.members))
        for member in self.members:
            log = open(os.path.join(self.tmp, f"{member}.log"), "wb")
            self.addCleanup(log.close)
            proc = subprocess.Popen([ETCD] + [self.local(a, member) for a in container["args"]],
                                    stdout=log, stderr=log)
            self.addCleanup(stop_process, proc)

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

        args = self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        store = next(a for a in args if a.startswith("--store="))[len("--store="):]
        store = self.local(store, "meshlet-etcd-0")
        replicas = []
        for name in ("a", "b"):
            directory = os.path.join(self.tmp, name)
            os.makedirs(directory)
            proc, api, _, token = start_plaintext_control_plane(
                CONTROL_PLANE, directory, "--store", store, "--replica-name", name,
                "--otlp-address=", "--zipkin-address=")
            self.addCleanup(stop_process, proc)
            replicas.append((api, token))
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


if __name__ == "__main__":
    CONTROL_PLANE, MESHCTL, _, SERVICES = (os.path.abspath(a) for a in sys.argv[1:5])
    unittest.main(argv=sys.argv[:1] + sys.argv[5:], verbosity=2)
