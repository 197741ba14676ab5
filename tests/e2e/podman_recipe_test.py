"""End-to-end: the podman recipe of docs/kubernetes.md, run as written.

    podman_recipe_test.py --bin-dir DIR --doc docs/kubernetes.md

The command block that follows the marker RECIPE_MARKER in the doc is read at run time and run
with bash, unchanged, in a directory holding the user's manifest app.yaml (a plain Pod of the
testapp image). Around it the test provides what the recipe's text asks for, the way a user's
machine would:

  control plane   the meshlet-control-plane image as a pod (cluster.py), on a podman network of
                  the run's own in 198.18.0.0/15 (harness.py)
  $CONTROL_PLANE  that pod's address and discovery port, as pods reach it
  $NETWORK        the run's network
  meshctl         meshctl of DIR, set up for the control plane's API (its token and CA) by a context file
                  ($MESHCTL_CONFIG); it runs in the control plane pod's network namespace, since
                  the run's network is internal (the host has no address on it)
  podman          podman with the run's storage and deploy/podman/containers.conf

Then the pod the recipe played must be meshed: its proxy ready (/ready 200: configuration,
certificate, capture seen), the workload registered with the control plane under its service
with the pod's address and the identity of its join token, and a request to the app's port from
another pod answered by the app through the proxy's inbound listener.

One line per step (PASS/FAIL); everything of the run is removed afterwards, also on failure.
Without root or podman it prints SKIP and exits 0, unless MESHLET_REQUIRE_E2E=1.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as cluster_lib  # noqa: E402
import harness  # noqa: E402

# The line of docs/kubernetes.md after which the recipe's ```sh block comes.
RECIPE_MARKER = "<!-- podman recipe: tests/e2e/podman_recipe_test.py runs this block as written -->"
POD = "hello"

# The user's manifest: a plain Pod, no meshlet configuration. Its port is declared (the control
# plane gives a workload an inbound listener for the ports it registers); podman 4.3 publishes a
# declared port on the host too, so the port is one free there (free_port()).
APP_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: %(pod)s
  labels:
    app: %(pod)s
    app.kubernetes.io/version: "1.0"
spec:
  containers:
  - name: app
    image: localhost/meshlet-testapp:%(release)s
    args: ["--service", "%(pod)s", "--listen", "0.0.0.0:%(port)d"]
    ports:
    - containerPort: %(port)d
"""


