"""Shared pieces of the xDS integration tests: a control plane (xds-file-server) and sidecars
run as real binaries on 127.0.0.1, resources written as bootstrap-style YAML."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cp_api
from ports import free_port  # noqa: F401  (re-exported for the tests)


def generate_stubs(proto_root, out_dir):
    """Python modules for proto_root/xds/*.proto (the messages and python3-grpcio stubs),
    generated with grpc_tools into out_dir, which joins sys.path."""
    import grpc_tools
    os.makedirs(out_dir, exist_ok=True)
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    # Not gateway.proto: its proto3 `optional` fields are newer than python3-grpc-tools' protoc
    # (3.5), and nothing the tests send imports it.
    protos = sorted(os.path.join("xds", f) for f in os.listdir(os.path.join(proto_root, "xds"))
                    if f.endswith(".proto") and f != "gateway.proto")
    r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"-I{well_known}",
                        f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos],
                       cwd=proto_root, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("grpc_tools.protoc failed: " + r.stderr)
    sys.path.insert(0, out_dir)


def wait_for(predicate, timeout=10.0, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(interval)
    return predicate()


def http_get(port, path="/", host="127.0.0.1", timeout=5, ca_file=None):
    """(status, body) of GET http://host:port/path, or with `ca_file` of https://host:port/path
    verified with it (the control plane's API); raises OSError when nothing answers."""
    scheme = "https" if ca_file else "http"
    req = urllib.request.Request(f"{scheme}://{host}:{port}{path}")
    context = cp_api.ssl_context(ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"openssl {args}: {r.stderr}")


def make_server_cert(directory):
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key) paths."""
    p = lambda name: os.path.join(directory, name)
    for key in ("ca.key", "server.key"):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                p(key), cwd=directory)
    openssl("req", "-x509", "-new", "-key", p("ca.key"), "-subj", "/CN=xds-test-ca", "-days", "2",
            "-out", p("ca.pem"), "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    with open(p("server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,"
                "URI:spiffe://cluster.local/ns/mesh/sa/control-plane\n"
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("req", "-new", "-key", p("server.key"), "-subj", "/CN=control-plane", "-out",
            p("server.csr"), cwd=directory)
    openssl("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
            "-set_serial", "7", "-days", "1", "-extfile", p("server.ext"), "-out", p("server.pem"),
            cwd=directory)
    return p("ca.pem"), p("server.pem"), p("server.key")


def resources_yaml(port, body, cluster_port=None, route_cluster=None, extra_listener_port=None):
    """One HTTP listener on 127.0.0.1:port answering `body`; with cluster_port a STATIC cluster
    "app" and a /app route to it (route_cluster overrides the cluster the route names)."""
    text = f"""static_resources:
  listeners:
  - name: web
    address: 127.0.0.1:{port}
    direction: OUTBOUND
    protocol: PROTOCOL_HTTP
    route_config_name: web-routes
"""
    if extra_listener_port:
        text += f"""  - name: extra
    address: 127.0.0.1:{extra_listener_port}
    direction: OUTBOUND
    protocol: PROTOCOL_HTTP
    route_config_name: web-routes
"""
    text += f"""  routes:
  - name: web-routes
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
"""
    if cluster_port or route_cluster:
        text += f"""      - match: {{prefix: /app}}
        route: {{cluster: {route_cluster or 'app'}}}
"""
    text += f"""      - match: {{prefix: /}}
        direct_response: {{status: 200, body: "{body}"}}
"""
    if cluster_port:
        text += f"""  clusters:
  - name: app
    connect_timeout: 0.5s
    load_assignment:
      endpoints:
      - address: 127.0.0.1:{cluster_port}
"""
    return text


class ControlPlane:
    """xds-file-server serving `path`; TLS when cert/key are given, else plaintext."""

    def __init__(self, binary, workdir, yaml_text, port=None, cert=None, key=None, name="cp"):
        self.binary = binary
        self.workdir = workdir
        self.path = os.path.join(workdir, f"{name}-resources.yaml")
        self.write(yaml_text)
        self.port = port or free_port()
        self.status_port = free_port()
        self.cert, self.key = cert, key
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc = None
        self.start()

    def write(self, yaml_text):
        with open(self.path, "w") as f:
            f.write(yaml_text)

    def start(self):
        args = [self.binary, "--resources", self.path, f"--address=127.0.0.1:{self.port}",
                f"--status-address=127.0.0.1:{self.status_port}"]
        args += ["--tls-cert", self.cert, "--tls-key", self.key] if self.cert else ["--plaintext"]
        self.log_file = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log_file)
        if not wait_for(lambda: http_get(self.status_port, "/proxy-status")[0] == 200):
            raise AssertionError("control plane did not start: " + self.log())

    def reload(self, yaml_text):
        self.write(yaml_text)
        self.proc.send_signal(signal.SIGHUP)

    def status(self):
        return json.loads(http_get(self.status_port, "/proxy-status")[1])["proxies"]

    def proxy(self, node_id):
        for proxy in self.status():
            if proxy["id"] == node_id:
                return proxy
        return None

    def types(self, node_id):
        proxy = self.proxy(node_id)
        return {t["type"]: t for t in proxy["types"]} if proxy else {}

    def metrics(self):
        return http_get(self.status_port, "/metrics")[1]

    def log(self):
        self.log_file.flush()
        with open(self.log_path) as f:
            return f.read()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()

    def stop(self):
        """SIGTERM: graceful GOAWAY; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        self.log_file.close()
        return code


class XdsSidecar:
    """The sidecar binary streaming its configuration from a control plane."""

    def __init__(self, binary, workdir, xds_port, node_id, ca=None, delta=None, cache_dir=None,
                 extra=(), wait_ready=True):
        self.binary = binary
        self.admin_port = free_port()
        self.log_path = os.path.join(workdir, f"sidecar-{node_id}.log")
        args = [binary, f"--xds=127.0.0.1:{xds_port}", f"--node-id={node_id}",
                "--node-service=web", "--node-namespace=default",
                f"--admin-address=127.0.0.1:{self.admin_port}", "--concurrency=1",
                "--drain-time=1s"]
        # None: the sidecar's default stream (delta).
        args += [] if delta is None else [f"--xds-delta={'true' if delta else 'false'}"]
        args += [f"--xds-ca={ca}"] if ca else ["--xds-plaintext=true"]
        if cache_dir:
            args.append(f"--xds-cache-dir={cache_dir}")
        args += list(extra)
        self.log_file = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log_file)
        # /ready waits for the first complete configuration from the control plane (or the
        # saved one); a sidecar that cannot get one only has its admin port up.
        up = self.ready if wait_ready else lambda: self.ready_status() is not None
        if not wait_for(up):
            raise AssertionError("sidecar not ready: " + self.log())

    def ready_status(self):
        """The /ready status code, None while the admin port is not up."""
        if self.proc.poll() is not None:
            raise AssertionError(f"sidecar exited with {self.proc.returncode}: {self.log()}")
        try:
            return http_get(self.admin_port, "/ready")[0]
        except OSError:
            return None

    def ready(self):
        return self.ready_status() == 200

    def xds(self):
        return json.loads(http_get(self.admin_port, "/config_dump")[1])["xds"]

    def log(self):
        self.log_file.flush()
        with open(self.log_path) as f:
            return f.read()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()
