"""The Gateway profile's extended HTTP cases and its GRPC profile, for gateway_conformance_test.py.

The upstream cases (gateway-api conformance/tests, GATEWAY-HTTP extended and GATEWAY-GRPC),
written down as facts and run with the test's own layout: the gateway pod serving Gateway
same-namespace (one HTTP listener on port 80), requests from the kube-apiserver pod (outside the
mesh). Where an upstream case names a backend this layout does not have (infra-backend-v3), the
case says what stands in for it. gateway_conformance_test.py calls register() with itself once
its own cases are defined: the cases here are added to its Gateway profile, the GRPC profile to
its report, and NOT_SUPPORTED (the upstream cases of the profiles' features meshlet does not have,
with why) to the report's skipped tests.
"""

import json
import os
import time
import uuid as uuid_lib

t = None  # gateway_conformance_test, set by register()

GATEWAY_GRPC = "GATEWAY-GRPC"
GRPC_ECHO = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/"
# Requests a percentage mirror case sends per rule, and how far (a fraction of the expected count)
# the mirrored count may be from the rule's percentage: upstream's figures.
MIRROR_REQUESTS = 500
MIRROR_TOLERANCE = 0.15


# --- helpers --------------------------------------------------------------------------------------

def gateway_ip(m):
    return m.cluster.pods[t.GATEWAY_POD]["ip"]


def grpc_route(name, rules):
    doc = t.gateway_route(name, rules)
    doc["kind"] = "GRPCRoute"
    return doc