def free_port():
    """A TCP port nothing on the host listens on now."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def recipe(doc_path):
    """The ```sh block after RECIPE_MARKER in the doc, as text."""
    with open(doc_path) as f:
        text = f.read()
    at = text.find(RECIPE_MARKER)
    if at < 0:
        raise harness.E2EError("%s has no line %r" % (doc_path, RECIPE_MARKER))
    m = re.compile(r"```sh\n(.*?)\n```", re.S).search(text, at)
    if m is None:
        raise harness.E2EError("%s: no ```sh block after the recipe's marker" % doc_path)
    return m.group(1) + "\n"


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class Recipe:
    def __init__(self, run, bin_dir, doc):
        self.run = run
        self.meshctl_binary = os.path.join(bin_dir, "control-plane", "cli", "meshctl")
        self.cluster = cluster_lib.Cluster(run, meshctl=self.meshctl_binary)
        self.doc = doc
        self.work = os.path.join(run.dir, "recipe")
        self.pod_ip = None
        self.app_port = free_port()

    def control_plane(self):
        took = self.cluster.start_control_plane()
        return "%s at %s, ready after %.1f s" % (cluster_lib.CONTROL_PLANE_NAME,
                                                self.cluster.control_plane_ip, took)

    def environment(self):
        """The user's machine: PATH with meshctl and podman set up, the recipe's variables."""
        bin_dir = os.path.join(self.work, "bin")
        os.makedirs(bin_dir)
        # The API token of the control plane's data directory, copied out of its container.
        token_file = os.path.join(self.work, "api-token")
        self.run.podman(["cp", "%s:%s" % (cluster_lib.CONTROL_PLANE_CONTAINER,
                                          cluster_lib.API_TOKEN), token_file])
        os.chmod(token_file, 0o600)
        # The CA that meshctl verifies the API with (what `meshctl context set --ca-file` keeps).
        ca_file = os.path.join(self.work, "api-ca.pem")
        self.run.podman(["cp", "%s:%s" % (cluster_lib.CONTROL_PLANE_CONTAINER,
                                          cluster_lib.API_CA), ca_file])
        context = os.path.join(self.work, "meshctl.yaml")
        with open(context, "w") as f:
            f.write("server: 127.0.0.1:15014\ntokenFile: %s\ncertificateAuthority: %s\n"
                    % (json.dumps(token_file), json.dumps(ca_file)))
        pid = self.run.pod_pid(cluster_lib.CONTROL_PLANE_NAME)
        write_script(os.path.join(bin_dir, "meshctl"),
                     "#!/bin/sh\n# meshctl in the control plane pod's network namespace.\n"
                     "exec nsenter --target %d --net -- %s \"$@\"\n" % (
                         pid, shlex.quote(self.meshctl_binary)))
        env = harness.podman_env()
        podman = shutil.which("podman", path=env["PATH"])
        write_script(os.path.join(bin_dir, "podman"),
                     "#!/bin/sh\n# podman with the run's storage and settings.\n"
                     "CONTAINERS_CONF=%s exec %s \"$@\"\n" % (
                         shlex.quote(harness.CONTAINERS_CONF),
                         " ".join(shlex.quote(a) for a in [podman] + self.run.podman_prefix()[1:])))
        env.pop("CONTAINERS_CONF", None)
        env["PATH"] = bin_dir + ":" + env["PATH"]
        env["MESHCTL_CONFIG"] = context
        env["CONTROL_PLANE"] = "%s:15012" % self.cluster.control_plane_ip
        env["NETWORK"] = self.run.network
        env["HOME"] = self.work
        return env

    def run_recipe(self):
        os.makedirs(self.work, exist_ok=True)
        env = self.environment()
        with open(os.path.join(self.work, "app.yaml"), "w") as f:
            f.write(APP_YAML % {"pod": POD, "port": self.app_port, "release": harness.RELEASE})
        block = recipe(self.doc)
        with open(os.path.join(self.work, "recipe.sh"), "w") as f:
            f.write(block)
        self.run.pods.append(POD)
        r = subprocess.run(["bash", "-euo", "pipefail", "recipe.sh"], cwd=self.work, env=env,
                           capture_output=True, text=True, timeout=300)
        self.run.transcript.append((["bash", "recipe.sh"], r.returncode,
                                    (block + r.stdout + r.stderr)[-4000:]))
        if r.returncode != 0:
            raise harness.E2EError("the recipe failed (exit %d):\n%s\n%s%s" % (
                r.returncode, block, r.stdout[-2000:], r.stderr[-3000:]))
        # The commands: lines that neither continue another nor are comments.
        commands = [" ".join(line.split()[:2]) for line in block.splitlines()
                    if line.strip() and not line[0].isspace() and not line.startswith("#")]
        return "the %d commands of the doc's recipe ran as written (%s)" % (
            len(commands), "; ".join(commands))

    def meshed(self):
        infra = self.run.podman(["pod", "inspect", POD, "--format", "{{.InfraContainerID}}"])
        networks = json.loads(self.run.podman(
            ["inspect", "--format", "{{json .NetworkSettings.Networks}}", infra.strip()]))
        self.pod_ip = networks[self.run.network]["IPAddress"]
        took = self.wait_ready()
        workloads = json.loads(self.cluster.meshctl("get", "workloads", "-o", "json"))["items"]
        mine = [w for w in workloads if w.get("service") == POD]
        if len(mine) != 1:
            raise harness.E2EError("the control plane lists %d workloads of service %s: %s" % (
                len(mine), POD, json.dumps(workloads)[:2000]))
        w = mine[0]
        expected = {"id": "%s.default" % POD, "namespace": "default",
                    "serviceAccount": "default", "addresses": [self.pod_ip]}
        got = {k: w.get(k) for k in expected}
        if got != expected or w.get("labels", {}).get("version") != "1.0":
            raise harness.E2EError("registered as %s, expected %s and label version 1.0" % (
                json.dumps(w), expected))
        # A request to the app's port from another pod: captured, answered through the proxy.
        before = self.proxy_requests()
        for _ in range(3):
            r = self.run.in_pod_network(cluster_lib.CONTROL_PLANE_NAME, [
                "curl", "-sS", "-m", "5", "http://%s:%d/" % (self.pod_ip, self.app_port)])
            if json.loads(r.stdout).get("service") != POD:
                raise harness.E2EError("the app's answer: %s" % r.stdout)
        after = self.proxy_requests()
        if after - before < 3:
            raise harness.E2EError("the proxy counted %d requests for 3 sent to the app" % (
                after - before))
        return ("pod %s at %s: proxy ready after %.1f s, registered as %s (ns/default/sa/default, "
                "version 1.0); 3 requests to :%d answered by the app through the proxy" % (
                    POD, self.pod_ip, took, w["id"], self.app_port))

    def wait_ready(self):
        started = time.monotonic()
        self.run.wait_until(
            lambda: self.cluster.pod_http(POD, "http://127.0.0.1:15020/ready")[0] == 200,
            90, "%s's proxy to be ready" % POD,
            lambda: "%s\n%s" % (self.cluster.pod_http(POD, "http://127.0.0.1:15020/ready"),
                                self.run.logs(POD + "-meshlet-proxy")[-3000:]))
        return time.monotonic() - started

    def proxy_requests(self):
        status, text = self.cluster.pod_http(POD, "http://127.0.0.1:15020/stats/prometheus")
        if status != 200:
            raise harness.E2EError("the proxy's metrics: %d %s" % (status, text[:500]))
        return sum(float(m.group(1)) for m in re.finditer(
            r"^meshlet_http_downstream_rq_total\{[^}]*\} (\S+)$", text, re.M))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--doc", required=True, help="docs/kubernetes.md")
    args = p.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    doc = os.path.abspath(args.doc)
    recipe(doc)  # a doc without the block fails at once, root or not

    def body(run, suite):
        suite.scenario("images", lambda: run.build_images(bin_dir) or ", ".join(run.images),
                       fatal=True)
        r = Recipe(run, bin_dir, doc)
        suite.scenario("control plane", r.control_plane, fatal=True)
        suite.scenario("recipe", r.run_recipe, fatal=True)
        suite.scenario("meshed pod", r.meshed)

    return harness.Suite("podman-recipe").main(body)


if __name__ == "__main__":
    sys.exit(main())
