"""Helpers for tests that run the real control plane with its CA: start it, create join tokens,
start sidecars configured over its xDS, stop it; certificates made with the openssl CLI; what a
sidecar trusts and accepts."""

import glob
import http.client
import http.server
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import cp_api
import sidecar_test
from ports import free_port


def openssl(*args, **kwargs):
    return subprocess.run(["openssl", *args], check=True, capture_output=True, **kwargs)


def serve_https(handler_class, cert):
    """A threading HTTPS server on 127.0.0.1 with `cert` (certificate path, key path) and
    `handler_class` (a BaseHTTPRequestHandler), serving in a daemon thread: (server, "https://
    127.0.0.1:PORT"). Stop it with server.shutdown()."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, "https://127.0.0.1:%d" % httpd.server_address[1]


def make_ca(directory, name):
    """A self-signed P-256 CA valid for a day: (certificate path, key path)."""
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + "-key.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", cert, "-subj", "/CN=" + name, "-days", "1",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_leaf(directory, name, ca, extensions):
    """A P-256 certificate with `extensions` (openssl extfile lines) signed by `ca` (cert, key):
    (certificate path, key path)."""
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + "-key.pem")
    csr, ext = os.path.join(directory, name + ".csr"), os.path.join(directory, name + ".ext")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    with open(ext, "w") as f:
        f.write(extensions)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-days", "1", "-extfile", ext, "-out", cert)
    return cert, key


def make_server_cert(directory, name, ca, san="IP:127.0.0.1,DNS:kubernetes.default.svc"):
    """A serverAuth certificate for `san` (by default 127.0.0.1) signed by `ca` (cert, key)."""
    return make_leaf(directory, name, ca, f"subjectAltName={san}\n"
                     "extendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n")


def make_expired_server_cert(directory, name, ca, san):
    """A serverAuth certificate for `san` signed by `ca` (cert, key) that was valid for a day and
    expired yesterday: (certificate path, key path). `openssl x509` issues from now on only;
    `openssl ca` takes explicit dates."""
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + "-key.pem")
    csr, conf = os.path.join(directory, name + ".csr"), os.path.join(directory, name + ".cnf")
    database = os.path.join(directory, name + "-index.txt")
    open(database, "w").close()
    with open(os.path.join(directory, name + "-serial.txt"), "w") as f:
        f.write("1000\n")
    with open(conf, "w") as f:
        f.write(f"[ca]\ndefault_ca = expired\n[expired]\ndatabase = {database}\n"
                f"new_certs_dir = {directory}\nserial = {directory}/{name}-serial.txt\n"
                "default_md = sha256\npolicy = any\nunique_subject = no\n"
                "[any]\ncommonName = supplied\n"
                f"[leaf]\nsubjectAltName={san}\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=critical,CA:FALSE\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    day = 24 * 3600
    start, end = (time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - n * day))
                  for n in (2, 1))
    openssl("ca", "-batch", "-config", conf, "-extensions", "leaf", "-cert", ca[0], "-keyfile",
            ca[1], "-in", csr, "-out", cert, "-notext", "-startdate", start, "-enddate", end)
    return cert, key


def start_fake_kubernetes(directory, token):
    """A fake Kubernetes API server (fake_kubernetes_api.py, which the test's data must hold)
    serving a certificate of a new cluster CA and accepting `token`, and the control plane's
    flags to reach it with that token: (server, flags). The caller stops the server."""
    from fake_kubernetes_api import FakeApiServer
    cluster_ca = make_ca(directory, "cluster-ca")
    server = FakeApiServer(make_server_cert(directory, "apiserver", cluster_ca), token)
    token_file = os.path.join(directory, "k8s-token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    return server, ["--kubernetes-api", server.address, "--kubernetes-token-file", token_file,
                    "--kubernetes-ca-file", cluster_ca[0]]


def make_workload_cert(directory, name, ca, spiffe_id):
    """A mesh certificate for `spiffe_id` signed by `ca` (cert, key), as the CA would issue it."""
    return make_leaf(directory, name, ca,
                     f"subjectAltName=critical,URI:{spiffe_id}\n"
                     "extendedKeyUsage=clientAuth,serverAuth\nbasicConstraints=critical,CA:FALSE\n"
                     "keyUsage=critical,digitalSignature\n")


def mtls_get(port, cert_chain, key, path="/", host="x", headers=None):
    """GET `path` from a sidecar's inbound listener on `port` as a client presenting `cert_chain`
    (PEM file, leaf first) and `key`, with `headers` (a dict) too: (status, body), or (None, the
    reason) when the handshake or connection fails or the answer is not HTTP."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert_chain, key)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw) as conn:
                extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
                conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
                             "Connection: close\r\n\r\n".encode())
                # The whole answer: leaving early would reset the sidecar's request to the app.
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return None, repr(e)
    if not answer.startswith(b"HTTP/1.1 "):
        return None, answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def peer_accepted(port, cert_chain, key):
    """Whether a sidecar's inbound listener on `port` accepts a client presenting `cert_chain`
    (PEM file, leaf first) and `key`: an HTTP answer, or a TLS alert. PERMISSIVE and STRICT both
    verify a presented certificate against the trust bundle."""
    return mtls_get(port, cert_chain, key)[0] is not None


def trust_bundle_roots(sidecar):
    """How many roots the `mesh-trust-bundle` Secret the control plane pushed to `sidecar` holds
    (its /config_dump); 0 before it arrived."""
    dump = json.loads(sidecar.get("/config_dump")[1]).get("resources", {})
    for secret in dump.get("secrets", []):
        if secret["name"] == "mesh-trust-bundle":
            return secret["trust_bundle_pem"].count("BEGIN CERTIFICATE")
    return 0