def accepted(m, doc):
    """Until `doc`'s entry for the Gateway (written by its controller) is Accepted and ResolvedRefs
    at the route's generation."""
    def ok():
        obj = m.route_object(doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"])
        for p in (obj or {}).get("status", {}).get("parents", []):
            if p.get("parentRef", {}).get("name") != t.GATEWAY_NAME or \
                    p.get("controllerName") != t.GATEWAY_CONTROLLER:
                continue
            conds = {x["type"]: x for x in p.get("conditions", [])}
            gen = obj["metadata"].get("generation")
            if all(conds.get(k, {}).get("status") == "True" and
                   conds[k].get("observedGeneration") == gen for k in ("Accepted", "ResolvedRefs")):
                return "%s Accepted and ResolvedRefs" % doc["metadata"]["name"]
        return None
    return m.run.wait_until(ok, t.EVENTUAL_S, "%s accepted by the Gateway" % (
        doc["metadata"]["name"]), lambda: m.describe_status(doc))


class GatewayGrpc:
    """ThroughGateway that also sends the case's gRPC calls to the gateway's listener, from the
    gateway's client (for the mesh's GRPCRoute cases whose Gateway twins are the same)."""

    def __init__(self, m):
        self.through = t.ThroughGateway(m)
        self.m = m

    def __getattr__(self, name):
        return getattr(self.through, name)

    def grpc(self, client, calls):
        moved = []
        for c in calls:
            c = dict(c, ip=gateway_ip(self.m), port=80)
            moved.append(c)
        return self.m.grpc(t.GATEWAY_CLIENT, moved)


def on_gateway_grpc(mesh_case):
    return lambda m: mesh_case(GatewayGrpc(m))


def gateway_grpc_call(method, metadata=None):
    return {"ip": None, "port": 80, "authority": "echo", "method": GRPC_ECHO + method,
            "metadata": dict(metadata or {})}


def method_match(name):
    return {"method": {"service": GRPC_ECHO.strip("/"), "method": name}}


def expect_grpc(m, calls):
    """`calls`: (method, metadata, expected[, authority[, metadata the backend must see]]) with
    expected a backend's service name or a gRPC code; sent through the gateway until every answer
    is as expected CONSISTENT_ROUNDS rounds in a row."""
    started = time.monotonic()
    streak = 0
    while True:
        sent = []
        for call in calls:
            one = dict(gateway_grpc_call(call[0], call[1]), ip=gateway_ip(m))
            if len(call) > 3:
                one["authority"] = call[3]
            sent.append(one)
        answers = m.grpc(t.GATEWAY_CLIENT, sent)
        problems = []
        for call, one, a in zip(calls, sent, answers):
            method, md, want = call[:3]
            got = a["body"].get("service") if a["code"] == "OK" else a["code"]
            if got != want:
                problems.append("%s %s (authority %s): %s, expected %s" % (
                    method, md, one["authority"], got, want))
                continue
            seen = a.get("body", {}).get("metadata", {}) if a["code"] == "OK" else {}
            for k, v in (call[4] if len(call) > 4 else {}).items():
                if ",".join(seen.get(k, [])) != (v or ""):
                    problems.append("%s (authority %s): the backend got %s %r, expected %r" % (
                        method, one["authority"], k, seen.get(k), v))
        streak = 0 if problems else streak + 1
        if streak >= t.CONSISTENT_ROUNDS:
            return "%d gRPC calls through the gateway as expected, %d rounds in a row (%.1f s)" % (
                len(calls), t.CONSISTENT_ROUNDS, time.monotonic() - started)
        if time.monotonic() - started > t.EVENTUAL_S:
            raise t.Failed("after %d s: %s" % (t.EVENTUAL_S, "; ".join(problems[:4])))
        time.sleep(0.3)


def echo_answers(m, path, count, headers=None):
    """The echo bodies (None for any other answer) of `count` GETs of `path` through the
    gateway."""
    answers = m.agent(t.GATEWAY_CLIENT, "http", [
        {"ip": gateway_ip(m), "port": 80, "host": "echo", "path": path,
         "headers": dict(headers or {}), "repeat": count}])[0]
    return t.echo_bodies(answers)


def logged_requests(m, pod, path):
    """How many requests for exactly `path` the echo app of `pod` logged (TESTAPP_LOG_REQUESTS:
    "GET /path 200 ..." per request)."""
    text = m.run.logs(m.cluster.app(pod))
    needle = " %s " % path
    return sum(1 for line in text.splitlines() if needle in line)


# --- GATEWAY-HTTP extended ------------------------------------------------------------------------

def method_matching(m):
    """HTTPRouteMethodMatching. Upstream's infra-backend-v3 is echo-v2 here with a request header
    x-rule: v3 set by its rules (RequestHeaderModifier), so that the rule that matched is still
    told from the v2 rules'."""
    def r(name, *matches):
        filters = None
        if name == "v3":
            name, filters = "echo-v2", [t.header_modifier(set=[("x-rule", "v3")])]
        return t.rule([t.backend(name)], matches=list(matches), filters=filters)
    v1, v2 = "echo-v1", "echo-v2"
    route = t.gateway_route("method-matching", [
        r(v1, {"method": "POST"}), r(v2, {"method": "GET"}),
        r(v1, t.prefix("/path1", method="GET")),
        r(v2, dict(t.headers_match(version="one"), method="PUT")),
        r("v3", t.prefix("/path2", method="POST", headers=[{"name": "version", "value": "two"}])),
        r(v1, t.prefix("/path3", method="PATCH"),
          t.prefix("/path4", method="DELETE", headers=[{"name": "version", "value": "three"}])),
        r(v1, t.prefix("/path5")), r(v2, {"method": "PATCH"}),
        r("v3", t.headers_match(version="four")),
    ])

    def q(path, method, backend=None, headers=None, status=200, v3=False):
        if backend is None:
            return t.req(path, method=method, headers=headers, status=status)
        if v3:
            return t.req(path, method=method, headers=headers, backend=backend,
                         req_headers={"x-rule": "v3"})
        return t.req(path, method=method, headers=headers, backend=backend,
                     absent_req_headers=["x-rule"])

    def body():
        return "%s; %s" % (accepted(m, route), t.gateway_expect(m, [
            q("/", "POST", v1), q("/", "GET", v2), q("/", "HEAD", status=404),
            q("/path1", "GET", v1), q("/", "PUT", v2, {"version": "one"}),
            q("/path2", "POST", v2, {"version": "two"}, v3=True),
            q("/path3", "PATCH", v1), q("/path4", "DELETE", v1, {"version": "three"}),
            q("/", "PUT", status=404), q("/path4", "DELETE", status=404),
            # Precedence: a path match over a method match, a method match over header matches.
            q("/path5", "PATCH", v1), q("/", "PATCH", v2, {"version": "four"}),
        ]))
    return m.with_routes([route], body)


def rewrite_host(m):
    """HTTPRouteRewriteHost: URLRewrite's hostname replaces the Host the backend sees."""
    modify = t.header_modifier(set=[("X-Header-Set", "set-overwrites-values")],
                               add=[("X-Header-Add", "header-val-1"),
                                    ("X-Header-Add-Append", "header-val-2")],
                               remove=["X-Header-Remove"])

    def host_rewrite(hostname):
        return {"type": "URLRewrite", "urlRewrite": {"hostname": hostname}}
    route = t.gateway_route("rewrite-host", [
        t.rule([t.backend("echo-v1")], matches=[t.prefix("/one")],
               filters=[host_rewrite("one.example.org")]),
        t.rule([t.backend("echo-v2")], filters=[host_rewrite("example.org")]),
        t.rule([t.backend("echo-v2")], matches=[t.prefix("/rewrite-host-and-modify-headers")],
               filters=[host_rewrite("test.example.org"), modify]),
    ], hostnames=["rewrite.example"])
    sent = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1"}
    got = {"X-Header-Add": "header-val-1", "X-Header-Add-Append": "append-val-1,header-val-2",
           "X-Header-Set": "set-overwrites-values"}
    host = "rewrite.example"
    return m.with_routes([route], lambda: "%s; %s" % (accepted(m, route), t.gateway_expect(m, [
        t.req("/one", host=host, to="x", backend="echo-v1", req_host="one.example.org",
              req_path="/one"),
        t.req("/two", host=host, to="x", backend="echo-v2", req_host="example.org",
              req_path="/two"),
        t.req("/rewrite-host-and-modify-headers", host=host, to="x", headers=sent,
              backend="echo-v2", req_host="test.example.org", req_headers=got,
              absent_req_headers=["X-Header-Remove"]),
    ])))


def response_header_modifier(m):
    """HTTPRouteResponseHeaderModifier: the echo answers with the headers a request asks of it
    (x-echo-set-header, as upstream's echo), the route's ResponseHeaderModifier changes them."""
    mod = t.header_modifier

    def r(path, *filters):
        return t.rule([t.backend("echo-v1")], matches=[t.prefix(path)], filters=list(filters))
    route = t.gateway_route("response-header-modifier", [
        r("/set", mod("ResponseHeaderModifier", set=[("X-Header-Set", "set-overwrites-values")])),
        r("/add", mod("ResponseHeaderModifier", add=[("X-Header-Add", "add-appends-values")])),
        r("/remove", mod("ResponseHeaderModifier", remove=["X-Header-Remove"])),
        r("/multiple", mod("ResponseHeaderModifier",
                           set=[("X-Header-Set-1", "header-set-1"),
                                ("X-Header-Set-2", "header-set-2")],
                           add=[("X-Header-Add-1", "header-add-1"),
                                ("X-Header-Add-2", "header-add-2"),
                                ("X-Header-Add-3", "header-add-3")],
                           remove=["X-Header-Remove-1", "X-Header-Remove-2"])),
        r("/case-insensitivity", mod("ResponseHeaderModifier", set=[("X-Header-Set", "header-set")],
                                     add=[("X-Header-Add", "header-add"),
                                          ("x-lowercase-add", "lowercase-add"),
                                          ("x-Mixedcase-ADD-1", "mixedcase-add-1"),
                                          ("X-mixeDcase-add-2", "mixedcase-add-2"),
                                          ("X-UPPERCASE-ADD", "uppercase-add")],
                                     remove=["X-Header-Remove"])),
        r("/response-and-request-header-modifiers",
          mod("ResponseHeaderModifier", set=[("X-Header-Set-1", "header-set-1"),
                                             ("X-Header-Set-2", "header-set-2")],
              add=[("X-Header-Add-1", "header-add-1"), ("X-Header-Add-2", "header-add-2")],
              remove=["X-Header-Remove-1", "X-Header-Remove-2"]),
          mirror_modify()),
    ])

    def q(path, backend_sets, want=None, absent=(), headers=None, **more):
        sent = dict(headers or {})
        sent["X-Echo-Set-Header"] = ",".join("%s:%s" % kv for kv in backend_sets.items())
        return t.req(path, headers=sent, backend="echo-v1", resp_headers=want,
                     absent_resp_headers=absent, **more)
    other = {"Some-Other-Header": "val"}
    requests = [
        q("/set", other, dict(other, **{"X-Header-Set": "set-overwrites-values"})),
        q("/set", dict(other, **{"X-Header-Set": "some-other-value"}),
          dict(other, **{"X-Header-Set": "set-overwrites-values"})),
        q("/add", other, dict(other, **{"X-Header-Add": "add-appends-values"})),
        q("/add", dict(other, **{"X-Header-Add": "some-other-value"}),
          dict(other, **{"X-Header-Add": "some-other-value,add-appends-values"})),
        q("/remove", {"X-Header-Remove": "val"}, absent=["X-Header-Remove"]),
        q("/multiple", {"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
                        "X-Header-Remove-2": "remove-val-2",
                        "Another-Header": "another-header-val", "X-Header-Remove-1": "val"},
          {"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
           "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2",
           "X-Header-Add-3": "header-add-3", "Another-Header": "another-header-val"},
          ["X-Header-Remove-1", "X-Header-Remove-2"]),
        q("/case-insensitivity", {"x-header-set": "original-val-set",
                                  "x-header-add": "original-val-add",
                                  "x-header-remove": "original-val-remove",
                                  "Another-Header": "another-header-val"},
          {"X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add",
           "X-Lowercase-Add": "lowercase-add", "X-Mixedcase-Add-1": "mixedcase-add-1",
           "X-Mixedcase-Add-2": "mixedcase-add-2", "X-Uppercase-Add": "uppercase-add",
           "Another-Header": "another-header-val"}, ["x-header-remove"]),
        q("/response-and-request-header-modifiers",
          {"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
           "X-Header-Remove-2": "remove-val-2", "Another-Header": "another-header-val",
           "X-Header-Remove-1": "remove-val-1", "X-Header-Echo": "echo"},
          {"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
           "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2",
           "Another-Header": "another-header-val", "X-Header-Echo": "echo"},
          ["X-Header-Remove-1", "X-Header-Remove-2"],
          headers={"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1",
                   "X-Header-Echo": "echo"},
          req_headers={"X-Header-Add": "header-val-1", "X-Header-Set": "set-overwrites-values",
                       "X-Header-Add-Append": "append-val-1,header-val-2",
                       "X-Header-Echo": "echo"},
          absent_req_headers=["X-Header-Remove"]),
    ]
    return m.with_routes([route], lambda: "%s; %s" % (accepted(m, route),
                                                      t.gateway_expect(m, requests)))


def backend_header_modifier_weights(m):
    """HTTPRouteRequestHeaderModifierBackendWeights: two backendRefs of equal weight, each setting
    `Backend` to its own name: every answer comes from a backend that saw its own name only, and
    both answer."""
    route = t.gateway_route("request-header-modifier-backend-weights", [t.rule([
        t.backend(name, 8080, weight=10, filters=[t.header_modifier(set=[("Backend", name)])])
        for name in ("echo-v1", "echo-v2")])])

    def body():
        status = accepted(m, route)
        return "%s; %s" % (status, t.own_backend_headers(lambda: echo_answers(m, "/", 100)))
    return m.with_routes([route], body)


def mirror_filter(name, port=8080, percent=None, fraction=None):
    spec = {"backendRef": {"name": name, "namespace": t.MESH_NS, "port": port}}
    if percent is not None:
        spec["percent"] = percent
    if fraction is not None:
        spec["fraction"] = {"numerator": fraction[0], "denominator": fraction[1]}
    return {"type": "RequestMirror", "requestMirror": spec}


def mirror_modify():
    return t.header_modifier(set=[("X-Header-Set", "set-overwrites-values")],
                             add=[("X-Header-Add", "header-val-1"),
                                  ("X-Header-Add-Append", "header-val-2")],
                             remove=["X-Header-Remove"])


def expect_mirrored(m, paths, mirrored_to):
    """Each of `paths` (prefixes of the route's rules) with a fresh last segment, sent once
    through the gateway and answered by echo-v1; then every pod of `mirrored_to` ({pod: requests
    it logs for the path, the primary's one included}) logs that path as often."""
    lines = []
    for path in paths:
        unique = "%s/%s" % (path, uuid_lib.uuid4().hex)
        echo = echo_answers(m, unique, 1)[0]
        t.check(echo is not None and echo.get("service") == "echo-v1",
                "%s: answered by %s, expected echo-v1" % (unique, echo and echo.get("service")))

        def logged():
            counts = {pod: logged_requests(m, pod, unique) for pod in mirrored_to}
            return counts if counts == mirrored_to else None
        m.run.wait_until(logged, t.EVENTUAL_S, "%s to reach %s" % (unique, mirrored_to),
                         lambda: json.dumps({pod: logged_requests(m, pod, unique)
                                             for pod in mirrored_to}))
        lines.append("%s: %s" % (path, ", ".join("%s %d" % kv
                                                 for kv in sorted(mirrored_to.items()))))
    return "; ".join(lines)


def mirror_case(route_name, base, mirrors, mirrored_to):
    def case(m):
        route = t.gateway_route(route_name, [
            t.rule([t.backend("echo-v1")], matches=[t.prefix(base)], filters=list(mirrors)),
            t.rule([t.backend("echo-v1")], matches=[t.prefix(base + "-and-modify-headers")],
                   filters=[mirror_modify()] + list(mirrors)),
        ])
        sent = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1"}

        def body():
            status = accepted(m, route)
            answers = t.gateway_expect(m, [
                t.req(base, backend="echo-v1", req_path=base),
                t.req(base + "-and-modify-headers", headers=sent, backend="echo-v1",
                      req_headers={"X-Header-Add": "header-val-1",
                                   "X-Header-Add-Append": "append-val-1,header-val-2",
                                   "X-Header-Set": "set-overwrites-values"},
                      absent_req_headers=["X-Header-Remove"])])
            return "%s; %s; mirrored: %s" % (status, answers, expect_mirrored(
                m, [base, base + "-and-modify-headers"], mirrored_to))
        return m.with_routes([route], body)
    return case


def request_mirror(m):
    """HTTPRouteRequestMirror: echo-v1 answers, echo-v2 gets a copy."""
    return mirror_case("request-mirror", "/mirror", [mirror_filter("echo-v2")],
                       {"echo-v1-0": 1, "echo-v2-0": 1})(m)


def request_multiple_mirrors(m):
    """HTTPRouteRequestMultipleMirrors. Upstream mirrors to infra-backend-v2 and -v3; here to
    echo-v2 and to echo-v1 itself (Service port 80): echo-v2 logs the request once, echo-v1 twice
    (its answer and the second mirror's copy)."""
    return mirror_case("request-multiple-mirrors", "/multi-mirror",
                       [mirror_filter("echo-v2"), mirror_filter("echo-v1", port=80)],
                       {"echo-v1-0": 2, "echo-v2-0": 1})(m)


def request_percentage_mirror(m):
    """HTTPRouteRequestPercentageMirror: MIRROR_REQUESTS to each rule, echo-v2 gets 20%, 50%
    (fraction 25/50) and 35% of them, within MIRROR_TOLERANCE of the count."""
    rules = [("/percent-mirror", {"percent": 20}, 0.20),
             ("/percent-mirror-fraction", {"fraction": (25, 50)}, 0.50),
             ("/percent-mirror-and-modify-headers", {"percent": 35}, 0.35)]
    route = t.gateway_route("request-percentage-mirror", [
        t.rule([t.backend("echo-v1")], matches=[t.prefix(path)],
               filters=([mirror_modify()] if "modify" in path else []) +
               [mirror_filter("echo-v2", **spec)])
        for path, spec, _ in rules])

    def body():
        status = accepted(m, route)
        t.gateway_expect(m, [t.req(path, backend="echo-v1") for path, _, _ in rules])
        started = time.monotonic()
        while True:
            results, off = [], []
            for path, _, share in rules:
                unique = "%s/%s" % (path, uuid_lib.uuid4().hex)
                answered = sum(1 for e in echo_answers(m, unique, MIRROR_REQUESTS)
                               if e and e.get("service") == "echo-v1")
                time.sleep(1)  # the last copies' way to the mirror
                mirrored = logged_requests(m, "echo-v2-0", unique)
                expected = MIRROR_REQUESTS * share
                results.append("%s %d of %d mirrored (%d%%)" % (path, mirrored, answered,
                                                                 share * 100))
                if answered != MIRROR_REQUESTS or \
                        abs(mirrored - expected) > expected * MIRROR_TOLERANCE:
                    off.append(results[-1])
            if not off:
                return "%s; %s" % (status, "; ".join(results))
            if time.monotonic() - started > t.EVENTUAL_S:
                raise t.Failed("mirrored counts off by more than %d%%: %s" % (
                    MIRROR_TOLERANCE * 100, "; ".join(off)))
    return m.with_routes([route], body)


# --- CORS ----------------------------------------------------------------------------------------
#
# Upstream's preflight cases expect no echo answer (the gateway answers them itself), its simple
# requests infra-backend-v1's (echo-v1 here). Where upstream allows several values of a header
# (the order of a list, "*" or the echoed value), the case lists them; lists are compared without
# their spaces, as upstream's IgnoreWhitespace does.

def cors(**spec):
    return {"type": "CORS", "cors": spec}


def preflight(path, origin, method, headers=None, status=(200, 204), want=None, absent=()):
    sent = {"Origin": origin, "access-control-request-method": method}
    if headers:
        sent["access-control-request-headers"] = headers
    return t.req(path, method="OPTIONS", headers=sent, status=status, resp_headers=want,
                 absent_resp_headers=absent)


def both_orders(a, b):
    return ["%s, %s" % (a, b), "%s, %s" % (b, a)]


def http_route_cors(m):
    """HTTPRouteCORS: exact and wildcard origins, methods and headers; credentials echo the
    origin; a non-matching origin gets no CORS headers."""
    routes = [
        t.gateway_route("cors-multiple-origins-methods-headers", [t.rule(
            [t.backend("echo-v1")], matches=[t.prefix("/cors-1")], filters=[cors(
                allowOrigins=["https://www.foo.com", "https://*.bar.com"],
                allowMethods=["GET", "OPTIONS"], allowHeaders=["x-header-1", "x-header-2"],
                exposeHeaders=["x-header-3", "x-header-4"], allowCredentials=True,
                maxAge=3600)])]),
        t.gateway_route("cors-wildcard-methods", [t.rule(
            [t.backend("echo-v1")], matches=[t.prefix("/cors-2")],
            filters=[cors(allowOrigins=["https://www.foo.com"], allowMethods=["*"])])]),
        t.gateway_route("cors-wildcard-origin", [t.rule(
            [t.backend("echo-v1")], matches=[t.prefix("/cors-wildcard-origin")],
            filters=[cors(allowOrigins=["*"], allowMethods=["PUT"], allowCredentials=False)])]),
        t.gateway_route("cors-wildcard-methods-headers", [
            t.rule([t.backend("echo-v1")], matches=[t.prefix(path)], filters=[cors(
                allowOrigins=["*"], allowMethods=["*"], allowHeaders=["*"],
                allowCredentials=creds)])
            for path, creds in (("/cors-wildcard-methods-headers", True),
                                ("/cors-wildcard-methods-headers-unauth", False))]),
    ]
    full = {"access-control-allow-methods": both_orders("GET", "OPTIONS"),
            "access-control-allow-headers": both_orders("x-header-1", "x-header-2"),
            "access-control-expose-headers": both_orders("x-header-3", "x-header-4"),
            "access-control-max-age": "3600", "access-control-allow-credentials": "true"}
    requested = "x-header-1, x-header-2"
    acao = "access-control-allow-origin"
    creds = "access-control-allow-credentials"
    other = "https://other.foo.com"
    requests = [
        preflight("/cors-1", origin, "GET", requested, want=dict(full, **{acao: origin}))
        for origin in ("https://www.foo.com", "https://www.bar.com", "https://xpto.www.bar.com")
    ] + [
        preflight("/cors-1", "https://foobar.com", "GET", status=(200, 204, 403), absent=[acao]),
        t.req("/cors-1", headers={"Origin": "https://www.foo.com",
                                  "access-control-request-method": "GET",
                                  "access-control-request-headers": requested},
              backend="echo-v1", resp_headers={acao: "https://www.foo.com"}),
        t.req("/cors-1", headers={"Origin": "https://www.bar.com",
                                  "access-control-request-method": "GET",
                                  "access-control-request-headers": requested},
              backend="echo-v1", resp_headers={acao: "https://www.bar.com"}),
        t.req("/cors-1", headers={"Origin": "https://foobar.com",
                                  "access-control-request-method": "GET"},
              absent_resp_headers=[acao]),
        preflight("/cors-2", "https://www.foo.com", "POST",
                  want={"access-control-allow-methods": ["POST", "*"],
                        acao: "https://www.foo.com"}, absent=[creds]),
    ] + [
        preflight("/cors-wildcard-origin", origin, "PUT",
                  want={acao: [origin, "*"], "access-control-allow-methods": "PUT"},
                  absent=[creds])
        for origin in ("https://foobar.com", "https://foobar.com:12345")
    ] + [
        t.req("/cors-wildcard-origin", method="PUT", headers={"Origin": origin},
              backend="echo-v1", resp_headers={acao: [origin, "*"]}, absent_resp_headers=[creds])
        for origin in ("https://foobar.com:12345", "https://foobar.com")
    ] + [
        preflight("/cors-wildcard-methods-headers", other, "PUT", requested,
                  want={acao: other, "access-control-allow-methods": "PUT",
                        "access-control-allow-headers": both_orders("x-header-1", "x-header-2"),
                        creds: "true"}),
        preflight("/cors-wildcard-methods-headers-unauth", other, "PUT", requested,
                  want={acao: [other, "*"], "access-control-allow-methods": ["PUT", "*"],
                        "access-control-allow-headers":
                            both_orders("x-header-1", "x-header-2") + ["*"]},
                  absent=[creds]),
        t.req("/cors-wildcard-methods-headers", headers={"Origin": other, "Cookie": "foo=bar"},
              backend="echo-v1", resp_headers={acao: other, creds: "true"}),
        t.req("/cors-wildcard-methods-headers-unauth",
              headers={"Origin": other, "Cookie": "foo=bar"}, backend="echo-v1",
              resp_headers={acao: other}, absent_resp_headers=[creds]),
    ]

    def body():
        status = "; ".join(accepted(m, r) for r in routes)
        return "%s; %s" % (status, t.gateway_expect(m, requests))
    return m.with_routes(routes, body)


def http_route_cors_allow_credentials(m):
    """HTTPRouteCORSAllowCredentialsBehavior: Access-Control-Allow-Credentials only where the
    policy sets allowCredentials, and only beside a matching Access-Control-Allow-Origin."""
    origin = "https://app.example"
    route = t.gateway_route("cors-allow-credentials", [
        t.rule([t.backend("echo-v1")], matches=[t.prefix("/cors-behavior-creds-%s" % name)],
               filters=[cors(allowOrigins=[origin], allowCredentials=creds)])
        for name, creds in (("false", False), ("true", True))])
    sent = {"Cookie": "sid=abc123", "Authorization": "Bearer test"}
    creds = "Access-Control-Allow-Credentials"
    requests = [
        t.req("/cors-behavior-creds-false", headers=dict(sent, Origin=origin), backend="echo-v1",
              absent_resp_headers=[creds]),
        t.req("/cors-behavior-creds-true", headers=dict(sent, Origin="http://not-app.example"),
              backend="echo-v1", absent_resp_headers=[creds]),
        t.req("/cors-behavior-creds-true", headers=dict(sent, Origin=origin), backend="echo-v1",
              resp_headers={creds: "true", "Access-Control-Allow-Origin": origin}),
    ]
    return m.with_routes([route], lambda: "%s; %s" % (accepted(m, route),
                                                      t.gateway_expect(m, requests)))


# --- backend protocols ---------------------------------------------------------------------------
#
# Upstream's infra-backend-v1 Service has the ports 8081 (appProtocol kubernetes.io/h2c, an
# HTTP/2-only echo) and 8082 (kubernetes.io/ws, a WebSocket echo); here Service echo-v1 has them
# (mesh.yaml), and the case starts their servers (conformance_agent.py h2c-serve, ws-serve) in
# echo-v1-0's network namespace: the gateway reaches them through echo-v1-0's sidecar.

PROTOCOL_SERVERS = {"h2c-serve": 3001, "ws-serve": 3000}


def protocol_server(m, mode):
    """conformance_agent.py `mode` listening in echo-v1-0 (once a run; stopped with the run)."""
    started = getattr(m, "protocol_servers", None)
    if started is None:
        started = m.protocol_servers = {}
    if mode in started:
        return started[mode]
    pod = t.CLIENT
    info = m.cluster.pods[pod]
    log = "%s/%s-%s.log" % (m.run.dir, mode, pod)
    proc = m.run.start_in_pod_network(pod, [
        t.PYTHON, t.AGENT, mode, "--port", str(PROTOCOL_SERVERS[mode]), "--service", "echo-v1",
        "--namespace", info["namespace"], "--pod", pod], log)

    def listening():
        with open(log) as f:
            text = f.read()
        if proc.poll() is not None:
            raise t.Failed("%s in %s exited: %s" % (mode, pod, text[-2000:]))
        return "listening" in text
    m.run.wait_until(listening, 20, "%s in %s to listen" % (mode, pod))
    started[mode] = "%s on %d in %s" % (mode, PROTOCOL_SERVERS[mode], pod)
    return started[mode]


def backend_protocol_h2c(m):
    """HTTPRouteBackendProtocolH2C: a route to echo-v1's port 8081 (appProtocol
    kubernetes.io/h2c); a request sent to the gateway with HTTP/2 prior knowledge is answered by
    echo-v1's HTTP/2-only echo, which saw HTTP/2 (it closes any connection that starts otherwise,
    so an HTTP/1.1 or Upgrade hop on the way fails the case)."""
    server = protocol_server(m, "h2c-serve")
    route = t.gateway_route("backend-protocol-h2c", [t.rule([t.backend("echo-v1", 8081)])])
    request = dict(t.req("/", backend="echo-v1"), ip=gateway_ip(m), port=80)

    def body():
        status = accepted(m, route)
        started = time.monotonic()
        streak = 0
        while True:
            answer = m.agent(t.GATEWAY_CLIENT, "h2c", [
                {k: v for k, v in request.items() if k != "expect"}])[0]
            problem = t.judge(request, answer)
            if problem is None:
                proto = json.loads(answer["body"]).get("proto")
                if proto != "HTTP/2.0":
                    problem = "the backend got %s, expected HTTP/2.0" % proto
            streak = 0 if problem else streak + 1
            if streak >= t.CONSISTENT_ROUNDS:
                return "%s; %s; HTTP/2 with prior knowledge to the gateway and from it to " \
                       "echo-v1's h2c port, %d rounds in a row (%.1f s)" % (
                           server, status, t.CONSISTENT_ROUNDS, time.monotonic() - started)
            if time.monotonic() - started > t.EVENTUAL_S:
                raise t.Failed("after %d s: %s" % (t.EVENTUAL_S, problem))
            time.sleep(0.3)
    return m.with_routes([route], body)


WS_TEXT = "Websocket Support!"
WS_BINARY = [1, 2, 3, 4, 5, 6, 7]


def backend_protocol_websocket(m):
    """HTTPRouteBackendProtocolWebSocket: a route to echo-v1's port 8082 (appProtocol
    kubernetes.io/ws); a WebSocket opened through the gateway at /ws (RFC 6455 handshake, its
    Sec-WebSocket-Accept checked) reaches echo-v1's WebSocket echo, which returns a text and a
    binary message as sent."""
    server = protocol_server(m, "ws-serve")
    route = t.gateway_route("backend-protocol-ws", [t.rule([t.backend("echo-v1", 8082)])])

    def body():
        status = accepted(m, route)
        started = time.monotonic()
        streak = 0
        while True:
            session = {"ip": gateway_ip(m), "port": 80, "host": gateway_ip(m), "path": "/ws",
                       "origin": "ws://gateway/HTTPRouteBackendProtocolWebSocket",
                       "messages": [{"text": WS_TEXT}, {"binary": WS_BINARY}]}
            answer = m.agent(t.GATEWAY_CLIENT, "ws", [session])[0]
            want = [{"text": WS_TEXT}, {"binary": WS_BINARY}]
            if "error" in answer:
                problem = "no WebSocket: %s" % answer["error"]
            elif answer["status"] != 101:
                problem = "the handshake was answered %d" % answer["status"]
            elif answer["headers"].get("x-echo-service") != "echo-v1":
                problem = "the WebSocket reached %r, expected echo-v1" % answer["headers"].get(
                    "x-echo-service")
            elif answer["replies"] != want:
                problem = "replies %s, expected %s" % (answer["replies"], want)
            else:
                problem = None
            streak = 0 if problem else streak + 1
            if streak >= t.CONSISTENT_ROUNDS:
                return "%s; %s; a text and a binary message echoed by %s over a WebSocket " \
                       "through the gateway, %d sessions in a row (%.1f s)" % (
                           server, status, answer["headers"].get("x-echo-pod"),
                           t.CONSISTENT_ROUNDS, time.monotonic() - started)
            if time.monotonic() - started > t.EVENTUAL_S:
                raise t.Failed("after %d s: %s" % (t.EVENTUAL_S, problem))
            time.sleep(0.3)
    return m.with_routes([route], body)


# --- cases with more listeners -------------------------------------------------------------------
#
# Upstream deploys a Gateway of its own for these; here Gateway same-namespace gets the case's
# listeners beside its own (http, port 80) for the case's duration, and they are removed after.

def listeners_status(m):
    gw = t.kube_object(m, "gateways", t.MESH_NS, t.GATEWAY_NAME) or {}
    return {x.get("name"): x for x in gw.get("status", {}).get("listeners", [])}


def with_listeners(m, listeners, body):
    """Runs body() while Gateway same-namespace also has `listeners`, once it is Programmed at its
    new generation with each listener Programmed and every proxy has ACKed."""
    gw = t.kube_object(m, "gateways", t.MESH_NS, t.GATEWAY_NAME)
    t.check(gw is not None, "Gateway %s not found" % t.GATEWAY_NAME)
    original = json.loads(json.dumps({k: gw[k] for k in ("apiVersion", "kind", "metadata",
                                                          "spec")}))
    changed = json.loads(json.dumps(original))
    gen = changed["metadata"].get("generation", 1)
    changed["metadata"]["generation"] = gen + 1
    changed["spec"]["listeners"].extend(listeners)
    m.cluster.kube_put("gateways", changed)
    try:
        t.wait_object_generation(m, "gateways", t.MESH_NS, t.GATEWAY_NAME, gen + 1,
                                 ("Accepted", "Programmed"))

        def programmed():
            status = listeners_status(m)
            return all({c["type"]: c.get("status") for c in status.get(x["name"], {}).get(
                "conditions", [])}.get("Programmed") == "True" for x in listeners)
        m.run.wait_until(programmed, t.EVENTUAL_S, "the case's listeners to be Programmed",
                         lambda: json.dumps(listeners_status(m))[:1500])
        m.wait_acked()
        return body()
    finally:
        original["metadata"]["generation"] = gen + 2
        m.cluster.kube_put("gateways", original)
        t.wait_object_generation(m, "gateways", t.MESH_NS, t.GATEWAY_NAME, gen + 2,
                                 ("Accepted", "Programmed"))
        m.wait_acked()


def http_listener(name, port, hostname=None):
    x = {"name": name, "port": port, "protocol": "HTTP",
         "allowedRoutes": {"namespaces": {"from": "Same"}}}
    if hostname:
        x["hostname"] = hostname
    return x


def attached_routes_port_8080(m):
    """GatewayWithAttachedRoutesWithPort8080: a listener http-unattached on port 8080 beside http
    on 80; a route naming sectionName http is counted on http (1), not on http-unattached (0),
    both listeners Accepted and ResolvedRefs."""
    route = t.gateway_route("http-route-4-port-8080", [t.rule([t.backend("echo-v1")])],
                            section="http")

    def counts():
        status = listeners_status(m)
        out = {}
        for name in ("http", "http-unattached"):
            x = status.get(name, {})
            conds = {c["type"]: c.get("status") for c in x.get("conditions", [])}
            if conds.get("Accepted") != "True" or conds.get("ResolvedRefs") != "True":
                return None
            out[name] = x.get("attachedRoutes")
        return out if out == {"http": 1, "http-unattached": 0} else None

    def body():
        return m.with_routes([route], lambda: "%s; attachedRoutes %s" % (
            accepted(m, route), m.run.wait_until(counts, t.EVENTUAL_S, "attachedRoutes",
                                                 lambda: json.dumps(listeners_status(m))[:1500])))
    return with_listeners(m, [http_listener("http-unattached", 8080)], body)


def listener_port_matching(m):
    """HTTPRouteListenerPortMatching: routes attached by parentRef port (80, 8080) and by port and
    sectionName (8090, listener-4 foo.com only). Upstream's listener-1 (80, foo.com) is the
    Gateway's own http listener here (any hostname); its infra-backend-v3 is echo-v1 with a
    request header x-rule: v3 set by its route."""
    listeners = [http_listener("listener-2", 8080, "foo.com"),
                 http_listener("listener-3", 8080, "bar.com"),
                 http_listener("listener-4", 8090, "foo.com"),
                 http_listener("listener-5", 8090, "bar.com")]

    def at_port(name, port, backend_name, section=None, filters=None):
        doc = t.gateway_route(name, [t.rule([t.backend(backend_name)], filters=filters)],
                              section=section)
        doc["spec"]["parentRefs"][0]["port"] = port
        return doc
    routes = [at_port("backend-v1", 80, "echo-v1"), at_port("backend-v2", 8080, "echo-v2"),
              at_port("backend-v3", 8090, "echo-v1", section="listener-4",
                      filters=[t.header_modifier(set=[("x-rule", "v3")])])]

    def q(host, port, backend=None, v3=False, status=200):
        r = t.req(host=host, to="x", status=status, backend=backend,
                  req_headers={"x-rule": "v3"} if v3 else None,
                  absent_req_headers=() if v3 or not backend else ["x-rule"])
        r["ip"], r["port"] = gateway_ip(m), port
        return r

    def body():
        status = "; ".join(accepted(m, r) for r in routes)
        return "%s; %s" % (status, m.expect([
            q("foo.com", 80, "echo-v1"), q("foo.com:8080", 8080, "echo-v2"),
            q("bar.com:8080", 8080, "echo-v2"), q("foo.com:8090", 8090, "echo-v1", v3=True),
            q("bar.com:8090", 8090, status=404)], client=t.GATEWAY_CLIENT))
    return with_listeners(m, listeners, lambda: m.with_routes(routes, body))


def redirect_port_and_scheme(m):
    """HTTPRouteRedirectPortAndScheme. Upstream's three Gateways are listeners of Gateway
    same-namespace here: its own http (80), http-8080 (8080; upstream's
    same-namespace-with-http-listener-on-8080) and https (443, the infra certificate; upstream's
    same-namespace-with-https-listener), a route each by sectionName. A redirect without a port
    keeps the listener's (8080 is written, 80 and 443 are not); one with a scheme but no port
    takes the scheme's; without a scheme the request's (https on 443) is kept."""
    https = {"name": "https", "port": 443, "protocol": "HTTPS",
             "allowedRoutes": {"namespaces": {"from": "Same"}},
             "tls": {"certificateRefs": [t.secret_ref(t.INFRA_CERTIFICATE, t.MESH_NS)]}}
    listeners = [http_listener("http-8080", 8080), https]

    def r(path, **spec):
        return t.rule(matches=[t.prefix(path)], filters=[t.redirect(hostname="example.org",
                                                                    **spec)])
    on80 = t.gateway_route("http-route-for-listener-on-port-80", [
        r("/scheme-nil-and-port-nil"), r("/scheme-nil-and-port-80", port=80),
        r("/scheme-nil-and-port-8080", port=8080), r("/scheme-https-and-port-nil", scheme="https"),
        r("/scheme-https-and-port-443", scheme="https", port=443),
        r("/scheme-https-and-port-8443", scheme="https", port=8443)], section="http")
    on8080 = t.gateway_route("http-route-for-listener-on-port-8080", [
        r("/scheme-nil-and-port-nil"), r("/scheme-nil-and-port-80", port=80),
        r("/scheme-https-and-port-nil", scheme="https")], section="http-8080")
    on443 = t.gateway_route("http-route-for-listener-on-port-443", [
        r("/scheme-nil-and-port-nil"), r("/scheme-nil-and-port-443", port=443),
        r("/scheme-nil-and-port-8443", port=8443), r("/scheme-http-and-port-nil", scheme="http"),
        r("/scheme-http-and-port-80", scheme="http", port=80),
        r("/scheme-http-and-port-8080", scheme="http", port=8080)], section="https")
    routes = [on80, on8080, on443]

    def q(path, scheme, port=None, host=None):
        location = {"scheme": scheme, "host": "example.org"}
        if port:
            location["port"] = port
        return t.req(path, host=host or gateway_ip(m), to="x", status=302, location=location)

    def body():
        status = "; ".join(accepted(m, d) for d in routes)
        port80 = t.gateway_expect(m, [
            q("/scheme-nil-and-port-nil", "http"), q("/scheme-nil-and-port-80", "http"),
            q("/scheme-nil-and-port-8080", "http", 8080),
            q("/scheme-https-and-port-nil", "https"), q("/scheme-https-and-port-443", "https"),
            q("/scheme-https-and-port-8443", "https", 8443)])
        port8080 = t.gateway_expect(m, [
            q("/scheme-nil-and-port-nil", "http", 8080), q("/scheme-nil-and-port-80", "http"),
            q("/scheme-https-and-port-nil", "https")], port=8080)
        port443 = t.gateway_expect(m, [
            q("/scheme-nil-and-port-nil", "https", host="example.org"),
            q("/scheme-nil-and-port-443", "https", host="example.org"),
            q("/scheme-nil-and-port-8443", "https", 8443, host="example.org"),
            q("/scheme-http-and-port-nil", "http", host="example.org"),
            q("/scheme-http-and-port-80", "http", host="example.org"),
            q("/scheme-http-and-port-8080", "http", 8080, host="example.org")],
            port=443, ca=m.gateway_ca)
        return "%s; listener on 80: %s; on 8080: %s; HTTPS on 443: %s" % (
            status, port80, port8080, port443)
    return with_listeners(m, listeners, lambda: m.with_routes(routes, body))


def http_listener_isolation(m):
    """GatewayHTTPListenerIsolation: listeners on port 80 for *.example.com, *.foo.example.com and
    abc.foo.example.com beside the Gateway's own http (no hostname: upstream's empty-hostname), a
    route a listener, each with a path of its own; a request is routed by the routes of the most
    specific listener matching its host only."""
    names = {"http": "empty-hostname", "wildcard-example-com": "*.example.com",
             "wildcard-foo-example-com": "*.foo.example.com",
             "abc-foo-example-com": "abc.foo.example.com"}
    listeners = [http_listener(name, 80, host) for name, host in names.items() if name != "http"]
    routes = [t.gateway_route("attaches-to-" + names["http"] if name == "http" else
                              "attaches-to-" + name,
                              [t.rule([t.backend("echo-v1")], matches=[t.prefix(
                                  "/" + ("empty-hostname" if name == "http" else name))])],
                              section=name) for name in names]
    paths = ["/empty-hostname", "/wildcard-example-com", "/wildcard-foo-example-com",
             "/abc-foo-example-com"]
    hosts = {"bar.com": 0, "bar.example.com": 1, "bar.foo.example.com": 2,
             "abc.foo.example.com": 3}
    requests = [t.req(path, host=host, to="x", backend="echo-v1") if i == hosts[host] else
                t.req(path, host=host, to="x", status=404)
                for host in hosts for i, path in enumerate(paths)]

    def body():
        status = "; ".join(accepted(m, d) for d in routes)
        return "%s; %s" % (status, t.gateway_expect(m, requests))
    return with_listeners(m, listeners, lambda: m.with_routes(routes, body))


# --- GATEWAY-GRPC ---------------------------------------------------------------------------------

def grpc_exact_method_matching(m):
    route = grpc_route("exact-matching", [
        t.rule([t.backend("echo-v1", t.GRPC_PORT)], matches=[method_match("Echo")]),
        t.rule([t.backend("echo-v2", t.GRPC_PORT)], matches=[method_match("EchoTwo")])])
    return m.with_routes([route], lambda: "%s; %s" % (accepted(m, route), expect_grpc(m, [
        ("Echo", {}, "echo-v1"), ("EchoTwo", {}, "echo-v2"),
        ("EchoThree", {}, "UNIMPLEMENTED")])))


def grpc_header_matching(m):
    def r(name, *sets):
        return t.rule([t.backend(name, t.GRPC_PORT)], matches=[
            {"headers": [{"name": k, "value": v} for k, v in pairs]} for pairs in sets])
    route = grpc_route("grpc-header-matching", [
        r("echo-v1", [("version", "one")]), r("echo-v2", [("version", "two")]),
        r("echo-v1", [("version", "two"), ("color", "orange")]),
        r("echo-v1", [("color", "blue")], [("color", "green")]),
        r("echo-v2", [("color", "red")], [("color", "yellow")])])
    v1, v2, none = "echo-v1", "echo-v2", "UNIMPLEMENTED"
    return m.with_routes([route], lambda: "%s; %s" % (accepted(m, route), expect_grpc(m, [
        ("Echo", {"version": "one"}, v1), ("Echo", {"version": "two"}, v2),
        ("Echo", {"version": "two", "color": "orange"}, v1),
        ("Echo", {"version": "two", "color": "blue"}, v2),
        ("Echo", {"color": "orange"}, none), ("Echo", {"some-other-header": "one"}, none),
        ("Echo", {"color": "blue"}, v1), ("Echo", {"color": "green"}, v1),
        ("Echo", {"color": "red"}, v2), ("Echo", {"color": "yellow"}, v2),
        ("Echo", {"color": "purple"}, none)])))


def grpc_named_rule(m):
    route = grpc_route("grpc-named-rules", [
        dict(t.rule([t.backend("echo-v1", t.GRPC_PORT)], matches=[method_match("Echo")]),
             name="named-rule"),
        t.rule([t.backend("echo-v2", t.GRPC_PORT)], matches=[method_match("EchoTwo")])])
    return m.with_routes([route], lambda: "%s; %s" % (accepted(m, route), expect_grpc(m, [
        ("Echo", {}, "echo-v1"), ("EchoTwo", {}, "echo-v2")])))


def grpc_listener_hostname_matching(m):
    """GRPCRouteListenerHostnameMatching: listeners on port 80 for bar.com, foo.bar.com, *.bar.com
    and *.foo.com beside the Gateway's own http (no hostname, nothing attached to it here), a
    route a listener. Upstream's grpc-infra-backend-v3 (listeners 3 and 4) is echo-v1 with
    metadata x-rule: v3 set by its route."""
    listeners = [http_listener("listener-1", 80, "bar.com"),
                 http_listener("listener-2", 80, "foo.bar.com"),
                 http_listener("listener-3", 80, "*.bar.com"),
                 http_listener("listener-4", 80, "*.foo.com")]

    def r(name, backend_name, sections, filters=None):
        doc = grpc_route(name, [t.rule([t.backend(backend_name, t.GRPC_PORT)], filters=filters)])
        ref = doc["spec"]["parentRefs"][0]
        doc["spec"]["parentRefs"] = [dict(ref, sectionName=sn) for sn in sections]
        return doc
    routes = [r("backend-v1", "echo-v1", ["listener-1"]),
              r("backend-v2", "echo-v2", ["listener-2"]),
              r("backend-v3", "echo-v1", ["listener-3", "listener-4"],
                filters=[t.header_modifier(set=[("x-rule", "v3")])])]
    v3 = {"x-rule": "v3"}
    none = {"x-rule": None}

    def body():
        status = "; ".join(accepted(m, d) for d in routes)
        return "%s; %s" % (status, expect_grpc(m, [
            ("Echo", {}, "echo-v1", "bar.com", none), ("Echo", {}, "echo-v2", "foo.bar.com"),
            ("Echo", {}, "echo-v1", "baz.bar.com", v3), ("Echo", {}, "echo-v1", "boo.bar.com", v3),
            ("Echo", {}, "echo-v1", "multiple.prefixes.bar.com", v3),
            ("Echo", {}, "echo-v1", "multiple.prefixes.foo.com", v3),
            ("Echo", {}, "UNIMPLEMENTED", "foo.com"),
            ("Echo", {}, "UNIMPLEMENTED", "no.matching.host")]))
    return with_listeners(m, listeners, lambda: m.with_routes(routes, body))


# --- the Gateway's infrastructure and addresses ----------------------------------------------------

def gateway_conditions(m, name):
    """The Gateway's conditions ({type: condition}) and generation."""
    gw = t.kube_object(m, "gateways", t.MESH_NS, name) or {}
    conds = {x["type"]: x for x in gw.get("status", {}).get("conditions", [])}
    return conds, gw.get("metadata", {}).get("generation")


def wait_gateway_condition(m, name, kind, status, reason=None):
    """Until the Gateway's `kind` condition has `status` (and `reason`) at its generation
    (upstream's GatewayMustHaveCondition after GatewayMustHaveLatestConditions)."""
    def ok():
        conds, gen = gateway_conditions(m, name)
        c = conds.get(kind, {})
        if c.get("status") == status and (reason is None or c.get("reason") == reason) and \
                c.get("observedGeneration") == gen:
            return "%s=%s/%s" % (kind, status, c.get("reason"))
        return None
    return m.run.wait_until(ok, t.EVENTUAL_S, "Gateway %s %s=%s/%s" % (
        name, kind, status, reason or "any"), lambda: json.dumps(
            gateway_conditions(m, name)[0])[:1500])


def labelled(m, plural, name, group=None):
    """The objects of `plural` in the Gateways' namespace labelled with the Gateway's name, as
    the Kubernetes API server has them (written by the control plane's gateway deployer)."""
    prefix = "/api/v1" if group is None else "/apis/%s" % group
    answer = m.cluster.kube_get("%s/namespaces/%s/%s?labelSelector=%s" % (
        prefix, t.MESH_NS, plural, "gateway.networking.k8s.io%2Fgateway-name%3D" + name))
    return (answer or {}).get("items", [])


def gateway_infrastructure(m):
    """A Gateway with spec.infrastructure (annotation key1: value1, label key2: value2; one HTTP
    listener on 8080) is Accepted, and the ServiceAccount and Service the control plane writes
    for it (gateway-name label) carry those labels and annotations (upstream lists Pods too;
    here the pods are podman's, so the Deployment's pod template stands for them). This test's
    addition: the infrastructure changed (key2 dropped, key3 added) reaches the same objects,
    key2 removed."""
    name = "gateway-with-infrastructure-metadata"
    gateway = t.gateway_doc(name, [t.listener("http", 8080)])
    gateway["spec"]["infrastructure"] = {"annotations": {"key1": "value1"},
                                         "labels": {"key2": "value2"}}
    # The uid an API server gives (the harness puts objects as they are): the deployer writes
    # the objects owned by it.
    gateway["metadata"]["uid"] = str(uuid_lib.uuid4())

    def carried(labels, annotations, absent=()):
        def ok():
            found = []
            for plural, group in (("serviceaccounts", None), ("services", None),
                                  ("deployments", "apps/v1")):
                items = labelled(m, plural, name, group)
                if not items:
                    return None
                metas = [items[0]["metadata"]]
                if plural == "deployments":
                    metas.append(items[0]["spec"]["template"]["metadata"])
                for meta in metas:
                    have_l, have_a = meta.get("labels", {}), meta.get("annotations", {})
                    if any(have_l.get(k) != v for k, v in labels.items()) or \
                            any(have_a.get(k) != v for k, v in annotations.items()) or \
                            any(k in have_l for k in absent):
                        return None
                found.append(plural)
            return "%s carry labels %s and annotations %s%s" % (
                ", ".join(found), labels, annotations,
                ", without %s" % ", ".join(absent) if absent else "")
        return m.run.wait_until(ok, t.EVENTUAL_S, "the objects of Gateway %s to carry %s, %s" % (
            name, labels, annotations), lambda: json.dumps(
                [i["metadata"] for p, g in (("serviceaccounts", None), ("services", None),
                                            ("deployments", "apps/v1"))
                 for i in labelled(m, p, name, g)])[:2000])

    def body():
        t.gateway_latest_conditions(m, name)
        accepted = wait_gateway_condition(m, name, "Accepted", "True")
        first = carried({"key2": "value2"}, {"key1": "value1"})
        t.modify_gateway(m, name, lambda spec: spec.update(infrastructure={
            "annotations": {"key1": "value1"}, "labels": {"key3": "value3"}}))
        t.gateway_latest_conditions(m, name)
        changed = carried({"key3": "value3"}, {"key1": "value1"}, absent=("key2",))
        return "%s; %s; changed: %s" % (accepted, first, changed)
    return t.with_gateways(m, [gateway], body)


def gateway_static_addresses(m):
    """A Gateway asking for three addresses (one of an unsupported type, one the harness's
    unusable address, one its usable address: --gateway-addresses holds the usable one, its pod
    is played at it) is not Accepted (UnsupportedAddress); without the first, Accepted but not
    Programmed (AddressNotUsable); without the second, Accepted and Programmed with the usable
    address (type IPAddress) in status.addresses and neither other, its listener Accepted and
    ResolvedRefs. This test's addition: the gateway answers at that address."""
    name = "gateway-static-addresses"
    usable, unusable = m.usable_addresses[0], m.unusable_addresses[0]
    gateway = t.gateway_doc(name, [t.listener("http", 8080)])
    gateway["metadata"]["annotations"] = {"gateway-api/skip-this-for-readiness": "true"}
    gateway["spec"]["addresses"] = [
        {"type": "test/fake-invalid-type", "value": "fake address teehee!"},
        {"type": "IPAddress", "value": unusable},
        {"type": "IPAddress", "value": usable}]

    def without(value):
        return lambda spec: spec.update(addresses=[a for a in spec["addresses"]
                                                   if a["value"] != value])

    def body():
        t.gateway_latest_conditions(m, name)
        steps = [wait_gateway_condition(m, name, "Accepted", "False", "UnsupportedAddress")]
        t.modify_gateway(m, name, without("fake address teehee!"))
        t.gateway_latest_conditions(m, name)
        steps.append(wait_gateway_condition(m, name, "Accepted", "True", "Accepted"))
        steps.append(wait_gateway_condition(m, name, "Programmed", "False", "AddressNotUsable"))
        t.modify_gateway(m, name, without(unusable))
        t.gateway_latest_conditions(m, name)
        steps.append(wait_gateway_condition(m, name, "Accepted", "True", "Accepted"))
        steps.append(wait_gateway_condition(m, name, "Programmed", "True", "Programmed"))
        steps.append(t.wait_listeners(m, name, {"http": (["HTTPRoute"], [
            ("Accepted", "True", None), ("ResolvedRefs", "True", None)], 0)}))
        gw = t.kube_object(m, "gateways", t.MESH_NS, name)
        t.check(len(gw["spec"]["addresses"]) == 1, "one address left: %s" % gw["spec"])
        addresses = gw.get("status", {}).get("addresses", [])
        values = [a.get("value") for a in addresses]
        t.check(usable in values and unusable not in values and
                "fake address teehee!" not in values, "status.addresses %s" % addresses)
        t.check(all(a.get("type") == "IPAddress" for a in addresses if a["value"] == usable),
                "the usable address's type: %s" % addresses)
        answered = m.expect(t.through_gateway(m, [t.req("/", host="static.example.com",
                                                        status=404)],
                                              pod=t.gateway_pod(name), port=8080),
                            client=t.GATEWAY_CLIENT)
        return "%s; status.addresses %s; at %s:8080 %s" % ("; ".join(steps), values, usable,
                                                           answered)
    return t.with_gateways(m, [gateway], body, ips={t.gateway_pod(name): usable},
                           programmed=False)


def gateway_optional_address_value(m):
    """A Gateway asking for an address without a value (type IPAddress) gets one: Programmed
    with an address in status (its proxy's)."""
    gateway = t.gateway_doc("gateway-without-address-value", [t.listener("http", 8080)])
    gateway["spec"]["addresses"] = [{"type": "IPAddress"}]

    def body():
        gw = t.kube_object(m, "gateways", t.MESH_NS, "gateway-without-address-value")
        addresses = gw.get("status", {}).get("addresses", [])
        t.check(addresses and addresses[0].get("value"), "status.addresses: %s" % addresses)
        return "status.addresses %s" % addresses
    return t.with_gateways(m, [gateway], body)


# --- the lists ------------------------------------------------------------------------------------

# Upstream extended cases of the Gateway profiles not run, with why (the report's skippedTests;
# docs/gateway.md "Conformance"): features meshlet does not have, or "not transcribed" yet.
# --- BackendTLSPolicy ----------------------------------------------------------------------------
#
# Upstream's tls-backend pods serve HTTPS on 8443 with tls-checks-certificate (abc.example.com,
# spiffe://abc.example.com/test-identity and other.example.com, signed by the CA of ConfigMap
# tls-checks-ca-certificate; mismatch-ca-certificate holds another CA). Here the certificates are
# made by the run, and conformance_agent.py tls-serve serves them on 8443 in the kube-apiserver
# pod's network namespace, outside the mesh: each case's Services (Kubernetes Services only, their
# EndpointSlices naming that address) are reached by the gateway over TLS only because a
# BackendTLSPolicy says so. The echo names the server name the handshake saw.

TLS_BACKEND_PORT = 8443
TLS_BACKEND = "tls-backend"  # the echo's service name
TLS_CA = "tls-checks-ca-certificate"
MISMATCH_CA = "mismatch-ca-certificate"
TLS_SANS = ("DNS:abc.example.com", "URI:spiffe://abc.example.com/test-identity",
            "DNS:other.example.com")
# Virtual addresses of the cases' Services (an unroutable range, as the other Services').
TLS_SERVICE_IPS = "240.241.3.%d"


def ca_configmap(name, ca_file):
    with open(ca_file) as f:
        pem = f.read()
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": t.MESH_NS}, "data": {"ca.crt": pem}}


def tls_backend(m):
    """The run's TLS backend (once a run): its CA in ConfigMap tls-checks-ca-certificate, another
    in mismatch-ca-certificate, the echo listening. What it is, for the cases' reports."""
    if getattr(m, "tls_backend", None):
        return m.tls_backend
    import mesh_util  # tests/integration, on the path since setup_gateway
    d = os.path.join(m.run.dir, "tls-backend")
    os.makedirs(d, exist_ok=True)
    ca = mesh_util.make_ca(d, "tls-checks-ca")
    mismatch = mesh_util.make_ca(d, "mismatch-ca")
    cert = mesh_util.make_server_cert(d, "tls-checks-certificate", ca, ",".join(TLS_SANS))
    m.cluster.kube_put("configmaps", ca_configmap(TLS_CA, ca[0]))
    m.cluster.kube_put("configmaps", ca_configmap(MISMATCH_CA, mismatch[0]))
    m.tls_ca_file = ca[0]
    log = os.path.join(m.run.dir, "tls-serve.log")
    proc = m.run.start_in_pod_network(t.GATEWAY_CLIENT, [
        t.PYTHON, t.AGENT, "tls-serve", "--port", str(TLS_BACKEND_PORT), "--cert", cert[0],
        "--key", cert[1], "--service", TLS_BACKEND, "--namespace", t.MESH_NS, "--pod",
        t.GATEWAY_CLIENT], log)

    def listening():
        with open(log) as f:
            text = f.read()
        if proc.poll() is not None:
            raise t.Failed("tls-serve exited: %s" % text[-2000:])
        return "listening" in text
    m.run.wait_until(listening, 20, "the TLS backend to listen")
    m.tls_backend = "HTTPS echo on %s:%d (%s, from the run's CA)" % (
        m.run.ip(9), TLS_BACKEND_PORT, ", ".join(TLS_SANS))
    return m.tls_backend


def tls_service(name, ports):
    """A Kubernetes Service of the TLS backend: `ports` [(name, port, appProtocol or None)], each
    to 8443."""
    spec_ports = []
    for port_name, port, app_protocol in ports:
        p = {"name": port_name, "port": port, "protocol": "TCP", "targetPort": TLS_BACKEND_PORT}
        if app_protocol:
            p["appProtocol"] = app_protocol
        spec_ports.append(p)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": t.MESH_NS},
            "spec": {"selector": {"app": TLS_BACKEND}, "ports": spec_ports}}


