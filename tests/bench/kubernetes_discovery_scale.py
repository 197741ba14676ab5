"""What Kubernetes service discovery costs the control plane on a large cluster.

Usage: kubernetes_discovery_scale.py --control-plane BIN [--services N] [--pods-per-service M]
                                     [--changes K] [--smoke]

A fake API server (tests/integration/fake_kubernetes_api.py) holds N Services, each with one
EndpointSlice of M ready pods, and N*M Pods shaped like a Deployment's (labels, owner reference,
a container with resources, probes, env and a status with conditions: about 2.2 KB of JSON each).
The control plane (plaintext discovery, no sidecar) lists and watches them. Reported:
- time from start to the first publication (every kind listed, paged at 500);
- the control plane's RSS then;
- for K endpoint changes (one pod made not ready in a slice), the time from the change to its
  publication (meshlet_cp_kubernetes_publications_total), median and max;
- for K Pod status updates (nothing discovery reads), how many were published (should be none).
--smoke: a small cluster, failing if anything is not published or takes more than 10 s.
"""

import argparse
import copy
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import cp_api  # noqa: E402
from fake_kubernetes_api import FakeApiServer  # noqa: E402
from mesh_util import make_ca, make_server_cert  # noqa: E402

TOKEN = "bench-token"


def pod(name, service, ip, ready=True):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "bench", "uid": "uid-" + name,
                     "labels": {"app": service, "version": "v1",
                                "pod-template-hash": "5d8f7c9b6"},
                     "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-23T10:00:00Z"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": service + "-5d8f7c9b6", "uid": "rs-" + service,
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"serviceAccountName": service, "nodeName": "node-%d" % (hash(name) % 50),
                 "containers": [{
                     "name": "app", "image": "registry.example/%s:1.2.3" % service,
                     "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                     "env": [{"name": "LOG_LEVEL", "value": "info"},
                             {"name": "POD_NAME", "valueFrom": {"fieldRef": {
                                 "fieldPath": "metadata.name"}}}],
                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                   "limits": {"memory": "256Mi"}},
                     "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                        "periodSeconds": 5},
                     "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}},
                     "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                       "mountPath": "/var/run/secrets/kubernetes.io/"
                                                    "serviceaccount"}]}],
                 "volumes": [{"name": "kube-api-access", "projected": {"sources": [
                     {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "hostIP": "10.0.0.1", "startTime": "2026-11-23T10:00:00Z",
                   "conditions": [{"type": t, "status": "True" if ready else "False",
                                   "lastTransitionTime": "2026-11-23T10:00:05Z"}
                                  for t in ("Initialized", "Ready", "ContainersReady",
                                            "PodScheduled")],
                   "containerStatuses": [{"name": "app", "ready": ready, "restartCount": 0,
                                          "image": "registry.example/%s:1.2.3" % service,
                                          "imageID": "sha256:" + "ab" * 32,
                                          "containerID": "containerd://" + "cd" * 32,
                                          "started": True,
                                          "state": {"running": {
                                              "startedAt": "2026-11-23T10:00:02Z"}}}]},
    }


def endpoint_slice(service, pods, not_ready=()):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": service + "-abcde", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": name not in not_ready},
                           "nodeName": "node-1",
                           "targetRef": {"kind": "Pod", "namespace": "bench", "name": name}}
                          for name, ip in pods]}


