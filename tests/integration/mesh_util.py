"""Helpers for tests that run the real control plane with its CA: start it, create join tokens,
stop it."""

import json
import re
import signal
import subprocess
import time
import urllib.request


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


def stop_all(sidecars, apps, control_plane):
    """Test teardown: sidecars first (they hold connections to both), then apps, then the
    control plane."""
    for s in sidecars:
        s.stop()
    for app in apps:
        app.close()
    stop_process(control_plane)
