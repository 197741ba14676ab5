"""An HTTPS client outside the mesh for the gateway scenario of mesh_test.py, run with the host's
python3 in a pod's network namespace (the pod without a sidecar): every connection verifies the
gateway's certificate against the test's CA for the name sent as SNI and Host.

    gateway_client.py get ADDRESS:PORT --host NAME --ca CA.pem PATH
        one request on a new connection; prints {"status", "serial", "body"} (JSON)
    gateway_client.py load ADDRESS:PORT --host NAME --ca CA.pem --paths P1,P2
                      [--fresh N] [--kept N] [--pause S]
        requests until stdin closes, from N workers opening a new connection for each request
        (a new handshake each) and N keeping one connection for all of theirs (opened again only
        after a failure, which is counted). A line on stdin names the phase the requests that
        follow are counted in. At the end, one JSON line: per phase the requests, their statuses,
        the errors, the certificate serials new connections got and those of the kept
        connections their requests went over, and which service answered each path.

A request fails unless it is answered 200 with the JSON of the sample app.
"""

import argparse
import http.client
import json
import socket
import ssl
import sys
import threading
import time


def connect(address, port, host, context, timeout=5):
    """A verified TLS connection (SNI `host`) as an HTTPSConnection, and the peer's serial."""
    conn = http.client.HTTPSConnection(address, port, timeout=timeout)
    raw = socket.create_connection((address, port), timeout=timeout)
    try:
        conn.sock = context.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise
    return conn, conn.sock.getpeercert()["serialNumber"].upper()


def request(conn, host, path):
    conn.request("GET", path, headers={"Host": host})
    r = conn.getresponse()
    return r.status, r.read().decode(errors="replace")


def answered_by(status, body):
    """The answering service, or None when the answer is not a success."""
    if status != 200:
        return None
    try:
        return json.loads(body).get("service")
    except ValueError:
        return None


class Phase:
    def __init__(self, name):
        self.name = name
        self.requests = 0
        self.statuses = {}
        self.errors = []
        self.failed = 0
        self.fresh_serials = {}
        self.kept_serials = {}
        self.services = {}

    def summary(self):
        return {"phase": self.name, "requests": self.requests, "statuses": self.statuses,
                "failed": self.failed,
                "errors": self.errors[:10], "fresh_serials": self.fresh_serials,
                "kept_serials": self.kept_serials, "services": self.services}


class Load:
    def __init__(self, args, context):
        self.args = args
        self.context = context
        self.lock = threading.Lock()
        self.phases = [Phase("start")]
        self.stopping = threading.Event()

    def record(self, path, serial, kept, status=None, body="", error=None):
        with self.lock:
            phase = self.phases[-1]
            phase.requests += 1
            serials = phase.kept_serials if kept else phase.fresh_serials
            if serial is not None:
                serials[serial] = serials.get(serial, 0) + 1
            if error is not None:
                phase.failed += 1
                phase.statuses["error"] = phase.statuses.get("error", 0) + 1
                phase.errors.append("%s %s: %s" % ("kept" if kept else "fresh", path, error))
                return
            phase.statuses[str(status)] = phase.statuses.get(str(status), 0) + 1
            service = answered_by(status, body)
            if service is None:
                phase.failed += 1
                phase.errors.append("status %s on %s: %s" % (status, path, body[:200]))
                return
            by = phase.services.setdefault(path, {})
            by[service] = by.get(service, 0) + 1

    def worker(self, index, kept):
        paths = self.args.paths.split(",")
        address, port = self.args.target
        conn, serial = None, None
        n = index
        while not self.stopping.is_set():
            path = paths[n % len(paths)]
            n += 1
            try:
                if conn is None:
                    conn, serial = connect(address, port, self.args.host, self.context)
                status, body = request(conn, self.args.host, path)
                self.record(path, serial, kept, status, body)
            except (OSError, ssl.SSLError, http.client.HTTPException) as e:
                self.record(path, serial, kept, error="%s: %s" % (type(e).__name__, e))
                if conn is not None:
                    conn.close()
                conn = None
            if not kept and conn is not None:
                conn.close()
                conn = None
            time.sleep(self.args.pause)
        if conn is not None:
            conn.close()

    def run(self):
        threads = [threading.Thread(target=self.worker, args=(i, False), daemon=True)
                   for i in range(self.args.fresh)]
        threads += [threading.Thread(target=self.worker, args=(i, True), daemon=True)
                    for i in range(self.args.kept)]
        started = time.monotonic()
        for t in threads:
            t.start()
        print("started", flush=True)
        for line in sys.stdin:
            name = line.strip()
            if name:
                with self.lock:
                    self.phases.append(Phase(name))
        self.stopping.set()
        for t in threads:
            t.join(timeout=10)
        print(json.dumps({"seconds": round(time.monotonic() - started, 1),
                          "phases": [p.summary() for p in self.phases]}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["get", "load"])
    p.add_argument("target", help="ADDRESS:PORT of the gateway")
    p.add_argument("path", nargs="?", default="/")
    p.add_argument("--host", required=True, help="the name sent as SNI and Host")
    p.add_argument("--ca", required=True, help="the CA the gateway's certificate must chain to")
    p.add_argument("--paths", default="/")
    p.add_argument("--fresh", type=int, default=2)
    p.add_argument("--kept", type=int, default=2)
    p.add_argument("--pause", type=float, default=0.01)
    args = p.parse_args()
    address, _, port = args.target.rpartition(":")
    args.target = (address, int(port))
    context = ssl.create_default_context(cafile=args.ca)  # chain and host name verified
    if args.mode == "get":
        try:
            conn, serial = connect(address, int(port), args.host, context)
            status, body = request(conn, args.host, args.path)
            conn.close()
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            print(json.dumps({"status": None, "error": "%s: %s" % (type(e).__name__, e)}))
            return 1
        print(json.dumps({"status": status, "serial": serial, "body": body}))
        return 0
    Load(args, context).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