def btls_policy(name, service, hostname, section=None, ca=(TLS_CA,), sans=(), ca_refs=None):
    target = {"group": "", "kind": "Service", "name": service}
    if section:
        target["sectionName"] = section
    validation = {"caCertificateRefs": ca_refs if ca_refs is not None else [
        {"group": "", "kind": "ConfigMap", "name": n} for n in ca], "hostname": hostname}
    if sans:
        validation["subjectAltNames"] = [
            {"type": "Hostname", "hostname": v} if kind == "Hostname" else
            {"type": "URI", "uri": v} for kind, v in sans]
    return {"apiVersion": t.API_VERSION, "kind": "BackendTLSPolicy",
            "metadata": {"name": name, "namespace": t.MESH_NS, "generation": 1},
            "spec": {"targetRefs": [target], "validation": validation}}


def exact_rule(path, service, port=443):
    return t.rule([t.backend(service, port)], matches=[
        {"path": {"type": "Exact", "value": path}}])


def with_tls_backend(m, services, policies, configmaps, body):
    """Runs body() while `services` (tls_service()), their EndpointSlices (the TLS backend's
    address), `policies` and `configmaps` are in the Kubernetes API server; removes them after."""
    backend_ip = m.run.ip(9)
    c = m.cluster
    ips = m.tls_service_ips = getattr(m, "tls_service_ips", {})
    for svc in services:
        name = svc["metadata"]["name"]
        if name not in ips:
            ips[name] = TLS_SERVICE_IPS % (10 + len(ips))
        obj = json.loads(json.dumps(svc))
        obj["spec"].update({"type": "ClusterIP", "clusterIP": ips[name],
                            "clusterIPs": [ips[name]]})
        c.kube_put("services", obj)
        ports = []
        for p in svc["spec"]["ports"]:
            port = {"name": p["name"], "port": TLS_BACKEND_PORT, "protocol": "TCP"}
            if p.get("appProtocol"):
                port["appProtocol"] = p["appProtocol"]
            ports.append(port)
        c.kube_put("endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name + "-x1", "namespace": t.MESH_NS,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [backend_ip], "conditions": {"ready": True}}]})
    for cm in configmaps:
        c.kube_put("configmaps", cm)
    for p in policies:
        c.kube_put("backendtlspolicies", p)
    try:
        return body()
    finally:
        for p in policies:
            c.kube_delete("backendtlspolicies", p["metadata"]["name"], t.MESH_NS)
        for cm in configmaps:
            c.kube_delete("configmaps", cm["metadata"]["name"], t.MESH_NS)
        for svc in services:
            c.kube_delete("endpointslices", svc["metadata"]["name"] + "-x1", t.MESH_NS)
            c.kube_delete("services", svc["metadata"]["name"], t.MESH_NS)


def policy_conditions(m, name):
    """The conditions of BackendTLSPolicy `name`'s ancestor entry for Gateway same-namespace
    written by meshlet ({type: condition}), and the policy's generation."""
    obj = t.kube_object(m, "backendtlspolicies", t.MESH_NS, name) or {}
    for a in obj.get("status", {}).get("ancestors", []):
        if a.get("ancestorRef", {}).get("name") == t.GATEWAY_NAME and \
                a.get("controllerName") == t.GATEWAY_CONTROLLER:
            return ({x["type"]: x for x in a.get("conditions", [])},
                    obj.get("metadata", {}).get("generation"))
    return {}, obj.get("metadata", {}).get("generation")


def wait_policy(m, name, want):
    """Until BackendTLSPolicy `name` has each of `want` ({type: (status, reason or None)}) for
    Gateway same-namespace, every condition at the policy's generation."""
    def ok():
        conds, gen = policy_conditions(m, name)
        for kind, (status, reason) in want.items():
            c = conds.get(kind, {})
            if c.get("status") != status or (reason and c.get("reason") != reason):
                return None
        if not conds or any(c.get("observedGeneration") != gen for c in conds.values()):
            return None
        return "%s %s" % (name, ", ".join("%s %s%s" % (k, s, " " + r if r else "")
                                          for k, (s, r) in want.items()))
    return m.run.wait_until(ok, t.EVENTUAL_S, "BackendTLSPolicy %s: %s" % (name, want),
                            lambda: json.dumps(policy_conditions(m, name))[:1500])


ACCEPTED = {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
FAILS = (500, 502, 503)


def tls_req(path, host="abc.example.com", sni=None, status=200):
    """A request to the gateway answered by the TLS backend (its handshake saw `sni`), or, with
    a failing `status`, refused by the gateway."""
    if status == 200:
        return t.req(path, host=host, to="x", backend=TLS_BACKEND, req_path=path, req_sni=sni)
    return t.req(path, host=host, to="x", status=status)


def backend_tls_policy(m):
    """BackendTLSPolicy: policies on the btls port of four Services of the TLS backend. A valid
    one (hostname abc.example.com, the backend's CA): 200, the backend saw SNI abc.example.com,
    also from the HTTPS listener (upstream's same-namespace-with-https-listener is a listener of
    same-namespace here: re-encrypted). A hostname the certificate does not hold, and a CA that
    did not sign it: 5xx. A policy whose ConfigMap does not exist yet is NoValidCACertificate and
    InvalidCACertificateRef, Accepted once it is created, invalid again when its ca.crt is
    emptied, valid when it is back."""
    backend = tls_backend(m)
    services = [tls_service(n, [("btls", 443, proto)]) for n, proto in (
        ("backendtlspolicy-test", None), ("backendtlspolicy-host-mismatch-test", "HTTPS"),
        ("backendtlspolicy-cert-mismatch-test", "HTTPS"), ("backendtlspolicy-reconcile-test",
                                                           None))]
    policies = [
        btls_policy("normative-test", "backendtlspolicy-test", "abc.example.com", "btls"),
        btls_policy("host-mismatch", "backendtlspolicy-host-mismatch-test",
                    "mismatch.example.com", "btls"),
        btls_policy("cert-mismatch", "backendtlspolicy-cert-mismatch-test", "abc.example.com",
                    "btls", ca=(MISMATCH_CA,)),
        btls_policy("reconcile-test", "backendtlspolicy-reconcile-test", "abc.example.com",
                    "btls")]
    route = t.gateway_route("backendtlspolicy", [
        exact_rule("/backendtlspolicy", "backendtlspolicy-test"),
        exact_rule("/backendtlspolicy-host-mismatch", "backendtlspolicy-host-mismatch-test"),
        exact_rule("/backendtlspolicy-cert-mismatch", "backendtlspolicy-cert-mismatch-test"),
        exact_rule("/backendtlspolicy-reconcile-test", "backendtlspolicy-reconcile-test")],
        hostnames=["abc.example.com"], section="http")
    reencrypt = t.gateway_route("backendtlspolicy-reencrypt", [
        exact_rule("/backendtlspolicy", "backendtlspolicy-test")],
        hostnames=["https-listener.org"], section="https")
    https = {"name": "https", "port": 443, "protocol": "HTTPS",
             "allowedRoutes": {"namespaces": {"from": "Same"}},
             "tls": {"certificateRefs": [t.secret_ref(t.INFRA_CERTIFICATE, t.MESH_NS)]}}

    def reconcile():
        c = m.cluster
        name = "reconcile-test"
        test_cm = TLS_CA + "-reconcile-test"
        moved = btls_policy(name, "backendtlspolicy-reconcile-test", "abc.example.com", "btls",
                            ca=(test_cm,))
        moved["metadata"]["generation"] = 2
        c.kube_put("backendtlspolicies", moved)
        invalid = {"Accepted": ("False", "NoValidCACertificate"),
                   "ResolvedRefs": ("False", "InvalidCACertificateRef")}
        steps = [wait_policy(m, name, invalid)]
        cm = ca_configmap(test_cm, m.tls_ca_file)
        c.kube_put("configmaps", cm)
        try:
            steps.append(wait_policy(m, name, ACCEPTED))
            steps.append(m.expect(t.through_gateway(m, [tls_req(
                "/backendtlspolicy-reconcile-test", sni="abc.example.com")]),
                client=t.GATEWAY_CLIENT))
            emptied = json.loads(json.dumps(cm))
            emptied["data"]["ca.crt"] = ""
            c.kube_put("configmaps", emptied)
            steps.append(wait_policy(m, name, invalid))
            steps.append(m.expect(t.through_gateway(m, [tls_req(
                "/backendtlspolicy-reconcile-test", status=FAILS)]), client=t.GATEWAY_CLIENT))
            c.kube_put("configmaps", cm)
            steps.append(wait_policy(m, name, ACCEPTED))
        finally:
            c.kube_delete("configmaps", test_cm, t.MESH_NS)
        return "; ".join(steps)

    def body():
        status = [accepted(m, route), accepted(m, reencrypt)]
        status += [wait_policy(m, p["metadata"]["name"], ACCEPTED) for p in policies]
        plain = t.gateway_expect(m, [
            tls_req("/backendtlspolicy", sni="abc.example.com"),
            tls_req("/backendtlspolicy-host-mismatch", status=FAILS),
            tls_req("/backendtlspolicy-cert-mismatch", status=FAILS)])
        reencrypted = t.gateway_expect(m, [
            tls_req("/backendtlspolicy", host="https-listener.org", sni="abc.example.com")],
            port=443, ca=m.gateway_ca)
        return "%s; %s; from the HTTP listener: %s; re-encrypted from the HTTPS listener: %s; " \
               "ConfigMap reconciled: %s" % (backend, "; ".join(status), plain, reencrypted,
                                             reconcile())
    return with_listeners(m, [https], lambda: with_tls_backend(
        m, services, policies, [], lambda: m.with_routes([route, reencrypt], body)))


def backend_tls_conflict_resolution(m):
    """BackendTLSPolicyConflictResolution: two policies on a Service without a sectionName, and
    two on the same sectionName: the first by name is Accepted (hostname other.example.com, which
    the certificate holds), the second Accepted False Conflicted, and requests are verified with
    the first's hostname (SNI other.example.com). A policy naming a port and one naming the
    Service alone are both Accepted, each applying to its own port."""
    backend = tls_backend(m)
    two_ports = [("https-1", 443, None), ("https-2", 8443, None)]
    services = [
        tls_service("backendtlspolicy-conflicted-without-section-name-test",
                    [("https", 443, None)]),
        tls_service("backendtlspolicy-conflicted-with-section-name-test", two_ports),
        tls_service("backendtlspolicy-not-conflicted-test", two_ports)]
    without = "backendtlspolicy-conflicted-without-section-name-test"
    with_section = "backendtlspolicy-conflicted-with-section-name-test"
    not_conflicted = "backendtlspolicy-not-conflicted-test"
    policies = [
        btls_policy("conflicted-without-section-name-1", without, "other.example.com"),
        btls_policy("conflicted-without-section-name-2", without, "abc.example.com"),
        btls_policy("conflicted-with-section-name-1", with_section, "other.example.com",
                    "https-1"),
        btls_policy("conflicted-with-section-name-2", with_section, "abc.example.com",
                    "https-1"),
        btls_policy("not-conflicted-with-section-name", not_conflicted, "other.example.com",
                    "https-1"),
        btls_policy("not-conflicted-without-section-name", not_conflicted, "abc.example.com")]
    route = t.gateway_route("backendtlspolicy-conflict-resolution", [
        exact_rule("/backendtlspolicy-conflicted-without-section-name", without),
        exact_rule("/backendtlspolicy-conflicted-with-section-name", with_section),
        exact_rule("/backendtlspolicy-not-conflicted-with-section-name", not_conflicted),
        exact_rule("/backendtlspolicy-not-conflicted-without-section-name", not_conflicted,
                   8443)], hostnames=["abc.example.com"])
    conflicted = {"Accepted": ("False", "Conflicted")}

    def body():
        status = [accepted(m, route)]
        for p in policies:
            name = p["metadata"]["name"]
            status.append(wait_policy(m, name, conflicted if name.endswith("-2") else
                                      {"Accepted": ("True", "Accepted")}))
        answers = t.gateway_expect(m, [
            tls_req("/backendtlspolicy-conflicted-without-section-name", sni="other.example.com"),
            tls_req("/backendtlspolicy-conflicted-with-section-name", sni="other.example.com"),
            tls_req("/backendtlspolicy-not-conflicted-with-section-name",
                    sni="other.example.com"),
            tls_req("/backendtlspolicy-not-conflicted-without-section-name",
                    sni="abc.example.com")])
        return "%s; %s; %s" % (backend, "; ".join(status), answers)
    return with_tls_backend(m, services, policies, [], lambda: m.with_routes([route], body))


def backend_tls_invalid_ca_ref(m):
    """BackendTLSPolicyInvalidCACertificateRef: a policy naming a ConfigMap that does not exist,
    and one naming a ConfigMap without a certificate, are Accepted False NoValidCACertificate and
    ResolvedRefs False InvalidCACertificateRef; requests to their Services get a 5xx (never
    plaintext)."""
    tls_backend(m)
    names = ("nonexistent-ca-certificate-ref", "malformed-ca-certificate-ref")
    services = [tls_service("backendtlspolicy-%s-test" % n, [("https", 443, "HTTPS")])
                for n in names]
    policies = [btls_policy(n, "backendtlspolicy-%s-test" % n, "abc.example.com", ca=(
        n.replace("-ref", ""),)) for n in names]
    malformed = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "malformed-ca-certificate", "namespace": t.MESH_NS},
                 "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nnot a certificate\n"
                                    "-----END CERTIFICATE-----\n"}}
    route = t.gateway_route("backendtlspolicy-invalid-ca-certificate-ref", [
        exact_rule("/backendtlspolicy-" + n, "backendtlspolicy-%s-test" % n) for n in names],
        hostnames=["abc.example.com"])
    invalid = {"Accepted": ("False", "NoValidCACertificate"),
               "ResolvedRefs": ("False", "InvalidCACertificateRef")}

    def body():
        status = [accepted(m, route)] + [wait_policy(m, n, invalid) for n in names]
        return "%s; %s" % ("; ".join(status), t.gateway_expect(m, [
            tls_req("/backendtlspolicy-" + n, status=FAILS) for n in names]))
    return with_tls_backend(m, services, policies, [malformed],
                            lambda: m.with_routes([route], body))


