"""A fake Kubernetes API server for tests of Kubernetes service discovery: Services,
EndpointSlices and Pods over HTTPS, answered in the shapes of the API reference.

- Lists: `limit` and `continue` (a base64 token with padding, so it must travel
  percent-encoded), metadata.resourceVersion.
- Watches: a chunked stream of one JSON event per line (each event split over two chunks),
  replaying the history after the watch's resourceVersion, then new changes, until
  timeoutSeconds; a resourceVersion older than the history (compact()) gets the 410 ERROR event
  the API server sends. Commands per kind: "drop" (cut the stream mid-answer), "gone" (an ERROR
  410 event), "bookmark" (a BOOKMARK at the current resourceVersion), "malformed" (events of odd
  shapes, then a line that is not JSON).
- Every change gets the next resourceVersion (etcd's revision); the bearer token is checked.
- Accept `as=PartialObjectMetadataList` / `as=PartialObjectMetadata` (meta.k8s.io/v1): lists
  and watch events carry each object's metadata only, as the API server sends them.
- Namespaces list empty; anything else is 404.
- Policy kept in Kubernetes: meshlet.io TrafficPolicies and Gateway API HTTPRoutes are listed and
  watched like the kinds above (other meshlet.io and Gateway API kinds answer 404: their CRDs are
  not installed); a route is read by name, and its status subresource takes a JSON merge patch
  (a metadata.resourceVersion in the patch must be the current one, else 409; the status is
  replaced as the patch says, the object gets a new resourceVersion and watches a MODIFIED
  event). Events (events.k8s.io/v1) are recorded. One coordination.k8s.io/v1 Lease per name:
  GET, POST (409 if it exists), PUT (409 unless metadata.resourceVersion is the current one).
  Several bearer tokens may be accepted (one per control-plane replica): every write records
  the token it came with.

As a program (`fake_kubernetes_api.py --address HOST:PORT --cert FILE --key FILE --token TEXT`)
it serves until its stdin closes, taking one JSON command per line: {"put": KIND, "object":
{...}} or {"delete": KIND, "namespace": NS, "name": NAME}; it prints "listening" when ready.
"""

import argparse
import base64
import copy
import http.server
import json
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse

KINDS = {"/api/v1/services": "services",
         "/apis/discovery.k8s.io/v1/endpointslices": "endpointslices",
         "/api/v1/pods": "pods",
         "/apis/meshlet.io/v1/trafficpolicies": "trafficpolicies",
         "/apis/gateway.networking.k8s.io/v1/httproutes": "httproutes",
         "/apis/gateway.networking.k8s.io/v1/grpcroutes": "grpcroutes"}
LIST_KIND = {"services": "ServiceList", "endpointslices": "EndpointSliceList", "pods": "PodList",
             "trafficpolicies": "TrafficPolicyList", "httproutes": "HTTPRouteList",
             "grpcroutes": "GRPCRouteList"}
ROUTE = re.compile(r"^/apis/gateway\.networking\.k8s\.io/v1/namespaces/([^/]+)/"
                   r"(?P<resource>httproutes|grpcroutes)/([^/]+)(/status)?$")
LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(?:/([^/]+))?$")
EVENTS = re.compile(r"^/apis/events\.k8s\.io/v1/namespaces/([^/]+)/events$")


