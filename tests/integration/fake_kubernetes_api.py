"""A fake Kubernetes API server for tests of Kubernetes service discovery (Services,
EndpointSlices and Pods) and of policy kept in Kubernetes, over HTTPS, answered in the shapes of
the API reference. It is never a stand-in for a real API server's behaviour beyond what is listed
here.

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
- Secrets are objects like the rest (the CA's signing material, --ca-secret), and so are
  ServiceAccounts and ConfigMaps (what the control plane writes to run a Gateway's proxy).
- Namespaces (cluster-scoped) and apps/v1 Deployments, StatefulSets and DaemonSets (with a status
  subresource) are objects
  like the rest: what `meshctl upgrade` reads and patches (labels, the pod template's restart
  annotation). Nothing acts on them: a test plays the Deployment controller.
- admissionregistration.k8s.io/v1 MutatingWebhookConfigurations (cluster-scoped): what
  `meshctl tag` writes, what it and `meshctl upgrade` list to find overlapping selectors, and
  what the control plane lists for the revision tags; nothing calls them.
- Policy kept in Kubernetes, as custom resources (RESOURCES): meshlet.io Services and
  TrafficPolicies, Gateway API HTTPRoutes, GRPCRoutes, Gateways, GatewayClasses and
  BackendTLSPolicies (v1, with status) and ReferenceGrants (v1beta1) are listed and watched like
  the kinds above; other meshlet.io kinds answer 404 (their CRDs are not installed).
- Enough of the API for kubectl (tested with 1.32) to work on every resource it serves:
  - Discovery: /version, /api (APIVersions), /apis (APIGroupList) and /api/v1, /apis/GROUP/
    VERSION (APIResourceList, with the plural/status subresources). kubectl asks for
    aggregated discovery (apidiscovery.k8s.io/v2) first; the legacy documents come back as
    plain application/json and it falls back to them. No OpenAPI documents (/openapi/v2 and
    v3 answer 404), so kubectl's client-side validation needs `--validate=false`, and the
    fieldValidation query parameter is not enforced.
  - Lists and watches of a namespace, with fieldSelector metadata.name / metadata.namespace
    (kubectl delete's wait) and spec.nodeName (a node agent's pods); GET of an object and of
    its status.
  - POST to a collection (409 if it exists; uid, creationTimestamp, generation 1 given, a status
    dropped where there is a status subresource), PUT and JSON merge PATCH (RFC 7386; other patch
    types get 415) of an object or of its status, DELETE. A metadata.resourceVersion in the body
    must be the current one, else 409. Writes to an object never change its status and writes to
    the status change nothing else, as with a status subresource; metadata.generation goes up
    only when something but metadata (and status) changed; a write changing nothing gets no new
    resourceVersion. Every change reaches watches as ADDED, MODIFIED or DELETED.
  - Events (events.k8s.io/v1) are recorded and listed, also at /api/v1 as the core Events the
    API server shows of them (`kubectl get events`).
- Evictions (policy/v1, POST .../pods/NAME/eviction): the pod is deleted (201) unless
  `refuse_evictions` holds a count for it ("NS/NAME"): then 429, as a PodDisruptionBudget
  refuses, while the count lasts; a uid precondition that does not match is 409. Every eviction
  that went through is in `evictions` ("NS/NAME").
- One coordination.k8s.io/v1 Lease per name: GET, POST (409 if it exists), PUT (409 unless
  metadata.resourceVersion is the current one).
- certificates.k8s.io/v1 CertificateSigningRequests (cluster-scoped) with their status and
  approval subresources: a write to /approval changes status.conditions only; a write to /status
  changes the rest of the status and keeps the Approved and Denied conditions as they were; a
  status.certificate is refused (422) unless the request is Approved and not Denied, and
  spec.username is the requester ("token:" and the bearer token's first 8 characters). Nothing
  approves or signs: a test plays the signer (csr_signer.py).
- Several bearer tokens may be accepted (one per control-plane replica, one for kubectl): every
  write records the token it came with.
- Anything else is 404.

As a program (`fake_kubernetes_api.py --address HOST:PORT --cert FILE --key FILE --token TEXT`)
it serves until its stdin closes, taking one JSON command per line: {"put": KIND, "object":
{...}} or {"delete": KIND, "namespace": NS, "name": NAME}; it prints "listening on
https://HOST:PORT" when ready (the port it got, for --address HOST:0).
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
import uuid

GATEWAY = "gateway.networking.k8s.io"


class Resource:
    """A resource the fake serves: `key` names it in FakeApiServer.objects, put() and delete()
    (the plural, or plural.group where two groups share a plural); `status`: it has a status
    subresource (the object's status is written there only, its spec never)."""

    def __init__(self, key, group, version, plural, kind, status=False, namespaced=True,
                 approval=False):
        self.key, self.group, self.version, self.plural = key, group, version, plural
        self.kind, self.status, self.namespaced = kind, status, namespaced
        # A CertificateSigningRequest's approval subresource (status.conditions only).
        self.approval = approval
        self.api_version = f"{group}/{version}" if group else version
        self.prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"


RESOURCES = [
    Resource("services", "", "v1", "services", "Service", status=True),
    Resource("pods", "", "v1", "pods", "Pod", status=True),
    Resource("secrets", "", "v1", "secrets", "Secret"),
    Resource("serviceaccounts", "", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("configmaps", "", "v1", "configmaps", "ConfigMap"),
    Resource("namespaces", "", "v1", "namespaces", "Namespace", status=True, namespaced=False),
    Resource("nodes", "", "v1", "nodes", "Node", status=True, namespaced=False),
    Resource("deployments", "apps", "v1", "deployments", "Deployment", status=True),
    Resource("statefulsets", "apps", "v1", "statefulsets", "StatefulSet", status=True),
    Resource("daemonsets", "apps", "v1", "daemonsets", "DaemonSet", status=True),
    Resource("endpointslices", "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    Resource("services.meshlet.io", "meshlet.io", "v1", "services", "Service", status=True),
    Resource("trafficpolicies", "meshlet.io", "v1", "trafficpolicies", "TrafficPolicy"),
    Resource("httproutes", GATEWAY, "v1", "httproutes", "HTTPRoute", status=True),
    Resource("grpcroutes", GATEWAY, "v1", "grpcroutes", "GRPCRoute", status=True),
    Resource("referencegrants", GATEWAY, "v1beta1", "referencegrants", "ReferenceGrant"),
    Resource("gateways", GATEWAY, "v1", "gateways", "Gateway", status=True),
    Resource("gatewayclasses", GATEWAY, "v1", "gatewayclasses", "GatewayClass", status=True,
             namespaced=False),
    Resource("backendtlspolicies", GATEWAY, "v1", "backendtlspolicies", "BackendTLSPolicy",
             status=True),
    Resource("mutatingwebhookconfigurations", "admissionregistration.k8s.io", "v1",
             "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", namespaced=False),
    Resource("certificatesigningrequests", "certificates.k8s.io", "v1",
             "certificatesigningrequests", "CertificateSigningRequest", status=True,
             namespaced=False, approval=True),
]
BY_KEY = {r.key: r for r in RESOURCES}
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
# The cluster-wide list and watch path of each resource -> its key.
KINDS = {f"{r.prefix}/{r.plural}": r.key for r in RESOURCES}
# Resources served for kubectl's sake besides those above: (group, version, plural, kind, verbs).
OTHER_RESOURCES = [("", "v1", "events", "Event", ["list"]),
                   ("events.k8s.io", "v1", "events", "Event", ["create", "list"]),
                   ("coordination.k8s.io", "v1", "leases", "Lease", ["create", "get", "update"])]
OBJECT_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
# /api/v1/..., /apis/GROUP/VERSION/..., with or without namespaces/NS, a name and a subresource.
RESOURCE_PATH = re.compile(r"^(?:/api/(?P<core>v1)|/apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                           r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)"
                           r"(?:/(?P<name>[^/]+)(?:/(?P<subresource>[^/]+))?)?$")
LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(?:/([^/]+))?$")
EVENTS = re.compile(r"^(?:/apis/events\.k8s\.io/v1|/api/v1)/namespaces/([^/]+)/events$")


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


class _QuietServer(http.server.ThreadingHTTPServer):
    """Says nothing when a client goes away mid-exchange (a control plane stopped at a test's
    end, a watch it cancelled): the standard server prints each such error's traceback, which
    buries real failures in the test logs. Every other error is printed as before."""

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeApiServer:
    def __init__(self, cert, token, address=("127.0.0.1", 0)):
        tokens = {token} if isinstance(token, str) else set(token)
        self.cond = threading.Condition()
        self.leases = {}        # (namespace, name) -> Lease
        self.events = []        # (token, Event)
        self.writes = []        # (token, method, path, body) of every write
        self.discovery_requests = []  # (path, Accept) of every discovery GET
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
        self.refuse_evictions = {}  # "NS/NAME" -> evictions still to refuse with 429
        self.evictions = []         # "NS/NAME" of the pods evicted
        # Set by stop(): open watches end, so that no handler thread is still writing to an SSL
        # socket while the interpreter exits (a daemon thread doing so can crash it).
        self.stopping = False
        self.watches = 0        # watch streams open
        server = self

        class Handler(JsonApiHandler):
            def token(self):
                given = self.headers.get("Authorization", "")
                return given[len("Bearer "):] if given[len("Bearer "):] in tokens else None

            def do_GET(self):
                self.handle_request("GET")

            def do_POST(self):
                self.handle_request("POST")

            def do_PUT(self):
                self.handle_request("PUT")

            def do_PATCH(self):
                self.handle_request("PATCH")

            def do_DELETE(self):
                self.handle_request("DELETE")

            def handle_request(self, method):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                who = self.token()
                if who is None:
                    return self.answer(401, status(401, "Unauthorized", "bad token"))
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if method == "GET":
                    return self.read(url.path, query)
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
                if method == "PATCH" and content_type != "application/merge-patch+json":
                    # The fake applies JSON merge patches only (what kubectl apply sends for
                    # custom resources); the API server refuses strategic merge patches of
                    # custom resources with this code too.
                    return self.answer(415, status(
                        415, "UnsupportedMediaType",
                        f"the fake API server takes application/merge-patch+json patches, "
                        f"not {content_type or 'no Content-Type'}"))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError as e:
                    return self.answer(400, status(400, "BadRequest", f"body is not JSON: {e}"))
                with server.cond:
                    server.writes.append((who, method, url.path, body))
                    self.answer(*server.write(who, method, url.path, body))

            def read(self, path, query):
                discovery = server.discovery(path)
                if discovery is not None:
                    with server.cond:
                        server.discovery_requests.append((path, self.headers.get("Accept", "")))
                    return self.answer(200, discovery)
                with server.cond:
                    lease = LEASES.match(path)
                    if lease:
                        found = server.leases.get((lease.group(1), lease.group(2)))
                        if found is None:
                            return self.answer(404, status(404, "NotFound", path))
                        return self.answer(200, found)
                    events = EVENTS.match(path)
                    if events:
                        return self.answer(200, server.event_list(path, events.group(1)))
                match = RESOURCE_PATH.match(path)
                resource = match and BY_PATH.get((match.group("group") or "",
                                                  match.group("core") or match.group("version"),
                                                  match.group("plural")))
                if resource is None:
                    return self.answer(404, status(404, "NotFound", path))
                if match.group("name"):
                    with server.cond:
                        found = server.objects[resource.key].get(
                            (match.group("namespace") or "", match.group("name")))
                    if found is None or not subresource_served(resource,
                                                               match.group("subresource")):
                        return self.answer(404, status(404, "NotFound", path))
                    return self.answer(200, found)
                kind = resource.key
                try:
                    where = selection(match.group("namespace"), query)
                except ValueError as e:
                    return self.answer(400, status(400, "BadRequest", str(e)))
                self.metadata_only = "as=PartialObjectMetadata" in self.headers.get("Accept", "")
                with server.cond:
                    server.requests.append((kind, query))
                    if self.metadata_only:
                        server.metadata_only_requests.append((kind, query))
                if query.get("watch") in ("true", "1"):
                    return self.watch(kind, query, where)
                if kind in server.fail_lists:
                    return self.answer(503, status(503, "ServiceUnavailable", "etcd is slow"))
                page = server.list_page(kind, query, where)
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

            def watch(self, kind, query, where=None):
                with server.cond:
                    server.watches += 1
                try:
                    return self.watch_stream(kind, query, where)
                finally:
                    with server.cond:
                        server.watches -= 1
                        server.cond.notify_all()

            def watch_stream(self, kind, query, where):
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
                    # Only the newest cluster-wide watch of a kind takes commands: an older one
                    # whose client already went (its own timeout) would swallow them, writing
                    # to nobody. A watch of a namespace or an object (kubectl's) takes none.
                    if where is None:
                        server.watch_generation[kind] += 1
                    generation = server.watch_generation[kind]
                    while (time.time() < deadline and generation == server.watch_generation[kind]
                           and not server.stopping):
                        for rv, k, type_, obj in server.history:
                            if k == kind and rv > sent:
                                if where is None or where(obj):
                                    self.chunk({"type": type_, "object": obj})
                                sent = rv
                        commands = server.commands[kind] if where is None else []
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
                                    "kind": BY_KEY[kind].kind,
                                    "apiVersion": BY_KEY[kind].api_version,
                                    "metadata": {"resourceVersion": str(server.rv)}}})
                        server.cond.wait(0.1)
                self.wfile.write(b"0\r\n\r\n")

        httpd = _QuietServer(address, Handler)
        httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        self.httpd = httpd
        self.address = "https://%s:%d" % httpd.server_address[:2]

    def discovery(self, path):
        """The legacy discovery document at `path` (APIVersions, APIGroupList, APIResourceList,
        version), or None. kubectl first asks for aggregated discovery
        (apidiscovery.k8s.io/v2) and falls back to these when the answer's Content-Type is
        plain application/json."""
        served = [(r.group, r.version, r.plural, r.kind, OBJECT_VERBS, r) for r in RESOURCES]
        served += [entry + (None,) for entry in OTHER_RESOURCES]
        if path == "/version":
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
                    "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "apiVersion": "v1", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": self.address[8:]}]}
        if path == "/apis":
            groups = {}
            for group, version, *_ in served:
                if group and version not in groups.setdefault(group, []):
                    groups[group].append(version)
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v}
                                             for v in versions],
                 "preferredVersion": {"groupVersion": f"{group}/{versions[0]}",
                                      "version": versions[0]}}
                for group, versions in sorted(groups.items())]}
        match = re.match(r"^(?:/api/(v1)|/apis/([^/]+)/([^/]+))$", path)
        if not match:
            return None
        group, version = match.group(2) or "", match.group(1) or match.group(3)
        listed = []
        for g, v, plural, kind, verbs, resource in served:
            if (g, v) != (group, version):
                continue
            namespaced = resource.namespaced if resource is not None else True
            listed.append({"name": plural, "singularName": kind.lower(),
                           "namespaced": namespaced, "kind": kind, "verbs": verbs})
            if resource is not None and resource.status:
                listed.append({"name": plural + "/status", "singularName": "",
                               "namespaced": namespaced, "kind": kind,
                               "verbs": ["get", "patch", "update"]})
            if resource is not None and resource.approval:
                listed.append({"name": plural + "/approval", "singularName": "",
                               "namespaced": namespaced, "kind": kind,
                               "verbs": ["get", "patch", "update"]})
        if not listed:
            return None
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": listed}

    def write(self, who, method, path, body):
        """(code, answer) of a write (the lock held)."""
        lease = LEASES.match(path)
        if lease and method in ("POST", "PUT"):
            return self.write_lease(method, lease, body)
        events = EVENTS.match(path)
        if events and path.startswith("/apis/") and method == "POST":
            return self.create_event(who, events.group(1), body)
        match = RESOURCE_PATH.match(path)
        resource = match and BY_PATH.get((match.group("group") or "",
                                          match.group("core") or match.group("version"),
                                          match.group("plural")))
        if resource is None or bool(match.group("namespace")) != resource.namespaced:
            return 404, status(404, "NotFound", path)
        namespace, name = match.group("namespace") or "", match.group("name")
        subresource = match.group("subresource")
        if resource.key == "pods" and subresource == "eviction" and method == "POST":
            return self.evict(namespace, name, body)
        if not subresource_served(resource, subresource):
            return 404, status(404, "NotFound", path)
        if name is None:
            if method != "POST":
                return 405, status(405, "MethodNotAllowed", f"{method} of a collection")
            if resource.approval:  # the API server fills in who asked
                body.setdefault("spec", {})["username"] = "token:" + who[:8]
            return self.create(resource, namespace, body)
        if method == "DELETE":
            return self.remove(resource, namespace, name)
        if method not in ("PUT", "PATCH"):
            return 405, status(405, "MethodNotAllowed", f"{method} of an object")
        return self.update(resource, namespace, name, body, method == "PATCH", subresource)

    def create(self, resource, namespace, body):
        """(code, answer) of a POST of `body` to `resource`'s collection in `namespace`."""
        if body.get("apiVersion") != resource.api_version or body.get("kind") != resource.kind:
            return 400, status(400, "BadRequest", f"the object is not a {resource.api_version} "
                                                  f"{resource.kind}")
        metadata = body.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        if not metadata.get("name"):
            return 422, status(422, "Invalid", "metadata.name: Required value")
        if metadata.setdefault("namespace", namespace) != namespace:
            return 400, status(400, "BadRequest", "the namespace of the provided object does "
                                                  "not match the namespace sent on the request")
        key = (namespace, metadata["name"])
        if key in self.objects[resource.key]:
            return 409, status(409, "AlreadyExists", f'{resource.plural} "{key[1]}" already '
                                                     f'exists')
        if not resource.namespaced:
            metadata.pop("namespace")
        for field in ("resourceVersion", "uid", "creationTimestamp", "generation"):
            metadata.pop(field, None)
        if resource.status:
            body.pop("status", None)  # written through the status subresource only
        metadata.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=now())
        self.store(resource, key, body, "ADDED")
        return 201, body

    def update(self, resource, namespace, name, body, patch, subresource=None):
        """(code, answer) of a PUT or merge PATCH of an object, of its status or of its approval
        (`subresource` "status" or "approval")."""
        current = self.objects[resource.key].get((namespace, name))
        if current is None:
            return 404, status(404, "NotFound", f'{resource.plural} "{name}" not found')
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            return 409, status(409, "Conflict", "the object has been modified; please apply "
                                                "your changes to the latest version and try again")
        given = merge_patch(current, body) if patch else body
        if not isinstance(given, dict) or not isinstance(given.get("metadata", {}), dict):
            return 400, status(400, "BadRequest", "the object is not a JSON object")
        if subresource == "approval":
            obj = copy.deepcopy(current)
            obj.setdefault("status", {})["conditions"] = (given.get("status") or {}).get(
                "conditions", [])
        elif subresource == "status" and resource.approval:
            obj = copy.deepcopy(current)
            decided = [c for c in (current.get("status") or {}).get("conditions", [])
                       if c.get("type") in ("Approved", "Denied")]
            obj["status"] = dict(given.get("status") or {})
            obj["status"]["conditions"] = decided + [
                c for c in obj["status"].get("conditions", [])
                if c.get("type") not in ("Approved", "Denied")]
            types = {c.get("type") for c in decided}
            if obj["status"].get("certificate") and types != {"Approved"}:
                return 422, status(422, "Invalid", "status.certificate: Forbidden: updates may "
                                                   "only set a certificate on an approved and "
                                                   "not denied request")
        elif subresource == "status":
            obj = copy.deepcopy(current)
            if "status" in given:
                obj["status"] = given["status"]
            else:
                obj.pop("status", None)
        else:
            obj = {k: v for k, v in given.items() if k != "status"}
            obj["apiVersion"], obj["kind"] = current["apiVersion"], current["kind"]
            if resource.status and "status" in current:
                obj["status"] = current["status"]
            elif not resource.status and "status" in given:
                obj["status"] = given["status"]
            metadata = dict(given.get("metadata") or {})
            for field in ("name", "namespace", "uid", "creationTimestamp", "generation",
                          "resourceVersion"):
                metadata.pop(field, None)
                if field in current["metadata"]:
                    metadata[field] = current["metadata"][field]
            obj["metadata"] = metadata
            # The generation counts changes of everything but metadata (and, with a status
            # subresource, status).
            if spec_of(obj, resource) != spec_of(current, resource):
                metadata["generation"] = current["metadata"].get("generation", 0) + 1
        if obj == current:
            return 200, current  # no change: no new resourceVersion, no event
        self.store(resource, (namespace, name), obj, "MODIFIED")
        return 200, obj

    def remove(self, resource, namespace, name):
        if (namespace, name) not in self.objects[resource.key]:
            return 404, status(404, "NotFound", f'{resource.plural} "{name}" not found')
        self.delete(resource.key, namespace, name)
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": name, "group": resource.group, "kind": resource.plural}}

    def evict(self, namespace, name, body):
        """(code, answer) of an Eviction of pod NAMESPACE/NAME (the lock held)."""
        key = f"{namespace}/{name}"
        pod = self.objects["pods"].get((namespace, name))
        if pod is None:
            return 404, status(404, "NotFound", f'pods "{name}" not found')
        if self.refuse_evictions.get(key, 0) > 0:
            self.refuse_evictions[key] -= 1
            return 429, status(429, "TooManyRequests", "Cannot evict pod as it would violate the "
                                                       "pod's disruption budget.")
        uid = ((body.get("deleteOptions") or {}).get("preconditions") or {}).get("uid")
        if uid is not None and uid != pod["metadata"].get("uid"):
            return 409, status(409, "Conflict", f"the uid precondition {uid} does not match")
        self.delete("pods", namespace, name)
        self.evictions.append(key)
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}

    def store(self, resource, key, obj, type_):
        """Keeps `obj` at the next resourceVersion and tells the watches (the lock held)."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[resource.key][key] = obj
        self.history.append((self.rv, resource.key, type_, obj))
        self.cond.notify_all()

    def create_event(self, who, namespace, body):
        """(code, answer) of an events.k8s.io/v1 Event's POST (the lock held)."""
        metadata = body.setdefault("metadata", {})
        if not metadata.get("name"):
            metadata["name"] = metadata.get("generateName", "event.") + uuid.uuid4().hex[:8]
        metadata["namespace"] = namespace
        self.rv += 1
        metadata.update(resourceVersion=str(self.rv), uid=str(uuid.uuid4()),
                        creationTimestamp=now())
        self.events.append((who, body))
        return 201, body

    def event_list(self, path, namespace):
        """The Events of `namespace` as events.k8s.io/v1 lists them or, at /api/v1, as the
        core v1 Events the API server shows of the same objects (the lock held)."""
        items = [copy.deepcopy(e) for _, e in self.events
                 if e.get("metadata", {}).get("namespace") == namespace]
        if path.startswith("/apis/"):
            return {"kind": "EventList", "apiVersion": "events.k8s.io/v1",
                    "metadata": {"resourceVersion": str(self.rv)}, "items": items}
        core = [{"kind": "Event", "apiVersion": "v1", "metadata": e["metadata"],
                 "involvedObject": e.get("regarding", {}), "reason": e.get("reason", ""),
                 "message": e.get("note", ""), "type": e.get("type", ""),
                 "action": e.get("action", ""), "eventTime": e.get("eventTime"),
                 "reportingComponent": e.get("reportingController", ""),
                 "reportingInstance": e.get("reportingInstance", ""),
                 "source": {"component": e.get("reportingController", "")}} for e in items]
        return {"kind": "EventList", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.rv)}, "items": core}

    def list_page(self, kind, query, where=None):
        limit = int(query.get("limit", "500") or "500")
        with self.cond:
            if "continue" in query:
                token = json.loads(base64.b64decode(query["continue"]))
                items, rv = self.pages[token["id"]], token["rv"]
                start = token["start"]
            else:
                items = [copy.deepcopy(o) for _, o in sorted(self.objects[kind].items())
                         if where is None or where(o)]
                rv, start = self.rv, 0
                self.pages[len(self.pages)] = items
                token_id = len(self.pages) - 1
            token_id = token["id"] if "continue" in query else token_id
        metadata = {"resourceVersion": str(rv)}
        if start + limit < len(items):
            # base64 with padding: '=' must travel percent-encoded.
            metadata["continue"] = base64.b64encode(json.dumps(
                {"id": token_id, "start": start + limit, "rv": rv, "pad": "x"}).encode()).decode()
        resource = BY_KEY[kind]
        return {"kind": resource.kind + "List", "apiVersion": resource.api_version,
                "metadata": metadata, "items": items[start:start + limit]}

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

    def put(self, kind, obj, announce=True):
        """Creates or replaces `obj` at the next resourceVersion; `announce`: watches see it."""
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            type_ = "MODIFIED" if key in self.objects[kind] else "ADDED"
            self.objects[kind][key] = obj
            if announce:
                self.history.append((self.rv, kind, type_, obj))
            self.cond.notify_all()
            return self.rv

    def delete(self, kind, namespace, name):
        """Deletes the object; False (nothing changed) when there is none."""
        with self.cond:
            if (namespace, name) not in self.objects[kind]:
                return False
            self.rv += 1
            obj = copy.deepcopy(self.objects[kind].pop((namespace, name)))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append((self.rv, kind, "DELETED", obj))
            self.cond.notify_all()
            return True

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
        self.stopping = True
        # Each watch sees the flag at its next wake-up. Bounded both ways: a watch holds the lock
        # while it writes, and a write to a client that stopped reading may never return.
        if self.cond.acquire(timeout=5):
            try:
                self.cond.notify_all()
                self.cond.wait_for(lambda: self.watches == 0, timeout=5)
            finally:
                self.cond.release()
        self.httpd.shutdown()