def backend_tls_invalid_kind(m):
    """BackendTLSPolicyInvalidKind: a caCertificateRef of group invalid.io, kind InvalidKind:
    Accepted False NoValidCACertificate, ResolvedRefs False InvalidKind; requests get a 5xx."""
    tls_backend(m)
    service = "backendtlspolicy-invalid-kind-test"
    policy = btls_policy("invalid-kind", service, "abc.example.com", ca_refs=[
        {"group": "invalid.io", "kind": "InvalidKind", "name": "invalid-kind"}])
    route = t.gateway_route(service, [exact_rule("/backendtlspolicy-invalid-kind", service)],
                            hostnames=["abc.example.com"])

    def body():
        status = [accepted(m, route), wait_policy(m, "invalid-kind", {
            "Accepted": ("False", "NoValidCACertificate"),
            "ResolvedRefs": ("False", "InvalidKind")})]
        return "%s; %s" % ("; ".join(status), t.gateway_expect(m, [
            tls_req("/backendtlspolicy-invalid-kind", status=FAILS)]))
    return with_tls_backend(m, [tls_service(service, [("https", 443, "HTTPS")])], [policy], [],
                            lambda: m.with_routes([route], body))


def backend_tls_generation_bump(m):
    """BackendTLSPolicyObservedGenerationBump: the policy's hostname changed (generation 1 to
    2): its conditions' observedGeneration follows, Accepted True throughout."""
    tls_backend(m)
    service = "observed-generation-bump-test"
    policy = btls_policy("observed-generation-bump", service, "abc.example.com", "https")
    route = t.gateway_route("backendtlspolicy-observed-generation-bump",
                            [t.rule([t.backend(service, 443)])])

    def body():
        status = [accepted(m, route),
                  wait_policy(m, "observed-generation-bump", {"Accepted": ("True", None)})]
        _, before = policy_conditions(m, "observed-generation-bump")
        changed = json.loads(json.dumps(policy))
        changed["spec"]["validation"]["hostname"] = "foo.example.com"
        changed["metadata"]["generation"] = 2
        m.cluster.kube_put("backendtlspolicies", changed)
        status.append(wait_policy(m, "observed-generation-bump", {"Accepted": ("True", None)}))
        _, after = policy_conditions(m, "observed-generation-bump")
        t.check(after != before, "the generation did not change (%s)" % after)
        return "%s; observedGeneration %s then %s" % ("; ".join(status), before, after)
    return with_tls_backend(m, [tls_service(service, [("https", 443, None)])], [policy], [],
                            lambda: m.with_routes([route], body))


