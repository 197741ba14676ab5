"""Interop: a real gRPC client (python3-grpcio, stubs generated from xds/*.proto with
python3-grpc-tools at test time) opens ADS streams against a real control-plane binary,
subscribes, receives resources, sends an ACK and a NACK, and finds the NACK in the control
plane's proxy status — proof that meshlet's own gRPC framing is real gRPC. Both the state of the
world and the delta stream.

Usage: xds_interop_test.py FILE_SERVER_BINARY CONTROL_PLANE_BINARY PROTO_ROOT [unittest args]
(PROTO_ROOT: the directory holding xds/*.proto)

Two servers: xds-file-server (resources from a file, exact assertions on what is sent) and the
control-plane binary itself (resources from the translator; proxy status through its API).
"""

import importlib
import os
import queue
import subprocess
import sys
import tempfile
import unittest

try:
    import grpc  # noqa: F401
    import grpc_tools.protoc  # noqa: F401
    import google.protobuf  # noqa: F401
except ImportError as e:
    sys.exit(f"{e}: python3-grpcio, python3-grpc-tools and python3-protobuf are needed "
             "(./dev deps); run with Debian's /usr/bin/python3")

import cp_api
import xds_util
from xds_util import ControlPlane, free_port, resources_yaml, wait_for

FILE_SERVER = None
CONTROL_PLANE = None
PROTO_ROOT = None

CLUSTER = "type.googleapis.com/meshlet.xds.Cluster"
ROUTES = "type.googleapis.com/meshlet.xds.RouteConfiguration"
LISTENERS = "type.googleapis.com/meshlet.xds.Listener"


class Stream:
    """One bidi ADS call fed from a queue."""

    def __init__(self, method):
        self.requests = queue.Queue()

        def feed():
            while True:
                item = self.requests.get()
                if item is None:
                    return
                yield item

        self.responses = method(feed(), timeout=20)

    def send(self, request):
        self.requests.put(request)

    def next(self):
        return next(self.responses)

    def close(self):
        self.requests.put(None)


class XdsInteropTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.pb = importlib.import_module("xds.discovery_pb2")
        cls.pb_grpc = importlib.import_module("xds.discovery_pb2_grpc")
        cls.res = importlib.import_module("xds.resources_pb2")
        import grpc
        cls.grpc = grpc
        cls.ca, cls.cert, cls.key = xds_util.make_server_cert(cls.tmp.name)
        cls.web = free_port()
        cls.cp = ControlPlane(FILE_SERVER, cls.tmp.name,
                              resources_yaml(cls.web, "hello", cluster_port=free_port()),
                              cert=cls.cert, key=cls.key)
        with open(cls.ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        # The certificate names localhost; the control plane listens on 127.0.0.1.
        cls.channel = grpc.secure_channel(f"localhost:{cls.cp.port}", credentials)
        grpc.channel_ready_future(cls.channel).result(timeout=10)
        cls.stub = cls.pb_grpc.AggregatedDiscoveryServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.cp.kill()
        cls.tmp.cleanup()

    def node(self, message, node_id):
        message.node.id = node_id
        message.node.service = "interop"
        message.node.namespace = "default"
        message.node.labels["app"] = "interop"

    def test_state_of_the_world_ack_and_nack(self):
        stream = Stream(self.stub.StreamAggregatedResources)
        # Subscribe listeners first: the server still answers clusters first (dependency order).
        for i, type_url in enumerate([LISTENERS, ROUTES, CLUSTER]):
            request = self.pb.DiscoveryRequest(type_url=type_url)
            if i == 0:
                self.node(request, "py-sotw")
            stream.send(request)
        responses = [stream.next() for _ in range(3)]
        self.assertEqual([r.type_url for r in responses], [CLUSTER, ROUTES, LISTENERS])
        clusters, routes, listeners = responses
        self.assertEqual(len(clusters.resources), 1)
        cluster = self.res.Cluster()
        self.assertTrue(clusters.resources[0].Unpack(cluster))
        self.assertEqual(cluster.name, "app")
        listener = self.res.Listener()
        self.assertTrue(listeners.resources[0].Unpack(listener))
        self.assertEqual(listener.name, "web")
        self.assertEqual(listener.address, f"127.0.0.1:{self.web}")
        self.assertEqual(len(clusters.version_info), 16)
        self.assertTrue(clusters.system_version_info)
        self.assertEqual(len({r.nonce for r in responses}), 3)

        # ACK clusters and listeners, NACK routes.
        stream.send(self.pb.DiscoveryRequest(type_url=CLUSTER, version_info=clusters.version_info,
                                             response_nonce=clusters.nonce))
        stream.send(self.pb.DiscoveryRequest(type_url=LISTENERS,
                                             version_info=listeners.version_info,
                                             response_nonce=listeners.nonce))
        nack = self.pb.DiscoveryRequest(type_url=ROUTES, response_nonce=routes.nonce)
        nack.error_detail.code = 3
        nack.error_detail.message = "interop: route refused on purpose"
        stream.send(nack)

        def reported():
            types = self.cp.types("py-sotw")
            return (types.get("routes", {}).get("state") == "NACKED" and
                    types["clusters"]["state"] == "ACKED" and
                    types["listeners"]["state"] == "ACKED")
        self.assertTrue(wait_for(reported), self.cp.status())
        types = self.cp.types("py-sotw")
        self.assertEqual(types["routes"]["last_nack"]["message"],
                         "interop: route refused on purpose")
        self.assertEqual(types["routes"]["last_nack"]["version"], routes.version_info)
        self.assertEqual(types["clusters"]["version_acked"], clusters.version_info)
        self.assertEqual(types["endpoints"]["state"], "UNSUBSCRIBED")
        proxy = self.cp.proxy("py-sotw")
        self.assertEqual(proxy["service"], "interop")
        self.assertEqual(proxy["mode"], "sotw")

        # A stale nonce changes nothing.
        stream.send(self.pb.DiscoveryRequest(type_url=ROUTES, response_nonce="not-a-nonce"))
        # A change: only what changed is pushed, and the NACKed version is not repeated.
        self.cp.reload(resources_yaml(self.web, "changed", cluster_port=cluster.load_assignment
                                      .endpoints[0].address.rsplit(":", 1)[1]))
        update = stream.next()
        self.assertEqual(update.type_url, ROUTES)
        self.assertNotEqual(update.version_info, routes.version_info)
        stream.send(self.pb.DiscoveryRequest(type_url=ROUTES, version_info=update.version_info,
                                             response_nonce=update.nonce))
        self.assertTrue(wait_for(lambda: self.cp.types("py-sotw")["routes"]["state"] == "ACKED"))
        self.assertIn("meshlet_xds_stale_nonces_total 1", self.cp.metrics())
        stream.close()
        self.cp.reload(resources_yaml(self.web, "hello", cluster_port=cluster.load_assignment
                                      .endpoints[0].address.rsplit(":", 1)[1]))

    def test_delta_ack_and_nack(self):
        stream = Stream(self.stub.DeltaAggregatedResources)
        first = self.pb.DeltaDiscoveryRequest(type_url=LISTENERS)
        self.node(first, "py-delta")
        stream.send(first)
        stream.send(self.pb.DeltaDiscoveryRequest(type_url=CLUSTER))
        clusters = stream.next()
        listeners = stream.next()
        self.assertEqual(clusters.type_url, CLUSTER)
        self.assertEqual(listeners.type_url, LISTENERS)
        self.assertEqual([r.name for r in clusters.resources], ["app"])
        self.assertEqual(len(clusters.resources[0].version), 16)
        self.assertEqual([r.name for r in listeners.resources], ["web"])
        stream.send(self.pb.DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce=clusters.nonce))
        nack = self.pb.DeltaDiscoveryRequest(type_url=LISTENERS, response_nonce=listeners.nonce)
        nack.error_detail.code = 3
        nack.error_detail.message = "interop: listener refused on purpose"
        stream.send(nack)

        def reported():
            types = self.cp.types("py-delta")
            return (types.get("listeners", {}).get("state") == "NACKED" and
                    types["clusters"]["state"] == "ACKED")
        self.assertTrue(wait_for(reported), self.cp.status())
        self.assertEqual(self.cp.types("py-delta")["listeners"]["last_nack"]["message"],
                         "interop: listener refused on purpose")
        self.assertEqual(self.cp.proxy("py-delta")["mode"], "delta")
        acked = self.cp.types("py-delta")["clusters"]["version_acked"]

        # A reconnecting client that announces what it holds gets nothing again.
        stream.close()
        again = Stream(self.stub.DeltaAggregatedResources)
        first = self.pb.DeltaDiscoveryRequest(type_url=CLUSTER)
        self.node(first, "py-delta-2")
        first.initial_resource_versions["app"] = clusters.resources[0].version
        again.send(first)
        # Nothing is sent, and what it holds counts as ACKed at its version.
        self.assertTrue(wait_for(lambda: self.cp.types("py-delta-2").get("clusters", {})
                                 .get("state") == "ACKED"), self.cp.status())
        self.assertEqual(self.cp.types("py-delta-2")["clusters"]["version_sent"], acked)
        again.close()

    def test_first_request_without_node_is_refused(self):
        stream = Stream(self.stub.StreamAggregatedResources)
        stream.send(self.pb.DiscoveryRequest(type_url=CLUSTER))
        with self.assertRaises(self.grpc.RpcError) as caught:
            stream.next()
        self.assertEqual(caught.exception.code(), self.grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("node.id", caught.exception.details())


SECRETS = "type.googleapis.com/meshlet.xds.Secret"
ENDPOINTS = "type.googleapis.com/meshlet.xds.ClusterLoadAssignment"
ALL_TYPES = [SECRETS, CLUSTER, ENDPOINTS, ROUTES, LISTENERS]


class RealControlPlaneInteropTest(unittest.TestCase):
    """The same exchange against the control-plane binary (translator, registry, policy API)."""

    @classmethod
    def setUpClass(cls):
        import grpc
        cls.grpc = grpc
        cls.tmp = tempfile.TemporaryDirectory()
        cls.pb = importlib.import_module("xds.discovery_pb2")
        cls.pb_grpc = importlib.import_module("xds.discovery_pb2_grpc")
        cls.res = importlib.import_module("xds.resources_pb2")
        cls.ca, cert, key = xds_util.make_server_cert(cls.tmp.name)
        cls.xds_port, cls.api_port = free_port(), free_port()
        data = os.path.join(cls.tmp.name, "data")
        cls.log = open(os.path.join(cls.tmp.name, "control-plane.log"), "w")
        cls.proc = subprocess.Popen(
            [CONTROL_PLANE, f"--data-dir={data}", f"--api-address=127.0.0.1:{cls.api_port}",
             f"--xds-address=127.0.0.1:{cls.xds_port}", f"--xds-tls-cert={cert}",
             f"--xds-tls-key={key}", "--xds-listen-host=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=cls.log)
        token_path = os.path.join(data, "api-token")
        cls.ca_file = cp_api.root_file(data)
        if not wait_for(lambda: os.path.exists(token_path) and
                        xds_util.http_get(cls.api_port, "/healthz", ca_file=cls.ca_file)[0]
                        == 200):
            raise AssertionError("control plane did not start")
        with open(token_path) as f:
            cls.token = f.read().strip()
        with open(cls.ca, "rb") as f:
            server_ca = f.read()
        # The discovery port serves only clients with a workload certificate: this client buys
        # one from the CA on the same port with a join token, as a sidecar does.
        key, chain = cls.workload_certificate(server_ca, "py")
        credentials = grpc.ssl_channel_credentials(root_certificates=server_ca, private_key=key,
                                                   certificate_chain=chain)
        cls.channel = grpc.secure_channel(f"localhost:{cls.xds_port}", credentials)
        grpc.channel_ready_future(cls.channel).result(timeout=10)
        cls.stub = cls.pb_grpc.AggregatedDiscoveryServiceStub(cls.channel)

    @classmethod
    def workload_certificate(cls, server_ca, service_account):
        """(key PEM, chain PEM) for default/`service_account` from the control plane's CA."""
        import json
        import urllib.request
        req = urllib.request.Request(
            cp_api.url(f"127.0.0.1:{cls.api_port}", "/api/v1/tokens"), method="POST",
            data=json.dumps({"namespace": "default", "serviceAccount": service_account,
                             "ttl": "10m"}).encode(),
            headers={"Authorization": f"Bearer {cls.token}"})
        with urllib.request.urlopen(req, timeout=5,
                                    context=cp_api.ssl_context(cls.ca_file)) as resp:
            token = json.loads(resp.read())["token"]
        key_path = os.path.join(cls.tmp.name, "client-key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", key_path], check=True,
                       capture_output=True)
        csr = subprocess.run(["openssl", "req", "-new", "-key", key_path, "-subj", "/CN=py"],
                             check=True, capture_output=True, text=True).stdout
        ca_pb2 = importlib.import_module("xds.ca_pb2")
        with cls.grpc.secure_channel(f"localhost:{cls.xds_port}",
                                     cls.grpc.ssl_channel_credentials(server_ca)) as channel:
            call = channel.unary_unary(
                "/meshlet.ca.v1.CertificateService/CreateCertificate",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=ca_pb2.CreateCertificateResponse.FromString)
            response = call(ca_pb2.CreateCertificateRequest(csr_pem=csr, join_token=token),
                            timeout=10)
        with open(key_path, "rb") as f:
            return f.read(), response.certificate_chain_pem.encode()

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proc.terminate()
        cls.proc.wait(timeout=10)
        cls.log.close()
        cls.tmp.cleanup()

    def proxies(self):
        import json
        import urllib.request
        req = urllib.request.Request(f"https://127.0.0.1:{self.api_port}/api/v1/proxies",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=5,
                                    context=cp_api.ssl_context(self.ca_file)) as resp:
            return {p["id"]: p for p in json.loads(resp.read())["items"]}

    def test_state_of_the_world_ack_and_nack_in_api_proxy_status(self):
        stream = Stream(self.stub.StreamAggregatedResources)
        for i, type_url in enumerate(ALL_TYPES):
            request = self.pb.DiscoveryRequest(type_url=type_url)
            if i == 0:
                request.node.id = "py-real.default"
                request.node.service = "py"
                request.node.namespace = "default"
                request.node.service_account = "py"
                request.node.ports.append(8080)
                request.node.addresses.append("127.0.0.1")
            stream.send(request)
        responses = [stream.next() for _ in ALL_TYPES]
        self.assertEqual([r.type_url for r in responses], ALL_TYPES)
        listeners = responses[-1]
        names = []
        for any_resource in listeners.resources:
            listener = self.res.Listener()
            self.assertTrue(any_resource.Unpack(listener))
            names.append(listener.name)
        self.assertIn("inbound", names)
        for response in responses:
            request = self.pb.DiscoveryRequest(type_url=response.type_url,
                                               response_nonce=response.nonce,
                                               version_info=response.version_info)
            if response.type_url == ROUTES:
                request.version_info = ""
                request.error_detail.code = 3
                request.error_detail.message = "interop: routes refused on purpose"
            stream.send(request)

        def reported():
            proxy = self.proxies().get("py-real.default")
            return proxy and proxy["types"][ROUTES]["nack"] and \
                proxy["types"][LISTENERS]["state"] == "ACKED"
        self.assertTrue(wait_for(reported), self.proxies())
        proxy = self.proxies()["py-real.default"]
        self.assertEqual(proxy["types"][ROUTES]["nack"], "interop: routes refused on purpose")
        self.assertEqual(proxy["types"][ROUTES]["state"], "NACKED")
        self.assertEqual(proxy["types"][CLUSTER]["acked"], responses[1].version_info)
        self.assertEqual(proxy["service"], "py")
        stream.close()

    def test_delta_ack_and_nack_in_api_proxy_status(self):
        stream = Stream(self.stub.DeltaAggregatedResources)
        first = self.pb.DeltaDiscoveryRequest(type_url=CLUSTER)
        first.node.id = "py-real-delta.default"
        first.node.service = "py"
        first.node.service_account = "py"
        first.node.ports.append(8080)  # an inbound cluster: delta sends nothing for empty types
        stream.send(first)
        stream.send(self.pb.DeltaDiscoveryRequest(type_url=LISTENERS))
        clusters, listeners = stream.next(), stream.next()
        self.assertEqual((clusters.type_url, listeners.type_url), (CLUSTER, LISTENERS))
        self.assertGreater(len(clusters.resources), 0)
        stream.send(self.pb.DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce=clusters.nonce))
        nack = self.pb.DeltaDiscoveryRequest(type_url=LISTENERS, response_nonce=listeners.nonce)
        nack.error_detail.code = 3
        nack.error_detail.message = "interop: delta listeners refused"
        stream.send(nack)
        self.assertTrue(wait_for(lambda: self.proxies().get("py-real-delta.default", {})
                                 .get("types", {}).get(LISTENERS, {}).get("nack") ==
                                 "interop: delta listeners refused"), self.proxies())
        self.assertEqual(self.proxies()["py-real-delta.default"]["types"][CLUSTER]["state"],
                         "ACKED")
        stream.close()


if __name__ == "__main__":
    FILE_SERVER = os.path.abspath(sys.argv.pop(1))
    CONTROL_PLANE = os.path.abspath(sys.argv.pop(1))
    PROTO_ROOT = os.path.abspath(sys.argv.pop(1))
    with tempfile.TemporaryDirectory() as stubs:
        xds_util.generate_stubs(PROTO_ROOT, stubs)
        unittest.main()
