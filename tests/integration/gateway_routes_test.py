"""The route features Gateway API HTTPRoutes translate to, through the real sidecar binary.

Usage: gateway_routes_test.py SIDECAR_BINARY [unittest args]

One sidecar on 127.0.0.1 in front of two recording HTTP/1.1 upstreams (python's http.server on
threads), driven with http.client:
  MatchTest     an RE2 path match with a full-path rewrite, query parameter matches (RE2, exact
                after percent-decoding, the first of a repeated name), a segment-wise prefix with
                a segment-wise prefix rewrite.
  RedirectTest  a redirect by prefix to https (the default port left out), to a host and port
                (kept), and to port 80 (left out).
  SplitTest     a 50/50 split whose clusters have header changes of their own (Gateway API
                backendRef filters): each upstream sees only its own, after the route's.
  MirrorTest    a mirrored POST: the second upstream gets the method, path, headers and body while
                the client has its answer from the first; a slow mirror does not slow the client,
                a mirror cluster that is down does not fail it; the sidecar's mirror counters.
  SessionTest   a sticky-session cookie over a 50/50 split: set on the first response, it keeps
                every later request on the same upstream; a garbage cookie is counted and
                replaced.
"""

import http.client
import http.server
import json
import os
import socket
import sys
import threading
import time
import unittest

import sidecar_test as base
from sidecar_test import config_yaml, free_port, http_listener, static_cluster, wait_for