def backend_tls_san_validation(m):
    """BackendTLSPolicySANValidation: subjectAltNames replace the hostname check (the hostname
    still the SNI): a DNS name, a URI, and both listed, each held by the certificate: 200 with
    SNI abc.example.com; names it does not hold (dce.example.com, spiffe://def.example.com/...,
    both): 5xx."""
    backend = tls_backend(m)
    uri = "spiffe://abc.example.com/test-identity"
    wrong_uri = "spiffe://def.example.com/test-identity"
    cases = [("san-dns", [("Hostname", "abc.example.com")], True),
             ("san-dns-mismatch", [("Hostname", "dce.example.com")], False),
             ("san-uri", [("URI", uri)], True),
             ("san-uri-mismatch", [("URI", wrong_uri)], False),
             ("multiple-sans", [("URI", uri), ("Hostname", "abc.example.com")], True),
             ("multiple-mismatch-sans", [("URI", wrong_uri), ("Hostname", "def.example.com")],
              False)]
    services = [tls_service("backendtlspolicy-%s-test" % n, [("btls", 443, "HTTPS")])
                for n, _, _ in cases]
    policies = [btls_policy(n, "backendtlspolicy-%s-test" % n, "abc.example.com", "btls",
                            sans=sans) for n, sans, _ in cases]
    route = t.gateway_route("backendtlspolicy-san-test", [
        exact_rule("/backendtlspolicy-" + n, "backendtlspolicy-%s-test" % n)
        for n, _, _ in cases], hostnames=["abc.example.com"])

    def body():
        status = [accepted(m, route)] + [wait_policy(m, n, {"Accepted": ("True", "Accepted")})
                                         for n, _, _ in cases]
        answers = t.gateway_expect(m, [
            tls_req("/backendtlspolicy-" + n, sni="abc.example.com") if ok else
            tls_req("/backendtlspolicy-" + n, status=FAILS) for n, _, ok in cases])
        return "%s; %s; %s" % (backend, "; ".join(status), answers)
    return with_tls_backend(m, services, policies, [], lambda: m.with_routes([route], body))


