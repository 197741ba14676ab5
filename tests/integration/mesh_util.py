"""Helpers for tests that run the real control plane with its CA: start it, create join tokens,
start sidecars configured over its xDS, stop it."""

import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import sidecar_test
from ports import free_port


def start_control_plane(binary, log_path, *args, timeout=15):
    """Starts `binary` with `args` (appending to log_path) and waits until its API, its ADS and
    its CA are up. Returns (process, api address, ADS address)."""
    with open(log_path, "ab") as log:
        offset = log.tell()
        proc = subprocess.Popen([binary, *args], stdout=log, stderr=log)
    deadline = time.time() + timeout
    while True:
        with open(log_path) as f:
            f.seek(offset)
            text = f.read()
        api = re.findall(r"API on (127\.0\.0\.1:\d+)", text)
        ads = re.findall(r"ADS on (127\.0\.0\.1:\d+)", text)
        if api and ads and "ca: issuing" in text:
            return proc, api[-1], ads[-1]
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError("control plane did not start: " + text)
        time.sleep(0.05)


def start_plaintext_control_plane(binary, tmp, *args):
    """The control plane with its CA in `tmp` (data in cp-data, log in cp.log), API and plaintext
    xDS on 127.0.0.1, plus `args`. Returns (process, API address, ADS address, API token)."""
    data = os.path.join(tmp, "cp-data")
    proc, api, ads = start_control_plane(
        binary, os.path.join(tmp, "cp.log"), "--data-dir", data, "--api-address", "127.0.0.1:0",
        "--xds-plaintext", "--xds-address", "127.0.0.1:0", *args)
    with open(os.path.join(data, "api-token")) as f:
        return proc, api, ads, f.read().strip()


def spiffe(service_account, namespace="default", trust_domain="cluster.local"):
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def call_service(outbound_port, host, path="/hello"):
    """(status, body) of GET `path` for `host` through a sidecar's outbound listener; status 0
    when no HTTP answer came."""
    req = urllib.request.Request(f"http://127.0.0.1:{outbound_port}{path}",
                                 headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError) as e:
        return 0, str(e)


def stop_process(proc, timeout=10):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def create_join_token(api, api_token, service_account, ttl, namespace="default"):
    """A join token from the control plane's REST API for namespace/service_account."""
    req = urllib.request.Request(
        f"http://{api}/api/v1/tokens", method="POST",
        data=json.dumps({"namespace": namespace, "serviceAccount": service_account,
                         "ttl": ttl}).encode(),
        headers={"Authorization": "Bearer " + api_token})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["token"]


def start_xds_sidecar(parent_dir, ads, node_id, namespace, *args, join_token=None,
                      service_account=None, inbound=None):
    """A sidecar configured only over xDS (plaintext) by the control plane at `ads`, registered as
    `node_id` on 127.0.0.1, with its outbound and inbound listener ports in node labels (no
    traffic interception here). `inbound` is the port its endpoint is reached on (default: a free
    one for its own inbound listener). With `join_token` it obtains a workload certificate for
    `service_account` from the CA on the same port. `args` are further sidecar flags
    (--node-service, --node-port, --node-label). Returns the Sidecar with .name, .outbound and
    .inbound set."""
    workdir = tempfile.mkdtemp(dir=parent_dir)
    outbound = free_port()
    inbound = inbound or free_port()
    flags = [f"--xds={ads}", "--xds-plaintext=true", f"--node-id={node_id}",
             f"--node-namespace={namespace}", "--node-address=127.0.0.1",
             f"--node-label=meshlet.io/inbound-port={inbound}",
             f"--node-label=meshlet.io/outbound-port={outbound}"]
    if join_token is not None:
        token_file = os.path.join(workdir, "join-token")
        with open(token_file, "w") as f:
            f.write(join_token + "\n")
        flags += [f"--node-service-account={service_account}", f"--join-token-file={token_file}",
                  f"--ca-address={ads}", "--ca-plaintext=true"]
    s = sidecar_test.Sidecar(workdir, "{}\n", *flags, *args, concurrency=1)
    s.name, s.outbound, s.inbound = node_id, outbound, inbound
    return s


def stop_all(sidecars, apps, control_plane):
    """Test teardown: sidecars first (they hold connections to both), then apps, then the
    control plane."""
    for s in sidecars:
        s.stop()
    for app in apps:
        app.close()
    stop_process(control_plane)