def subresource_served(resource, subresource):
    """Whether `resource` has `subresource` (None: the object itself)."""
    return (subresource is None or (subresource == "status" and resource.status)
            or (subresource == "approval" and resource.approval))


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def merge_patch(target, patch):
    """`target` with the JSON merge patch (RFC 7386) `patch` applied."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def spec_of(obj, resource):
    """What an object's generation counts changes of."""
    return {k: v for k, v in obj.items()
            if k not in ("metadata", "apiVersion", "kind") and not (k == "status" and
                                                                    resource.status)}


def selection(namespace, query):
    """A predicate on objects for a list or watch in `namespace` (None: all) with the query's
    fieldSelector (metadata.name and metadata.namespace, `=` or `==`) and labelSelector
    (equality-based: `k=v`, `k==v`, `k!=v`, `k`, `!k`), or None when it takes everything.
    ValueError names a selector the fake cannot apply."""
    labels = []
    for term in filter(None, query.get("labelSelector", "").split(",")):
        term = term.strip()
        if " in " in term or " notin " in term or "(" in term:
            raise ValueError(f"label selector {term!r}: the fake takes equality-based terms only")
        if "!=" in term:
            key, value = term.split("!=", 1)
            labels.append(lambda l, k=key, v=value: l.get(k) != v)
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            labels.append(lambda l, k=key, v=value: l.get(k) == v)
        elif term.startswith("!"):
            labels.append(lambda l, k=term[1:]: k not in l)
        else:
            labels.append(lambda l, k=term: k in l)
    fields = _field_selection(namespace, query)
    if not labels:
        return fields
    return lambda obj: (fields is None or fields(obj)) and all(
        test(obj.get("metadata", {}).get("labels") or {}) for test in labels)


def _field_selection(namespace, query):
    wanted = {}
    if namespace:
        wanted["metadata.namespace"] = namespace
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        field, _, value = term.replace("==", "=").partition("=")
        if field not in ("metadata.name", "metadata.namespace", "spec.nodeName") or not _:
            raise ValueError(f"field selector {term!r}: the fake selects by metadata.name, "
                             f"metadata.namespace and spec.nodeName equality only")
        wanted[field] = value
    if not wanted:
        return None

    def field(obj, path):
        section, _, name = path.partition(".")
        return (obj.get(section) or {}).get(name, "")
    return lambda obj: all(field(obj, k) == v for k, v in wanted.items())


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
    # The address says which port when --address asked for port 0.
    print("listening on %s" % fake.address, flush=True)
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