class RecordingUpstream:
    """An HTTP/1.1 server on a thread that records each request (method, path, headers, body) and
    answers with JSON naming itself and the path; with `slow`, a path holding /slow/ is answered
    after 2 s."""

    def __init__(self, name, slow=False):
        self.requests = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def answer(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                requests.append({"method": self.command, "path": self.path,
                                 "headers": {k.lower(): v for k, v in self.headers.items()},
                                 "body": body})
                if slow and "/slow/" in self.path:
                    time.sleep(2)
                data = json.dumps({"upstream": name, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = answer
            do_POST = answer

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A slow mirror's answer may find its connection gone (the sidecar stopped at
                # the end of the test, or the copy timed out): expected, not worth a traceback.
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


ROUTES = """  - name: app-routes
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - name: users
        match: {safe_regex: "/users/[0-9]+"}
        route: {cluster: app, path_rewrite: /user-by-id}
      - name: search
        match:
          prefix: /search
          query_parameters:
          - {name: q, safe_regex: "[a-z]+"}
          - {name: lang, exact: "en gb"}
        route: {cluster: app}
      - name: v2
        match: {path_separated_prefix: /v2/}
        route: {cluster: app, prefix_rewrite: /}
      - name: secure
        match: {path_separated_prefix: /secure}
        redirect: {scheme: https, prefix_rewrite: /s}
      - name: elsewhere
        match: {path: /elsewhere}
        redirect: {host: other.example, port: 8443, response_code: 302}
      - name: plain
        match: {path: /plain}
        redirect: {port: 80}
      - name: mirrored
        match: {path_separated_prefix: /mirror}
        route:
          cluster: app
          request_mirror_policies: [{cluster: shadow}]
      - name: mirrored-to-nowhere
        match: {path_separated_prefix: /mirror-down}
        route:
          cluster: app
          request_mirror_policies: [{cluster: down, percent: 100}]
      - name: sticky
        match: {path_separated_prefix: /cart}
        route:
          weighted_clusters: {clusters: [{name: app, weight: 50}, {name: shadow, weight: 50}]}
          session_persistence: {name: cart, absolute_timeout: 3600s, cookie_lifetime: PERMANENT}
      - name: split
        match: {path_separated_prefix: /split}
        request_headers_to_add: [{name: backend, value: rule}, {name: x-rule, value: r}]
        response_headers_to_add: [{name: x-answered-by, value: rule}]
        route:
          weighted_clusters:
            clusters:
            - name: app
              weight: 50
              request_headers_to_add: [{name: backend, value: app}]
              response_headers_to_add: [{name: x-answered-by, value: app}]
            - name: shadow
              weight: 50
              request_headers_to_add: [{name: backend, value: shadow}]
              request_headers_to_remove: [x-rule]
      - name: rest
        match: {prefix: /}
        direct_response: {status: 404, body: "no route\\n"}
"""


class GatewayRoutesTestCase(base.SidecarTestCase):
    def setUp(self):
        super().setUp()
        self.app = RecordingUpstream("app")
        self.addCleanup(self.app.close)
        self.shadow = RecordingUpstream("shadow", slow=True)
        self.addCleanup(self.shadow.close)
        self.port = free_port()
        down_port = free_port()  # nothing listens there
        self.sidecar = self.start(config_yaml(
            http_listener("out", self.port),
            static_cluster("app", self.app.port) + static_cluster("shadow", self.shadow.port)
            + static_cluster("down", down_port),
            ROUTES))

    def send(self, method, path, host="shop.example.com", body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            all_headers = {"Host": host, **(headers or {})}
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("location"), resp.read()
        finally:
            conn.close()

    def upstream_path(self, path, host="shop.example.com"):
        """The path the app upstream saw for a GET of `path`, or None when it answered 404."""
        status, _, body = self.send("GET", path, host)
        if status == 404:
            return None
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["upstream"], "app")
        return answer["path"]


class MatchTest(GatewayRoutesTestCase):
    def test_regex_path_with_full_path_rewrite(self):
        self.assertEqual(self.upstream_path("/users/42?view=full"), "/user-by-id?view=full")
        self.assertIsNone(self.upstream_path("/users/42/orders"))  # the whole path must match
        self.assertIsNone(self.upstream_path("/users/me"))

    def test_query_parameters(self):
        self.assertEqual(self.upstream_path("/search?q=shoes&lang=en%20gb"),
                         "/search?q=shoes&lang=en%20gb")
        # The first value of a repeated name is the one compared.
        self.assertIsNotNone(self.upstream_path("/search?lang=en%20gb&q=abc&q=123"))
        self.assertIsNone(self.upstream_path("/search?q=123&q=abc&lang=en%20gb"))
        self.assertIsNone(self.upstream_path("/search?q=Shoes&lang=en%20gb"))  # case-sensitive
        self.assertIsNone(self.upstream_path("/search?q=shoes&lang=en"))
        self.assertIsNone(self.upstream_path("/search?Q=shoes&lang=en%20gb"))
        self.assertIsNone(self.upstream_path("/search"))

    def test_segment_prefix_and_its_rewrite(self):
        self.assertEqual(self.upstream_path("/v2"), "/")
        self.assertEqual(self.upstream_path("/v2/"), "/")
        self.assertEqual(self.upstream_path("/v2/items?page=2"), "/items?page=2")
        self.assertEqual(self.upstream_path("/v2/a/b"), "/a/b")
        self.assertIsNone(self.upstream_path("/v2example"))


class RedirectTest(GatewayRoutesTestCase):
    def test_redirects_leave_default_ports_out(self):
        # A scheme without a port: that scheme's default, left out; the prefix replaced by
        # segments, the query kept.
        status, location, _ = self.send("GET", "/secure/cart?id=7", host="shop.example.com:8080")
        self.assertEqual((status, location), (301, "https://shop.example.com/s/cart?id=7"))
        status, location, _ = self.send("GET", "/secure", host="shop.example.com")
        self.assertEqual((status, location), (301, "https://shop.example.com/s"))
        # Another port is kept.
        status, location, _ = self.send("GET", "/elsewhere?x=1")
        self.assertEqual((status, location), (302, "http://other.example:8443/elsewhere?x=1"))
        # Port 80 for http is left out, whatever port the request named.
        status, location, _ = self.send("GET", "/plain", host="shop.example.com:8080")
        self.assertEqual((status, location), (301, "http://shop.example.com/plain"))
        self.assertEqual(self.app.requests, [])


class SplitTest(GatewayRoutesTestCase):
    def test_each_backend_gets_its_own_header_changes(self):
        answered = {"app": 0, "shadow": 0}
        for i in range(100):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/split/%d" % i, headers={"Host": "shop.example.com"})
                resp = conn.getresponse()
                body = resp.read()
                self.assertEqual(resp.status, 200, body)
                upstream = json.loads(body)["upstream"]
                answered[upstream] += 1
                # The app's own response change replaces the route's; the shadow has none.
                self.assertEqual(resp.getheader("x-answered-by"),
                                 "app" if upstream == "app" else "rule")
            finally:
                conn.close()
        self.assertGreater(answered["app"], 0)
        self.assertGreater(answered["shadow"], 0)
        self.assertEqual(len(self.app.requests), answered["app"])
        self.assertEqual(len(self.shadow.requests), answered["shadow"])
        for r in self.app.requests:
            self.assertEqual(r["headers"]["backend"], "app")
            self.assertEqual(r["headers"]["x-rule"], "r")
        for r in self.shadow.requests:
            self.assertEqual(r["headers"]["backend"], "shadow")
            self.assertNotIn("x-rule", r["headers"])  # the cluster's removal follows the route's add


class MirrorTest(GatewayRoutesTestCase):
    def test_mirror_gets_the_request_and_never_holds_up_the_original(self):
        status, _, body = self.send("POST", "/mirror/orders?id=1", body=b"order payload",
                                    headers={"x-tenant": "t1", "content-type": "text/plain"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["upstream"], "app")
        self.assertTrue(wait_for(lambda: len(self.shadow.requests) == 1))
        copy = self.shadow.requests[0]
        self.assertEqual(copy["method"], "POST")
        self.assertEqual(copy["path"], "/mirror/orders?id=1")
        self.assertEqual(copy["headers"]["x-tenant"], "t1")
        self.assertEqual(copy["headers"]["content-type"], "text/plain")
        self.assertEqual(copy["body"], b"order payload")
        self.assertEqual(self.app.requests[0]["body"], b"order payload")

        # A mirror that takes 2 s: the client does not wait for it.
        start = time.monotonic()
        status, _, _ = self.send("GET", "/mirror/slow/1")
        self.assertEqual(status, 200)
        self.assertLess(time.monotonic() - start, 1.5)
        self.assertTrue(wait_for(lambda: len(self.shadow.requests) == 2))

        # A mirror cluster nobody listens on: the client still gets its answer.
        status, _, body = self.send("GET", "/mirror-down/x")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["path"], "/mirror-down/x")
        self.assertTrue(wait_for(
            lambda: self.sidecar.stat("meshlet_upstream_rq_mirror_failed_total") == 1))
        self.assertTrue(wait_for(lambda: self.sidecar.stat("meshlet_upstream_rq_mirror_total") == 3,
                                 timeout=5))
        self.assertEqual(self.sidecar.stat("meshlet_upstream_rq_mirror_skipped_total"), 0)
        # Mirror traffic is not the cluster's ordinary traffic.
        self.assertEqual(len(self.app.requests), 3)



class SessionTest(GatewayRoutesTestCase):
    def sessions(self, result):
        """meshlet_upstream_rq_session_total{result=...}, summed over clusters."""
        _, body, _ = self.sidecar.get("/stats?filter=meshlet_upstream_rq_session_total")
        return sum(int(line.rpartition(": ")[2]) for line in body.splitlines()
                   if f'result="{result}"' in line)

    def get(self, path, cookie=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": "shop.example.com",
                                               **({"Cookie": cookie} if cookie else {})})
            resp = conn.getresponse()
            body = resp.read()
            self.assertEqual(resp.status, 200, body)
            return json.loads(body)["upstream"], resp.getheader("set-cookie")
        finally:
            conn.close()

    def test_cookie_keeps_the_session_on_one_upstream_across_the_split(self):
        first, set_cookie = self.get("/cart/items")
        self.assertRegex(set_cookie,
                         r"^cart=[A-Za-z0-9_-]{44}; Path=/cart; Max-Age=(3600|3599); HttpOnly$")
        cookie = set_cookie.split(";")[0]
        for i in range(30):
            upstream, again = self.get(f"/cart/items/{i}", cookie=f"theme=dark; {cookie}")
            self.assertEqual(upstream, first, i)
            self.assertIsNone(again, i)
        self.assertEqual(self.sessions("hit"), 30)
        # Without the cookie, the split sends requests to both.
        self.assertEqual({self.get("/cart")[0] for _ in range(40)}, {"app", "shadow"})

        _, replaced = self.get("/cart", cookie="cart=garbage")
        self.assertRegex(replaced, r"^cart=[A-Za-z0-9_-]{44}; ")
        self.assertEqual(self.sessions("invalid"), 1)


if __name__ == "__main__":
    base.SIDECAR = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