class JsonApiHandler(http.server.BaseHTTPRequestHandler):
    """Base of the fake API servers' handlers: HTTP/1.1, quiet, and answer(code, obj) sends
    `obj` as a JSON body."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeApiServer:
    def __init__(self, cert, token, address=("127.0.0.1", 0)):
        tokens = {token} if isinstance(token, str) else set(token)
        self.cond = threading.Condition()
        self.leases = {}        # (namespace, name) -> Lease
        self.events = []        # (token, Event)
        self.writes = []        # (token, method, path, body) of every write
        self.rv = 100
        self.objects = {kind: {} for kind in KINDS.values()}
        self.history = []       # (rv, kind, type, object)
        self.compacted = 0      # watches from an older resourceVersion get 410
        self.fail_lists = set()  # kinds whose lists answer 503
        self.requests = []      # (kind, query dict) of every list and watch
        self.metadata_only_requests = []  # those that asked for metadata only
        self.commands = {kind: [] for kind in KINDS.values()}  # "drop", "gone", "bookmark"
        self.watch_generation = {kind: 0 for kind in KINDS.values()}  # the newest watch, per kind
        self.pages = {}
        server = self

        class Handler(JsonApiHandler):
            def token(self):
                given = self.headers.get("Authorization", "")
                return given[len("Bearer "):] if given[len("Bearer "):] in tokens else None

            def body(self):
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))
                                  or b"{}")

            def do_POST(self):
                self.write("POST")

            def do_PUT(self):
                self.write("PUT")

            def do_PATCH(self):
                self.write("PATCH")

            def write(self, method):
                who = self.token()
                if who is None:
                    return self.answer(401, status(401, "Unauthorized", "bad token"))
                path = urllib.parse.urlsplit(self.path).path
                body = self.body()
                with server.cond:
                    server.writes.append((who, method, path, body))
                    lease = LEASES.match(path)
                    if lease:
                        return self.answer(*server.write_lease(method, lease, body))
                    route = ROUTE.match(path)
                    if route and route.group(4) and method == "PATCH":
                        return self.answer(*server.patch_status(route, body))
                    if EVENTS.match(path) and method == "POST":
                        server.events.append((who, body))
                        return self.answer(201, body)
                self.answer(404, status(404, "NotFound", path))

            def do_GET(self):
                if self.token() is None:
                    return self.answer(401, status(401, "Unauthorized", "bad token"))
                url = urllib.parse.urlsplit(self.path)
                with server.cond:
                    lease = LEASES.match(url.path)
                    if lease:
                        found = server.leases.get((lease.group(1), lease.group(2)))
                        if found is None:
                            return self.answer(404, status(404, "NotFound", url.path))
                        return self.answer(200, found)
                    route = ROUTE.match(url.path)
                    if route:
                        found = server.objects[route.group("resource")].get(
                            (route.group(1), route.group(3)))
                        if found is None:
                            return self.answer(404, status(404, "NotFound", url.path))
                        return self.answer(200, found)
                kind = KINDS.get(url.path)
                if url.path == "/api/v1/namespaces":
                    return self.answer(200, {"kind": "NamespaceList", "apiVersion": "v1",
                                             "metadata": {"resourceVersion": "1"}, "items": []})
                if kind is None:
                    return self.answer(404, status(404, "NotFound", url.path))
                query = dict(urllib.parse.parse_qsl(url.query))
                self.metadata_only = "as=PartialObjectMetadata" in self.headers.get("Accept", "")
                with server.cond:
                    server.requests.append((kind, query))
                    if self.metadata_only:
                        server.metadata_only_requests.append((kind, query))
                if query.get("watch") == "true":
                    return self.watch(kind, query)
                if kind in server.fail_lists:
                    return self.answer(503, status(503, "ServiceUnavailable", "etcd is slow"))
                page = server.list_page(kind, query)
                if self.metadata_only:
                    page = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                            "metadata": page["metadata"],
                            "items": [metadata_only(o) for o in page["items"]]}
                self.answer(200, page)

            def chunk(self, obj):
                if self.metadata_only and obj.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    obj = {"type": obj["type"], "object": metadata_only(obj["object"])}
                # One event in two chunks, sent apart: lines do not follow chunk boundaries.
                data = json.dumps(obj).encode() + b"\n"
                for piece in (data[:len(data) // 2], data[len(data) // 2:]):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()

            def chunk_raw(self, data):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def watch(self, kind, query):
                since = int(query["resourceVersion"])
                deadline = time.time() + int(query.get("timeoutSeconds", "60"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with server.cond:
                    if since < server.compacted:
                        self.chunk({"type": "ERROR", "object": status(
                            410, "Expired", f"too old resource version: {since} "
                                            f"({server.compacted})")})
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    sent = since
                    # Only the newest watch of a kind takes commands: an older one whose client
                    # already went (its own timeout) would swallow them, writing to nobody.
                    server.watch_generation[kind] += 1
                    generation = server.watch_generation[kind]
                    while time.time() < deadline and generation == server.watch_generation[kind]:
                        for rv, k, type_, obj in server.history:
                            if k == kind and rv > sent:
                                self.chunk({"type": type_, "object": obj})
                                sent = rv
                        commands = server.commands[kind]
                        while commands:
                            command = commands.pop(0)
                            if command == "drop":
                                # Cut mid-stream: no last chunk.
                                self.connection.shutdown(socket.SHUT_RDWR)
                                return
                            if command == "gone":
                                self.chunk({"type": "ERROR", "object": status(
                                    410, "Expired", "too old resource version")})
                                self.wfile.write(b"0\r\n\r\n")
                                return
                            if command == "malformed":
                                # Events of odd shapes, then a line that is not JSON at all.
                                for odd in ({"type": "ADDED", "object": {"metadata": "x"}},
                                            {"type": "MODIFIED", "object": {}},
                                            {"type": "ADDED", "object": {
                                                "metadata": {"name": "odd", "namespace": "shop",
                                                             "labels": [1, 2]},
                                                "spec": "nonsense", "ports": 7,
                                                "endpoints": [1, {"addresses": "x"}]}},
                                            {"type": "DELETED", "object": {"metadata": {}}},
                                            {"type": "DELETED", "object": {"metadata": {
                                                "name": "odd", "namespace": "shop"}}}):
                                    self.chunk(odd)
                                self.chunk_raw(b"not json {\n")
                                continue
                            if command == "bookmark" and query.get("allowWatchBookmarks"):
                                self.chunk({"type": "BOOKMARK", "object": {
                                    "kind": kind_of(kind), "apiVersion": "v1",
                                    "metadata": {"resourceVersion": str(server.rv)}}})
                        server.cond.wait(0.1)
                self.wfile.write(b"0\r\n\r\n")

        httpd = http.server.ThreadingHTTPServer(address, Handler)
        httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        self.httpd = httpd
        self.address = "https://%s:%d" % httpd.server_address[:2]

    def list_page(self, kind, query):
        limit = int(query.get("limit", "500"))
        with self.cond:
            if "continue" in query:
                token = json.loads(base64.b64decode(query["continue"]))
                items, rv = self.pages[token["id"]], token["rv"]
                start = token["start"]
            else:
                items = [copy.deepcopy(o) for _, o in sorted(self.objects[kind].items())]
                rv, start = self.rv, 0
                self.pages[len(self.pages)] = items
                token_id = len(self.pages) - 1
            token_id = token["id"] if "continue" in query else token_id
        metadata = {"resourceVersion": str(rv)}
        if start + limit < len(items):
            # base64 with padding: '=' must travel percent-encoded.
            metadata["continue"] = base64.b64encode(json.dumps(
                {"id": token_id, "start": start + limit, "rv": rv, "pad": "x"}).encode()).decode()
        return {"kind": LIST_KIND[kind], "apiVersion": "v1", "metadata": metadata,
                "items": items[start:start + limit]}

    def write_lease(self, method, match, body):
        """(code, answer) of a Lease write (the lock held)."""
        namespace = match.group(1)
        name = match.group(2) or body["metadata"]["name"]
        current = self.leases.get((namespace, name))
        if method == "POST" and current is not None:
            return 409, status(409, "AlreadyExists", name)
        if method == "PUT":
            if current is None:
                return 404, status(404, "NotFound", name)
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return 409, status(409, "Conflict", "the object has been modified")
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.leases[(namespace, name)] = body
        return (201 if method == "POST" else 200), body

    def lease_holder(self, namespace, name):
        with self.cond:
            lease = self.leases.get((namespace, name))
            return lease["spec"].get("holderIdentity") if lease else None

    def patch_status(self, match, patch):
        """(code, answer) of a merge patch of a route's status (the lock held)."""
        resource = match.group("resource")
        key = (match.group(1), match.group(3))
        current = self.objects[resource].get(key)
        if current is None:
            return 404, status(404, "NotFound", key[1])
        wanted = patch.get("metadata", {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            return 409, status(409, "Conflict", "the object has been modified")
        obj = copy.deepcopy(current)
        merged = dict(obj.get("status", {}))
        merged.update(patch.get("status", {}))
        obj["status"] = merged
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[resource][key] = obj
        self.history.append((self.rv, resource, "MODIFIED", obj))
        self.cond.notify_all()
        return 200, obj

    def put(self, kind, obj, announce=True):
        """Creates or replaces `obj` at the next resourceVersion; `announce`: watches see it."""
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            type_ = "MODIFIED" if key in self.objects[kind] else "ADDED"
            self.objects[kind][key] = obj
            if announce:
                self.history.append((self.rv, kind, type_, obj))
            self.cond.notify_all()
            return self.rv

    def delete(self, kind, namespace, name):
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(self.objects[kind].pop((namespace, name)))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append((self.rv, kind, "DELETED", obj))
            self.cond.notify_all()

    def command(self, kind, command):
        with self.cond:
            self.commands[kind].append(command)
            self.cond.notify_all()

    def compact(self):
        with self.cond:
            self.compacted = self.rv
            self.history = []

    def last_rv(self, kind):
        """The resourceVersion of the last change of `kind` a watch could see."""
        with self.cond:
            return max(rv for rv, k, _, _ in self.history if k == kind)

    def seen(self, kind, watch):
        with self.cond:
            return [q for k, q in self.requests if k == kind and (q.get("watch") == "true") == watch]

    def stop(self):
        self.httpd.shutdown()


def kind_of(kind):
    return {"services": "Service", "endpointslices": "EndpointSlice", "pods": "Pod",
            "trafficpolicies": "TrafficPolicy", "httproutes": "HTTPRoute",
            "grpcroutes": "GRPCRoute"}[kind]


def metadata_only(obj):
    """`obj` as a PartialObjectMetadata."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--token", required=True)
    args = p.parse_args()
    host, port = args.address.rsplit(":", 1)
    fake = FakeApiServer((args.cert, args.key), args.token, (host, int(port)))
    print("listening", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if "put" in command:
            fake.put(command["put"], command["object"])
        elif "delete" in command:
            fake.delete(command["delete"], command["namespace"], command["name"])
    fake.stop()


if __name__ == "__main__":
    main()