# The upstream cases of the profiles' features meshlet does not have: {name: (features, why)}.
NOT_SUPPORTED = {}
# Upstream cases that test the Gateway alone (no route kind): in every Gateway profile.
GATEWAY_ONLY = {"GatewayClassObservedGenerationBump", "GatewayInvalidRouteKind",
                "GatewayInvalidTLSConfiguration", "GatewayModifyListeners",
                "GatewayObservedGenerationBump", "GatewaySecretInvalidReferenceGrant",
                "GatewaySecretMissingReferenceGrant", "GatewaySecretReferenceGrantAllInNamespace",
                "GatewaySecretReferenceGrantSpecific", "GatewayStaticAddresses",
                "GatewayInfrastructure", "GatewayOptionalAddressValue"}
# Features upstream gives a case beyond its profile's core ones.
EXTRA_FEATURES = {"HTTPRouteInvalidParentRefNotMatchingListenerPort":
                  ["HTTPRouteDestinationPortMatching"]}


def cases():
    C, H, G = t.Case, t.GATEWAY_HTTP, GATEWAY_GRPC
    http = ["Gateway", "HTTPRoute"]
    grpc = ["Gateway", "GRPCRoute"]
    return [
        C("HTTPRoute303Redirect", [H], http + ["HTTPRoute303RedirectStatusCode"], False,
          t.on_gateway(t.status_redirect(303, "/see-other"))),
        C("HTTPRoute307Redirect", [H], http + ["HTTPRoute307RedirectStatusCode"], False,
          t.on_gateway(t.status_redirect(307, "/temporary"))),
        C("HTTPRoute308Redirect", [H], http + ["HTTPRoute308RedirectStatusCode"], False,
          t.on_gateway(t.status_redirect(308, "/permanent"))),
        C("HTTPRouteNamedRule", [H], http + ["HTTPRouteNamedRouteRule"], False,
          t.on_gateway(t.mesh_named_rule)),
        C("HTTPRouteBackendRequestHeaderModifier", [H],
          http + ["HTTPRouteBackendRequestHeaderModification"], False,
          t.on_gateway(t.mesh_backend_request_header_modifier)),
        C("HTTPRouteRequestHeaderModifierBackendWeights", [H],
          http + ["HTTPRouteBackendRequestHeaderModification"], False,
          backend_header_modifier_weights),
        C("HTTPRouteResponseHeaderModifier", [H], http + ["HTTPRouteResponseHeaderModification"],
          False, response_header_modifier),
        C("HTTPRouteMethodMatching", [H], http + ["HTTPRouteMethodMatching"], False,
          method_matching),
        C("HTTPRouteRewriteHost", [H], http + ["HTTPRouteHostRewrite"], False, rewrite_host),
        C("HTTPRouteRequestMirror", [H], http + ["HTTPRouteRequestMirror"], False,
          request_mirror),
        C("HTTPRouteRequestMultipleMirrors", [H],
          http + ["HTTPRouteRequestMirror", "HTTPRouteRequestMultipleMirrors"], False,
          request_multiple_mirrors),
        C("HTTPRouteRequestPercentageMirror", [H], http + ["HTTPRouteRequestPercentageMirror"],
          False, request_percentage_mirror),
        C("HTTPRouteRetry", [H], http + ["HTTPRouteRetry"], False,
          t.on_gateway(t.http_route_retry)),
        C("HTTPRouteRetryWithTimeouts", [H],
          http + ["HTTPRouteRetry", "HTTPRouteRetryBackendTimeout", "HTTPRouteRequestTimeout",
                  "HTTPRouteBackendTimeout"], False,
          t.on_gateway(t.http_route_retry_with_timeouts)),
        C("HTTPRouteRetryConnectionError", [H],
          http + ["HTTPRouteRetry", "HTTPRouteRetryConnectionError"], False,
          t.on_gateway(t.http_route_retry_connection_error)),
        C("GatewayWithAttachedRoutesWithPort8080", [H], http + ["GatewayPort8080"], False,
          attached_routes_port_8080),
        C("HTTPRouteListenerPortMatching", [H], http + ["HTTPRouteParentRefPort"], False,
          listener_port_matching),
        C("HTTPRouteInvalidParentRefSectionNameNotMatchingPort", [H],
          http + ["HTTPRouteParentRefPort"], False,
          t.gw_invalid_parent("httproute-listener-section-name-not-matching-port",
                              sectionName="http", port=81)),
        C("GatewayHTTPListenerIsolation", [H], http + ["GatewayHTTPListenerIsolation"], False,
          http_listener_isolation),
        C("HTTPRouteRedirectPortAndScheme", [H],
          http + ["HTTPRoutePortRedirect", "GatewayPort8080"], False, redirect_port_and_scheme),
        C("HTTPRouteCORS", [H], http + ["HTTPRouteCORS"], False, http_route_cors),
        C("HTTPRouteCORSAllowCredentialsBehavior", [H], http + ["HTTPRouteCORS"], False,
          http_route_cors_allow_credentials),
        C("HTTPRouteBackendProtocolH2C", [H], http + ["HTTPRouteBackendProtocolH2C"], False,
          backend_protocol_h2c),
        C("HTTPRouteBackendProtocolWebSocket", [H],
          http + ["HTTPRouteBackendProtocolWebSocket"], False, backend_protocol_websocket),
        C("GatewayInfrastructure", [H], ["Gateway", "GatewayInfrastructurePropagation"], True,
          gateway_infrastructure),
        C("GatewayStaticAddresses", [H], ["Gateway", "GatewayStaticAddresses"], False,
          gateway_static_addresses),
        C("GatewayOptionalAddressValue", [H], ["Gateway", "GatewayAddressEmpty"], True,
          gateway_optional_address_value),
        C("BackendTLSPolicy", [H], http + ["BackendTLSPolicy"], False, backend_tls_policy),
        C("BackendTLSPolicyConflictResolution", [H], http + ["BackendTLSPolicy"], False,
          backend_tls_conflict_resolution),
        C("BackendTLSPolicyInvalidCACertificateRef", [H], http + ["BackendTLSPolicy"], False,
          backend_tls_invalid_ca_ref),
        C("BackendTLSPolicyInvalidKind", [H], http + ["BackendTLSPolicy"], False,
          backend_tls_invalid_kind),
        C("BackendTLSPolicyObservedGenerationBump", [H], http + ["BackendTLSPolicy"], False,
          backend_tls_generation_bump),
        C("BackendTLSPolicySANValidation", [H],
          http + ["BackendTLSPolicy", "BackendTLSPolicySANValidation"], False,
          backend_tls_san_validation),
        C("GRPCExactMethodMatching", [G], grpc, False, grpc_exact_method_matching),
        C("GRPCRouteHeaderMatching", [G], grpc, False, grpc_header_matching),
        C("GRPCRouteWeight", [G], grpc, False, on_gateway_grpc(t.mesh_grpc_weight)),
        C("GRPCRouteListenerHostnameMatching", [G], grpc, False,
          grpc_listener_hostname_matching),
        C("GRPCRouteNamedRule", [G], grpc + ["GRPCRouteNamedRouteRule"], False, grpc_named_rule),
        C("GRPCRouteRequestHeaderModifier", [G], grpc + ["GRPCRouteRequestHeaderModifier"],
          False, on_gateway_grpc(t.mesh_grpc_request_header_modifier)),
    ]