def metric(api, name):
    with cp_api.urlopen("https://%s/metrics" % api, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{}"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--control-plane", required=True)
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--pods-per-service", type=int, default=10)
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    if args.smoke:
        args.services, args.pods_per_service, args.changes = 20, 3, 3
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    ca = make_ca(tmp, "cluster-ca")
    cert = make_server_cert(tmp, "apiserver", ca)
    fake = FakeApiServer(cert, TOKEN)
    pods = {}
    for s in range(args.services):
        service = "svc-%d" % s
        members = []
        for i in range(args.pods_per_service):
            name = "%s-%d" % (service, i)
            ip = "10.%d.%d.%d" % (1 + s // 250, s % 250, 1 + i)
            fake.put("pods", pod(name, service, ip))
            members.append((name, ip))
        pods[service] = members
        fake.put("services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service, "namespace": "bench"},
            "spec": {"clusterIP": "10.96.%d.%d" % (s // 250, s % 250 + 1),
                     "clusterIPs": ["10.96.%d.%d" % (s // 250, s % 250 + 1)],
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                     "selector": {"app": service}}})
        fake.put("endpointslices", endpoint_slice(service, members))
    token = os.path.join(tmp, "token")
    with open(token, "w") as f:
        f.write(TOKEN)
    log = os.path.join(tmp, "cp.log")
    api_port = None
    with open(log, "w") as out:
        started = time.monotonic()
        cp = subprocess.Popen([args.control_plane, "--data-dir", os.path.join(tmp, "data"),
                               "--api-address", "127.0.0.1:0", "--xds-plaintext",
                               "--xds-address", "127.0.0.1:0", "--webhook-address=off",
                               "--otlp-address=", "--zipkin-address=",
                               "--kubernetes-api", fake.address, "--kubernetes-ca-file", ca[0],
                               "--kubernetes-token-file", token, "--webhook-configuration="],
                              stdout=out, stderr=out)
    try:
        while True:
            with open(log) as f:
                text = f.read()
            if api_port is None:
                m = re.search(r"API on (127\.0\.0\.1:\d+)", text)
                api_port = m.group(1) if m else None
                if api_port is not None:
                    cp_api.trust(api_port, cp_api.root_file(os.path.join(tmp, "data")))
            if "are mesh destinations" in text:
                break
            if cp.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit("control plane did not publish: " + text[-2000:])
            time.sleep(0.01)
        first = time.monotonic() - started
        rss = rss_mib(cp.pid)
        objects = args.services * (args.pods_per_service + 2)
        print("cluster: %d Services, %d Pods, %d EndpointSlices (%d objects)" % (
            args.services, args.services * args.pods_per_service, args.services, objects))
        print("first publication: %.2f s after start; RSS %.1f MiB" % (first, rss))
        latencies = []
        for k in range(args.changes):
            service = "svc-%d" % (k % args.services)
            before = metric(api_port, "meshlet_cp_kubernetes_publications_total")
            t0 = time.monotonic()
            fake.put("endpointslices", endpoint_slice(service, pods[service],
                                                      not_ready={pods[service][0][0]}))
            while metric(api_port, "meshlet_cp_kubernetes_publications_total") <= before:
                if time.monotonic() - t0 > 10:
                    raise SystemExit("an endpoint change was not published within 10 s")
                time.sleep(0.002)
            latencies.append(time.monotonic() - t0)
            fake.put("endpointslices", endpoint_slice(service, pods[service]))
            time.sleep(0.05)
        print("endpoint change to publication: median %.1f ms, max %.1f ms (%d changes, "
              "including the metrics scrape)" % (statistics.median(latencies) * 1000,
                                                 max(latencies) * 1000, len(latencies)))
        time.sleep(0.3)
        before = metric(api_port, "meshlet_cp_kubernetes_publications_total")
        for k in range(args.changes):
            service = "svc-%d" % (k % args.services)
            name, ip = pods[service][1]
            changed = pod(name, service, ip)
            changed["status"]["conditions"][0]["lastTransitionTime"] = "2026-11-23T11:%02d:00Z" % k
            fake.put("pods", changed)
        time.sleep(1)
        status_published = metric(api_port, "meshlet_cp_kubernetes_publications_total") - before
        print("pod status updates: %d, publications caused: %d" % (args.changes,
                                                                    status_published))
        print("RSS after: %.1f MiB" % rss_mib(cp.pid))
        if args.smoke and (status_published != 0 or first > 10):
            raise SystemExit("smoke: status updates published or first publication too slow")
    finally:
        cp.terminate()
        cp.wait(timeout=10)
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
