"""End-to-end smoke test: meshlet's images as pods played by podman (tests/e2e/README.md).

    smoke_test.py --bin-dir DIR

DIR is a Bazel output tree with the sidecar, control plane, meshctl and testapp binaries (the
test's runfiles). Builds the images from them (deploy/images/build.py), loads the OCI archives
into a podman storage of the run's own, and plays on a network of its own:

  control plane   the meshlet-control-plane image as a pod; `meshctl check` inside it passes
                  (HTTPS, verified with its CA's root); a testapp pod calling it by name gets
                  HTTP from its trace receiver and none from its API, which speaks only TLS
  three services  productpage -> reviews -> ratings, testapp pods calling each other by name
                  (hostAliases to the pods' IPs); one request through the chain answers 200,
                  each service nested in its caller's answer, one trace id in all three
  interception    the sidecar starts in the meshlet-proxy image (--version, in an init
                  container); an init container of that image writes an iptables nat rule
                  (the app's outbound port 80 -> 15001); iptables-save shows it once; the app's
                  connection to a remote port 80 is answered by the pod's own 15001 listener,
                  the proxy user's (1337) is not redirected
  cleanup         nothing of the run remains: pods, containers, images, network, bridge,
                  directory, processes

One line per scenario (PASS/FAIL). Without root or a working podman it prints a SKIP line and
exits 0, unless MESHLET_REQUIRE_E2E=1 (./dev test as root sets it): then that is a failure.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TAG = harness.RELEASE
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = "00-%s-00f067aa0ba902b7-01" % TRACE_ID


def image(name):
    return "localhost/meshlet-%s:%s" % (name, TAG)


def pod(name, containers, host_aliases, init_containers=None, restart_policy=None):
    spec = {"hostAliases": host_aliases, "containers": containers}
    metadata = {"name": name, "labels": {"app": name}}
    if init_containers:
        spec["initContainers"] = init_containers
        # Keep the init containers (and their logs) after they ran.
        metadata["annotations"] = {harness.INIT_TYPE_ANNOTATION: "always"}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def testapp(service, version="v1", calls=(), port=9080, run_as=None):
    c = {
        "name": "app",
        "image": image("testapp"),
        "args": ["--service", service, "--service-version", version,
                 "--listen", "0.0.0.0:%d" % port, "--log-requests"] +
                [a for url in calls for a in ("--call", url)],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    }
    if run_as is not None:
        c["securityContext"] = {"runAsUser": run_as}
    return c


class Smoke:
    def __init__(self, run, bin_dir):
        self.run = run
        self.bin_dir = bin_dir
        self.names = ["control-plane", "productpage", "reviews", "ratings", "intercept"]
        self.ips = {name: run.ip(10 + i) for i, name in enumerate(self.names)}
        self.aliases = [{"ip": self.ips[n], "hostnames": [n]} for n in self.names]

    def control_plane(self):
        self.run.play(pod("control-plane", [{
            "name": "control-plane",
            "image": image("control-plane"),
            "args": ["--api-address", "0.0.0.0:15014"],
        }], self.aliases), self.ips["control-plane"])
        check = ["meshctl", "--token-file", "/var/lib/meshlet/api-token", "--ca-file",
                 "/var/lib/meshlet/ca/root-cert.pem", "check"]
        took = self.run.wait_ready("control-plane-control-plane", check)
        out = self.run.exec("control-plane-control-plane", check)
        if "token          accepted" not in out or not out.rstrip().endswith("OK"):
            raise harness.E2EError("meshctl check:\n" + out)
        return "meshctl check passes in the control plane's pod (ready after %.1f s)" % took

    def three_services(self):
        for name, calls in (("ratings", []),
                            ("reviews", ["http://ratings:9080/ratings"]),
                            ("productpage", ["http://reviews:9080/reviews"])):
            self.run.play(pod(name, [testapp(name, calls=calls)], self.aliases), self.ips[name])
        for name in ("ratings", "reviews", "productpage"):
            self.run.wait_ready(name + "-app", ["testapp", "get", "http://127.0.0.1:9080/healthz"])
        # From the ratings pod, through all three by name.
        out = self.run.exec("ratings-app", [
            "testapp", "get", "http://productpage:9080/products/1",
            "-H", "traceparent: " + TRACEPARENT, "-H", "x-request-id: smoke-1"])
        answer = json.loads(out)
        chain = []
        node = answer
        while True:
            chain.append(node["service"])
            if node["headers"].get("traceparent") != TRACEPARENT:
                raise harness.E2EError("%s got traceparent %r" % (
                    node["service"], node["headers"].get("traceparent")))
            if node["status"] != 200:
                raise harness.E2EError("%s answered %s: %s" % (node["service"], node["status"], out))
            if not node["calls"]:
                break
            call = node["calls"][0]
            if call.get("status") != 200:
                raise harness.E2EError("call %s: %s" % (call["url"], out))
            node = call["answer"]
        if chain != ["productpage", "reviews", "ratings"]:
            raise harness.E2EError("the chain was %s: %s" % (chain, out))
        # The control plane by name from an app pod: its trace receiver answers plain HTTP (405
        # for a GET), its API does not (HTTPS only: no HTTP answer, testapp's exit status 3).
        receiver = self.run.exec("ratings-app",
                                 ["testapp", "get", "http://control-plane:4318/v1/traces"],
                                 check=False)
        if receiver.returncode != 1 or "405" not in receiver.stdout + receiver.stderr:
            raise harness.E2EError("GET control-plane:4318/v1/traces from ratings: exit %d: %s" % (
                receiver.returncode, (receiver.stdout + receiver.stderr).strip()))
        api = self.run.exec("ratings-app", ["testapp", "get", "http://control-plane:15014/healthz"],
                            check=False)
        if api.returncode != 3:
            raise harness.E2EError("plain HTTP to control-plane:15014 from ratings: exit %d: %s" % (
                api.returncode, (api.stdout + api.stderr).strip()))
        return ("GET productpage -> reviews -> ratings by name: 200, trace %s... in all three; "
                "from ratings, control-plane:4318 answers 405 to a GET and :15014 no plain HTTP"
                % TRACE_ID[:8])

    def interception(self):
        rule = ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "80",
                "-m", "owner", "!", "--uid-owner", "1337", "-j", "REDIRECT", "--to-ports", "15001"]
        root_net_admin = {"runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}}
        self.run.play(pod(
            "intercept",
            # Stands in for the sidecar: the proxy user listening on the outbound capture port.
            [testapp("intercepted", port=15001, run_as=1337)],
            self.aliases,
            init_containers=[
                # The sidecar's own libraries load in the proxy image.
                {"name": "sidecar-version", "image": image("proxy"), "args": ["--version"]},
                {"name": "iptables", "image": image("proxy"), "command": ["/usr/sbin/iptables"],
                 "args": rule, "securityContext": root_net_admin},
                {"name": "iptables-save", "image": image("proxy"),
                 "command": ["/usr/sbin/iptables-save", "-t", "nat"],
                 "securityContext": root_net_admin},
            ],
            restart_policy="OnFailure"), self.ips["intercept"])
        self.run.wait_ready("intercept-app",
                            ["testapp", "get", "http://127.0.0.1:15001/healthz"])
        version = self.run.logs("intercept-sidecar-version")
        if "meshlet sidecar" not in version:
            raise harness.E2EError("sidecar --version in the proxy image: " + version)
        saved = self.run.logs("intercept-iptables-save")
        expected = ("-A OUTPUT -p tcp -m tcp --dport 80 -m owner ! --uid-owner 1337 "
                    "-j REDIRECT --to-ports 15001")
        if saved.count(expected) != 1:
            raise harness.E2EError("iptables-save in the pod shows the rule %d times:\n%s" % (
                saved.count(expected), saved))
        # The app's user: port 80 of another pod, answered by this pod's 15001.
        url = "http://%s:80/outbound" % self.ips["ratings"]
        out = self.run.exec("intercept-app", ["testapp", "get", url], user=65534)
        if json.loads(out)["service"] != "intercepted":
            raise harness.E2EError("the redirected call was answered by: " + out)
        # The proxy user is not redirected: nobody listens on ratings' port 80.
        r = self.run.exec("intercept-app", ["testapp", "get", "--timeout", "2s", url], user=1337,
                          check=False)
        if r.returncode != 3 or "connection refused" not in r.stderr:
            raise harness.E2EError("uid 1337's call to %s was not left alone: exit %d %s%s" % (
                url, r.returncode, r.stdout, r.stderr))
        return ("proxy image: %s; an init container's iptables nat rule (iptables-save shows it "
                "once) sends uid 65534's %s to the pod's :15001; uid 1337's goes out (refused)" %
                (version.strip(), url))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True)
    args = p.parse_args()

    def body(run, suite):
        suite.scenario("images", lambda: run.build_images(os.path.abspath(args.bin_dir)) or
                       "%s" % ", ".join(run.images), fatal=True)
        smoke = Smoke(run, args.bin_dir)
        for name, scenario in (("control plane", smoke.control_plane),
                               ("three services", smoke.three_services),
                               ("interception", smoke.interception)):
            suite.scenario(name, scenario, fatal=True)

    return harness.Suite("smoke").main(body)


if __name__ == "__main__":
    sys.exit(main())
