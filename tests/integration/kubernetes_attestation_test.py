"""Kubernetes service-account attestation through the TokenReview API, end to end.

Usage: kubernetes_attestation_test.py CONTROL_PLANE SIDECAR CA_PROTO [unittest args]

A fake Kubernetes API server (Python's http.server over ssl, with a certificate made here with the
openssl CLI) serves POST /apis/authentication.k8s.io/v1/tokenreviews: it checks the path, the
control plane's bearer token and the JSON body (kind, the reviewed token, spec.audiences ==
["meshlet"]) and answers like an API server: authenticated for the tokens it knows, with the
user system:serviceaccount:<ns>:<sa>, unauthenticated otherwise. Then:
- a real sidecar started with --kubernetes-token-file gets a certificate for exactly the vouched
  identity (its /certs page; the issued chain read with openssl x509 through a gRPC request);
- a token the server rejects, a token for another audience, an API server whose certificate does
  not chain to --kubernetes-ca-file or is not for the API server's address, an unreachable API server, answers that are not a
  TokenReview, too large or HTTP 500, a missing or stale control-plane token, and an API server
  that never answers (past --kubernetes-timeout) are each refused with a clear logged reason,
  counted, and the control plane keeps serving meanwhile;
- at most 64 reviews are in flight; more are refused at once;
- the control-plane token file is read again for every review (rotation);
- in a pod, KUBERNETES_SERVICE_HOST/PORT name the API server; without them and without
  --kubernetes-api, a Kubernetes token is refused as not configured.
"""

import base64
import http.server
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

import cp_api
import sidecar_test
from ca_renewal_test import make_key_and_csr, read
from mesh_util import (create_join_token, make_ca, make_server_cert, openssl, serve_https,
                       start_control_plane, stop_process)
from sidecar_test import wait_for

CONTROL_PLANE = CA_PROTO = None  # set from argv
PAYMENTS_ID = "spiffe://cluster.local/ns/shop/sa/payments"
CONTROL_PLANE_TOKEN = "control-plane-own-token"


def jwt(namespace, service_account, audience, ttl=3600, pod=("payments-7f9c", "4b1d")):
    """A projected-token-shaped JWT (the fake API server is what vouches for it), bound to the
    pod (name, uid) `pod`, or to none when `pod` is None."""
    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    bound = {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": "1"}}
    if pod:
        bound["pod"] = {"name": pod[0], "uid": pod[1]}
    claims = {"aud": [audience], "exp": int(time.time()) + ttl, "iat": int(time.time()),
              "iss": "https://kubernetes.default.svc",
              "sub": f"system:serviceaccount:{namespace}:{service_account}",
              "kubernetes.io": bound}
    return f"{b64({'alg': 'RS256'})}.{b64(claims)}.c2lnbmF0dXJl"


class FakeApiServer:
    """Answers TokenReviews for `identities` (token -> (ns, sa)); `hang` never answers."""

    def __init__(self, cert, identities, hang=False, raw=None):
        self.identities, self.hang, self.requests, self.problems = identities, hang, [], []
        self.raw = raw or {}  # token -> (status, body) answered as is
        self.bearer = CONTROL_PLANE_TOKEN
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.requests.append((self.path, dict(self.headers), body))
                if server.hang:
                    time.sleep(4)
                    return
                problem = server.check(self.path, self.headers, body)
                if problem:
                    server.problems.append(problem)
                    return self.answer(400 if "body" in problem else 401,
                                       {"kind": "Status", "message": problem})
                spec = json.loads(body)["spec"]
                if spec["token"] in server.raw:
                    code, data = server.raw[spec["token"]]
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return self.wfile.write(data)
                identity = server.identities.get(spec["token"])
                claims = json.loads(base64.urlsafe_b64decode(
                    spec["token"].split(".")[1] + "==")) if identity else {}
                status = ({"authenticated": True, "audiences": claims["aud"],
                           "user": {"username": "system:serviceaccount:%s:%s" % identity,
                                    "groups": ["system:serviceaccounts"]}}
                          if identity else {"error": "invalid bearer token"})
                self.answer(201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                                  "spec": spec, "status": status})

            def answer(self, code, obj):
                # Chunked, as Go's net/http sends larger bodies (raw answers use Content-Length).
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = len(data) // 2
                for chunk in (data[:half], data[half:], b""):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

        self.httpd, self.address = serve_https(Handler, cert)

    def check(self, path, headers, body):
        if path != "/apis/authentication.k8s.io/v1/tokenreviews":
            return "wrong path " + path
        if headers.get("Authorization") != "Bearer " + self.bearer:
            return "wrong bearer token %r" % headers.get("Authorization")
        try:
            review = json.loads(body)
        except ValueError:
            return "body is not JSON"
        if (review.get("kind") != "TokenReview" or
                review.get("apiVersion") != "authentication.k8s.io/v1" or
                review.get("spec", {}).get("audiences") != ["meshlet"] or
                not review["spec"].get("token")):
            return "unexpected body %r" % review
        return None

    def stop(self):
        self.httpd.shutdown()


class KubernetesAttestationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t = cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        stubs = os.path.join(t, "stubs")
        os.makedirs(stubs)
        subprocess.run(["protoc", "--proto_path=" + os.path.dirname(os.path.dirname(CA_PROTO)),
                        "--python_out=" + stubs, CA_PROTO], check=True)
        sys.path.insert(0, stubs)
        from xds import ca_pb2
        cls.pb = ca_pb2
        cls.cluster_ca = make_ca(t, "cluster-ca")
        cls.server_ca = cls.cluster_ca[0]
        cls.server_cert = make_server_cert(t, "server", cls.cluster_ca)
        cls.token_file = os.path.join(t, "cp-token")
        with open(cls.token_file, "w") as f:
            f.write(CONTROL_PLANE_TOKEN + "\n")
        cls.good = jwt("shop", "payments", "meshlet")
        cls.other_audience = jwt("shop", "payments", "vault")
        cls.api_server = FakeApiServer(
            cls.server_cert, {cls.good: ("shop", "payments"),
                              cls.other_audience: ("shop", "payments")},
            raw={"garbage": (201, b"<html>not a TokenReview</html>"),
                 "huge": (201, b'{"kind": "TokenReview", "x": "' + b"x" * 300000 + b'"}'),
                 "server-error": (500, b"etcd is unavailable")})
        cls.cp, cls.cp_log, cls.api, cls.ads = cls.control_plane("main", cls.api_server.address)

    @classmethod
    def control_plane(cls, name, kubernetes_api, *args):
        data, log = os.path.join(cls.tmp, name + "-data"), os.path.join(cls.tmp, name + ".log")
        # The fake API server answers TokenReviews only: no Kubernetes service discovery.
        flags = (["--kubernetes-api", kubernetes_api, "--kubernetes-discovery=false"]
                 if kubernetes_api else [])
        cp, api, ads = start_control_plane(
            CONTROL_PLANE, log, "--data-dir", data, "--api-address", "127.0.0.1:0",
            "--xds-address", "127.0.0.1:0", "--xds-tls-cert", cls.server_cert[0],
            "--xds-tls-key", cls.server_cert[1], "--kubernetes-token-file", cls.token_file,
            "--kubernetes-ca-file", cls.cluster_ca[0], *flags, *args)
        return cp, log, api, ads

    @classmethod
    def tearDownClass(cls):
        stop_process(cls.cp)
        cls.api_server.stop()

    def create_certificate(self, ads, token, timeout=8, csr=None):
        if csr is None:
            _, csr = make_key_and_csr(self.tmp, "workload")
        with open(self.server_ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        with grpc.secure_channel(ads, credentials) as channel:
            call = channel.unary_unary(
                "/meshlet.ca.v1.CertificateService/CreateCertificate",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=self.pb.CreateCertificateResponse.FromString)
            return call(self.pb.CreateCertificateRequest(csr_pem=csr, kubernetes_token=token),
                        timeout=timeout)

    def assert_refused(self, ads, log, token, reason, code=grpc.StatusCode.PERMISSION_DENIED):
        issued_before = read(log).count("issued certificate")
        with self.assertRaises(grpc.RpcError) as caught:
            self.create_certificate(ads, token)
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        self.assertIn(reason, caught.exception.details())
        text = read(log)
        self.assertIn(reason, text)
        self.assertEqual(text.count("issued certificate"), issued_before)
        return caught.exception.details()

    def metrics(self, api):
        with cp_api.urlopen(f"https://{api}/metrics", timeout=5) as r:
            return r.read().decode()

    def test_sidecar_gets_the_vouched_identity(self):
        workdir = tempfile.mkdtemp(dir=self.tmp)
        token_file = os.path.join(workdir, "token")
        with open(token_file, "w") as f:
            f.write(self.good)
        sidecar = sidecar_test.Sidecar(
            workdir, "{}\n", f"--kubernetes-token-file={token_file}", f"--ca-address={self.ads}",
            f"--xds-ca={self.server_ca}", "--node-namespace=shop",
            "--node-service-account=payments", concurrency=1)
        try:
            def identity():
                return json.loads(sidecar.get("/certs")[1]).get(
                    "workload_certificate", {}).get("identity")
            self.assertTrue(wait_for(lambda: identity() == PAYMENTS_ID, timeout=10),
                            f"{sidecar.get('/certs')}\n{read(self.cp_log)}")
        finally:
            sidecar.stop()
        self.assertIn(f"for {PAYMENTS_ID} (kubernetes,", read(self.cp_log))
        # The fake API server saw the control plane's token and the sidecar's token.
        reviewed = [json.loads(body)["spec"]["token"] for _, _, body in self.api_server.requests]
        self.assertIn(self.good, reviewed)
        self.assertEqual(self.api_server.problems, [])

        issued = self.create_certificate(self.ads, self.good)
        cert = os.path.join(self.tmp, "issued.pem")
        with open(cert, "w") as f:
            f.write(issued.certificate_chain_pem)
        text = openssl("x509", "-in", cert, "-noout", "-text").stdout.decode()
        self.assertIn("URI:" + PAYMENTS_ID, text)
        self.assertIn('meshlet_ca_token_reviews_total{result="ok"}', self.metrics(self.api))

    def test_a_pods_identity_ends_with_the_pod(self):
        # A token bound to no pod buys nothing.
        unbound = jwt("shop", "payments", "meshlet", pod=None)
        self.api_server.identities[unbound] = ("shop", "payments")
        self.assert_refused(self.ads, self.cp_log, unbound, "not bound to a pod")
        # The certificate a bound token buys names the pod...
        key, csr = make_key_and_csr(self.tmp, "pod-workload")
        pod_token = jwt("shop", "payments", "meshlet", pod=("payments-5d9c", "77aa"))
        self.api_server.identities[pod_token] = ("shop", "payments")
        issued = self.create_certificate(self.ads, pod_token, csr=csr)
        cert = os.path.join(self.tmp, "pod-issued.pem")
        with open(cert, "w") as f:
            f.write(issued.certificate_chain_pem)
        text = openssl("x509", "-in", cert, "-noout", "-text").stdout.decode()
        self.assertIn("kubernetes:shop/payments-5d9c/77aa", text)
        # ...and renews only with a token of the pod: the certificate alone is not enough,
        with open(self.server_ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=f.read(), private_key=key,
                certificate_chain=issued.certificate_chain_pem.encode())
        with grpc.secure_channel(self.ads, credentials) as channel:
            call = channel.unary_unary(
                "/meshlet.ca.v1.CertificateService/CreateCertificate",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=self.pb.CreateCertificateResponse.FromString)
            with self.assertRaises(grpc.RpcError) as caught:
                call(self.pb.CreateCertificateRequest(csr_pem=csr), timeout=8)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("renew with the pod's service-account token", caught.exception.details())
        self.assertIn('meshlet_ca_requests_refused_total{reason="renewal_needs_token"}',
                      self.metrics(self.api))
        # and once the pod is gone the API server no longer vouches for its token.
        del self.api_server.identities[pod_token]
        self.assert_refused(self.ads, self.cp_log, pod_token, "invalid bearer token")

    def test_rejected_token_and_wrong_audience_are_refused(self):
        details = self.assert_refused(self.ads, self.cp_log, jwt("shop", "admin", "meshlet"),
                                      "invalid bearer token")
        self.assertIn("service-account token refused", details)
        self.assert_refused(self.ads, self.cp_log, self.other_audience, "audience")
        self.assertIsNone(self.cp.poll())

    def test_bad_answers_are_refused(self):
        cases = [("garbage", "malformed", "is not a TokenReview object"),
                 ("huge", "too_large", "answer exceeds 262144 bytes"),
                 ("server-error", "http_error", "answered HTTP 500")]
        for token, result, reason in cases:
            self.assert_refused(self.ads, self.cp_log, token, reason, grpc.StatusCode.UNAVAILABLE)
            self.assertIn('meshlet_ca_token_reviews_total{result="%s"}' % result,
                          self.metrics(self.api))
        self.assertIsNone(self.cp.poll())

    def test_unreachable_api_server_is_refused(self):
        cp, log, api, ads = self.control_plane(
            "unreachable", f"https://127.0.0.1:{sidecar_test.free_port()}")
        try:
            self.assert_refused(ads, log, self.good, "cannot connect to the API server",
                                grpc.StatusCode.UNAVAILABLE)
            self.assertIn('meshlet_ca_token_reviews_total{result="connect_failed"}',
                          self.metrics(api))
        finally:
            stop_process(cp)

    def test_rotated_control_plane_token_is_used(self):
        # The kubelet rewrote the projected token: the next review carries the new one.
        self.api_server.bearer = "rotated-token"
        try:
            os.remove(self.token_file)
            self.assert_refused(self.ads, self.cp_log, self.good,
                                "no credentials for the Kubernetes API",
                                grpc.StatusCode.UNAVAILABLE)
            with open(self.token_file, "w") as f:
                f.write(CONTROL_PLANE_TOKEN + "\n")
            self.assert_refused(self.ads, self.cp_log, self.good, "answered HTTP 401",
                                grpc.StatusCode.UNAVAILABLE)
            with open(self.token_file, "w") as f:
                f.write("rotated-token\n")
            self.assertEqual(self.create_certificate(self.ads, self.good).spiffe_id, PAYMENTS_ID)
        finally:
            self.api_server.bearer = CONTROL_PLANE_TOKEN
            self.api_server.problems.clear()
            with open(self.token_file, "w") as f:
                f.write(CONTROL_PLANE_TOKEN + "\n")

    def test_untrusted_api_server_certificate_is_refused(self):
        stranger = FakeApiServer(make_server_cert(self.tmp, "stranger",
                                                  make_ca(self.tmp, "stranger-ca")),
                                 {self.good: ("shop", "payments")})
        cp, log, api, ads = self.control_plane("untrusted", stranger.address)
        try:
            self.assert_refused(ads, log, self.good, "TLS with the API server",
                                grpc.StatusCode.UNAVAILABLE)
            self.assertEqual(stranger.requests, [])
            self.assertIn('meshlet_ca_token_reviews_total{result="tls_failed"}',
                          self.metrics(api))
        finally:
            stop_process(cp)
            stranger.stop()

    def test_api_server_certificate_for_another_address_is_refused(self):
        # Signed by the cluster CA, but not for the address the control plane dials.
        impostor = FakeApiServer(make_server_cert(self.tmp, "impostor", self.cluster_ca,
                                                  san="IP:10.96.0.1,DNS:kubernetes.default.svc"),
                                 {self.good: ("shop", "payments")})
        cp, log, api, ads = self.control_plane("impostor", impostor.address)
        try:
            self.assert_refused(ads, log, self.good, 'is not for "127.0.0.1"',
                                grpc.StatusCode.UNAVAILABLE)
            self.assertEqual(impostor.requests, [])  # the bearer token was never sent
        finally:
            stop_process(cp)
            impostor.stop()

    def test_hanging_api_server_times_out_without_blocking(self):
        hanging = FakeApiServer(self.server_cert, {}, hang=True)
        cp, log, api, ads = self.control_plane("hanging", hanging.address,
                                               "--kubernetes-timeout", "1s")
        try:
            api_token = read(os.path.join(self.tmp, "hanging-data", "api-token")).strip()
            result = {}

            def review():
                started = time.monotonic()
                try:
                    self.create_certificate(ads, self.good)
                except grpc.RpcError as e:
                    result["error"] = e
                result["seconds"] = time.monotonic() - started
            thread = threading.Thread(target=review)
            thread.start()
            self.assertTrue(wait_for(lambda: hanging.requests, timeout=5))
            # The loop is not blocked while the review waits.
            create_join_token(api, api_token, "frontend", "1m")
            thread.join(10)
            self.assertEqual(result["error"].code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("no answer from the API server", result["error"].details())
            self.assertLess(result["seconds"], 3)
            self.assertIn("no answer from the API server", read(log))
            self.assertIn('meshlet_ca_token_reviews_total{result="timeout"}', self.metrics(api))
            self.assertIsNone(cp.poll())
        finally:
            stop_process(cp)
            hanging.stop()

    def test_in_a_pod_the_api_server_comes_from_the_environment(self):
        port = self.api_server.address.rsplit(":", 1)[1]
        os.environ.update(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=port)
        try:
            cp, log, _, ads = self.control_plane("in-pod", None)
        finally:
            del os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        try:
            self.assertEqual(self.create_certificate(ads, self.good).spiffe_id, PAYMENTS_ID)
            self.assertIn(f"reviewed by the API server 127.0.0.1:{port}", read(log))
        finally:
            stop_process(cp)

    def test_reviews_in_flight_are_bounded(self):
        hanging = FakeApiServer(self.server_cert, {}, hang=True)
        cp, log, api, ads = self.control_plane("bounded", hanging.address,
                                               "--kubernetes-timeout", "3s")
        errors = []
        _, csr = make_key_and_csr(self.tmp, "bounded")

        def review():
            try:
                self.create_certificate(ads, self.good, csr=csr)
            except grpc.RpcError as e:
                errors.append(e.details())
        try:
            threads = [threading.Thread(target=review) for _ in range(72)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(15)
            overloaded = [e for e in errors if "more than 64 requests to the API server in flight" in e]
            timeouts = [e for e in errors if "no answer from the API server" in e]
            self.assertEqual(len(overloaded) + len(timeouts), 72, errors)
            self.assertGreaterEqual(len(overloaded), 1)
            self.assertLessEqual(len(hanging.requests), 64)
            self.assertIn('meshlet_ca_token_reviews_total{result="overloaded"}',
                          self.metrics(api))
            self.assertIsNone(cp.poll())
        finally:
            stop_process(cp)
            hanging.stop()

    def test_without_an_api_server_kubernetes_tokens_are_not_configured(self):
        cp, log, _, ads = self.control_plane("off", None)
        try:
            self.assert_refused(ads, log, self.good, "not configured",
                                grpc.StatusCode.FAILED_PRECONDITION)
        finally:
            stop_process(cp)


if __name__ == "__main__":
    CONTROL_PLANE, sidecar_test.SIDECAR, CA_PROTO = sys.argv[1:4]
    CONTROL_PLANE = os.path.abspath(CONTROL_PLANE)
    sidecar_test.SIDECAR = os.path.abspath(sidecar_test.SIDECAR)
    CA_PROTO = os.path.abspath(CA_PROTO)
    unittest.main(argv=[sys.argv[0]] + sys.argv[4:], verbosity=2)
