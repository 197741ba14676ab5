"""A real gRPC peer (python3-grpcio) for meshlet's gRPC interop test.

  grpc_peer.py client PORT   calls the C++ server at 127.0.0.1:PORT and prints one line per check
  grpc_peer.py server        serves AggregatedDiscoveryService on 127.0.0.1:0, prints "PORT <n>",
                             and runs until terminated

Stubs generated from xds/discovery.proto and xds/node.proto must be importable (PYTHONPATH).
Every line printed is "<check> <result>" so the C++ test can assert on exact values. Exits
non-zero on the first unexpected result.
"""

import queue
import sys
from concurrent import futures

import grpc
from google.protobuf import any_pb2

from xds import discovery_pb2
from xds import discovery_pb2_grpc

SERVICE = "/meshlet.xds.AggregatedDiscoveryService/"
TYPE_URL = "type.meshlet.dev/meshlet.xds.Cluster"


def say(*parts):
    print(*parts, flush=True)


def expect(condition, what):
    if not condition:
        say("FAILED", what)
        sys.exit(1)


def run_client(port):
    channel = grpc.insecure_channel("127.0.0.1:%d" % port)
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = discovery_pb2_grpc.AggregatedDiscoveryServiceStub(channel)

    # ADS: request with a node, then ACK and NACK of the response, then half-close.
    requests = queue.Queue()

    def request_stream():
        while True:
            item = requests.get()
            if item is None:
                return
            yield item

    responses = stub.StreamAggregatedResources(request_stream(), timeout=10)
    first = discovery_pb2.DiscoveryRequest(type_url=TYPE_URL, resource_names=["backend"])
    first.node.id = "python-sidecar"
    first.node.namespace = "default"
    first.node.labels["app"] = "interop"
    requests.put(first)
    response = next(responses)
    say("ADS_RESPONSE", response.version_info, response.nonce, response.type_url,
        len(response.resources))
    ack = discovery_pb2.DiscoveryRequest(type_url=TYPE_URL, version_info=response.version_info,
                                         response_nonce=response.nonce)
    requests.put(ack)
    nack = discovery_pb2.DiscoveryRequest(type_url=TYPE_URL, version_info=response.version_info,
                                          response_nonce=response.nonce)
    nack.error_detail.code = 3
    nack.error_detail.message = "cluster backend: unknown load balancer"
    requests.put(nack)
    requests.put(None)
    rest = list(responses)
    say("ADS_STATUS", responses.code().name, len(rest))

    # Status and percent-encoded message from a handler error.
    fail = channel.unary_unary("/meshlet.test.Interop/Fail")
    try:
        fail(b"x", timeout=10)
        expect(False, "Fail did not fail")
    except grpc.RpcError as e:
        say("FAIL_STATUS", e.code().name, ascii(e.details()))

    # Unknown method.
    try:
        channel.unary_unary(SERVICE + "Nope")(b"", timeout=10)
        expect(False, "unknown method did not fail")
    except grpc.RpcError as e:
        say("UNKNOWN_STATUS", e.code().name)

    # Compressed requests are refused: only the identity encoding is supported.
    echo = channel.unary_unary("/meshlet.test.Interop/Echo")
    say("ECHO", echo(b"plain", timeout=10).decode())
    try:
        echo(b"squeeze me", timeout=10, compression=grpc.Compression.Gzip)
        expect(False, "gzip request was accepted")
    except grpc.RpcError as e:
        say("GZIP_STATUS", e.code().name)

    # Deadline: the handler never answers.
    try:
        channel.unary_unary("/meshlet.test.Interop/Hang")(b"", timeout=0.2)
        expect(False, "Hang returned")
    except grpc.RpcError as e:
        say("HANG_STATUS", e.code().name)

    channel.close()
    say("DONE")


class Servicer(discovery_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def StreamAggregatedResources(self, request_iterator, context):
        n = 0
        for request in request_iterator:
            if request.node.id == "reject-me":
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "denied: 100% \u00fcn\u00efcode")
            n += 1
            response = discovery_pb2.DiscoveryResponse(
                version_info="v%d" % n, nonce="n%d" % n, type_url=request.type_url)
            # What the server saw, so the client can check its requests arrived intact.
            response.system_version_info = "node=%s nonce=%s nack=%s" % (
                request.node.id, request.response_nonce, request.error_detail.message)
            resource = any_pb2.Any(type_url=request.type_url, value=b"\x0a\x07backend")
            response.resources.append(resource)
            yield response

    def DeltaAggregatedResources(self, request_iterator, context):
        # Used unary-style: one request, one response.
        request = next(request_iterator)
        response = discovery_pb2.DeltaDiscoveryResponse(
            type_url=request.type_url, nonce="delta-1",
            system_version_info="node=%s" % request.node.id)
        response.removed_resources.extend(request.resource_names_unsubscribe)
        for name in request.resource_names_subscribe:
            response.resources.add(name=name, version="1")
        for _ in request_iterator:
            pass
        yield response


def run_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    discovery_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    say("PORT", port)
    # Runs until the test terminates the process; the timeout is a safety net.
    server.wait_for_termination(timeout=60)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "client":
        run_client(int(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "server":
        run_server()
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