def start_control_plane(binary, log_path, *args, timeout=15):
    """Starts `binary` with `args` (appending to log_path) and waits until its API, its ADS and
    its CA are up; the API's CA is pinned from the log for cp_api (in log_path + ".ca.pem").
    Returns (process, api address, ADS address)."""
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
            if "--api-plaintext" not in args:
                cp_api.pin_from_log(api[-1], log_path, log_path + ".ca.pem")
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


def put_resource(api, api_token, path, yaml_text):
    """PUT `yaml_text` at /apis/meshlet.io/v1/`path` of the control plane's API at `api`."""
    req = urllib.request.Request(
        cp_api.url(api, f"/apis/meshlet.io/v1/{path}"), method="PUT", data=yaml_text.encode(),
        headers={"Authorization": "Bearer " + api_token, "Content-Type": "application/yaml"})
    with cp_api.urlopen(req, timeout=5) as r:
        r.read()


def write_meshctl_context(path, api, token_file, extra=""):
    """Writes a meshctl context file for the control plane's API at `api` (its CA as cp_api
    knows it) with the token in `token_file`, plus `extra` lines; returns `path`."""
    with open(path, "w") as f:
        f.write(f"server: {api}\ntokenFile: {token_file}\n"
                f"certificateAuthority: {cp_api.ca_file_for(api)}\n{extra}")
    return path


def meshctl(binary, context, *args, stdin=None):
    """stdout of `binary args` (meshctl) with the context file `context`; raises AssertionError
    when it fails."""
    p = subprocess.run([binary, *args], input=stdin, capture_output=True, text=True,
                       env=dict(os.environ, MESHCTL_CONFIG=context), timeout=20)
    if p.returncode != 0:
        raise AssertionError(f"meshctl {args} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p.stdout


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
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException) as e:
        # HTTPException: an answer cut short (IncompleteRead), a malformed one.
        return 0, repr(e)


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
        cp_api.url(api, "/api/v1/tokens"), method="POST",
        data=json.dumps({"namespace": namespace, "serviceAccount": service_account,
                         "ttl": ttl}).encode(),
        headers={"Authorization": "Bearer " + api_token})
    with cp_api.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["token"]


def start_xds_sidecar(parent_dir, ads, node_id, namespace, *args, join_token=None,
                      service_account=None, inbound=None, drain_time="5s",
                      address="127.0.0.1", config="{}\n", wait_ready=True, xds_trust_bundle=None,
                      xds_server_identity=None, binary=None, concurrency=1):
    """A sidecar configured only over xDS by the control plane at `ads`, registered as
    `node_id` on `address` (127.0.0.1), with its outbound and inbound listener ports in node labels (no
    traffic interception here). `inbound` is the port its endpoint is reached on (default: a free
    one for its own inbound listener). With `join_token` it obtains a workload certificate for
    `service_account` from the CA on the same port. With `xds_trust_bundle` (the mesh roots) the
    port is TLS: the sidecar verifies the control plane as `xds_server_identity` and presents its
    workload certificate. `args` are further sidecar flags
    (--node-service, --node-port, --node-label); `drain_time` its --drain-time; `config` its
    bootstrap file (tracing, metrics_report); `wait_ready` False returns once its admin port
    answers, ready or not; `binary` another sidecar binary than the test's; `concurrency` its
    workers. Returns the Sidecar
    with .name, .outbound and .inbound set."""
    workdir = tempfile.mkdtemp(dir=parent_dir)
    outbound = free_port()
    inbound = inbound or free_port()
    tls = xds_trust_bundle is not None
    flags = [f"--xds={ads}", f"--node-id={node_id}",
             f"--node-namespace={namespace}", f"--node-address={address}",
             f"--node-label=meshlet.io/inbound-port={inbound}",
             f"--node-label=meshlet.io/outbound-port={outbound}"]
    if join_token is not None:
        token_file = os.path.join(workdir, "join-token")
        with open(token_file, "w") as f:
            f.write(join_token + "\n")
        flags += [f"--node-service-account={service_account}", f"--join-token-file={token_file}",
                  f"--ca-address={ads}"]
        if not tls:
            flags.append("--ca-plaintext=true")
    if tls:
        flags += [f"--xds-ca={xds_trust_bundle}", f"--xds-server-identity={xds_server_identity}"]
    else:
        flags.append("--xds-plaintext=true")
    s = sidecar_test.Sidecar(workdir, config, *flags, *args, concurrency=concurrency,
                             drain_time=drain_time, wait_ready=wait_ready, binary=binary)
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


def http_service(name, namespace="default", port=9080):
    """A Service `name` of the workloads labelled app=`name`, one HTTP port."""
    return f"""apiVersion: meshlet.io/v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: {port}, protocol: HTTP}}]
"""


def reviews_route_to(version):
    """An HTTPRoute sending every request for Service reviews to its subset `version`."""
    return f"""apiVersion: meshlet.io/v1
kind: HTTPRoute
metadata:
  name: reviews
spec:
  target: reviews
  rules:
  - name: only-{version}
    backends:
    - service: reviews
      subset: {{version: {version}}}
"""


def reviews_subset_cluster(version):
    """The outbound cluster name of Service reviews' subset `version` (port 9080)."""
    return f"outbound|9080|version={version}|reviews.default"


def softhsm_module():
    """The SoftHSM2 PKCS#11 module's path, or None."""
    for pattern in ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/*/softhsm/libsofthsm2.so",
                    "/usr/lib/*/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None