def register(test_module):
    """Adds this module's cases to test_module's Gateway profile and GATEWAY-GRPC to its report;
    the Gateway-only cases (theirs included) in both Gateway profiles."""
    global t
    t = test_module
    t.CORE[GATEWAY_GRPC] = {"Gateway", "GRPCRoute", "ReferenceGrant"}  # upstream's profile
    t.GATEWAY_CASES.extend(cases())
    for name, (features, _) in NOT_SUPPORTED.items():
        profiles = [GATEWAY_GRPC] if name.startswith("GRPC") else [t.GATEWAY_HTTP]
        base = ["Gateway"] + (["GRPCRoute"] if name.startswith("GRPC") else ["HTTPRoute"])
        t.GATEWAY_NOT_RUN[name] = (profiles, base + [f for f in features if f not in base])
        if NOT_SUPPORTED[name][1].startswith("not transcribed"):
            t.NOT_TRANSCRIBED.add(name)
    both = [t.GATEWAY_HTTP, GATEWAY_GRPC]
    for i, c in enumerate(t.GATEWAY_CASES):
        if c.name in GATEWAY_ONLY:
            extra = [f for f in c.features if f not in ("Gateway", "HTTPRoute", "GRPCRoute")]
            t.GATEWAY_CASES[i] = c._replace(profiles=both, features=["Gateway"] + extra)
        elif c.name in EXTRA_FEATURES:
            t.GATEWAY_CASES[i] = c._replace(features=list(c.features) + EXTRA_FEATURES[c.name])
    for name, (profiles, features) in list(t.GATEWAY_NOT_RUN.items()):
        if name in GATEWAY_ONLY:
            extra = [f for f in features if f not in ("Gateway", "HTTPRoute", "GRPCRoute")]
            t.GATEWAY_NOT_RUN[name] = (both, ["Gateway"] + extra)
        elif name in EXTRA_FEATURES:
            t.GATEWAY_NOT_RUN[name] = (profiles, list(features) + EXTRA_FEATURES[name])
    return (t.GATEWAY_HTTP, GATEWAY_GRPC)
