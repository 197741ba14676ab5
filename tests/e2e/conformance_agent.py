"""Requests and a gRPC echo for //tests/e2e:gateway_conformance_test, in a pod's network namespace.

    conformance_agent.py http  < REQUESTS.json     HTTP requests; prints one JSON list of answers
    conformance_agent.py http  < ROUNDS.json       the same requests in rounds; a list of lists
    conformance_agent.py grpc  < CALLS.json        gRPC calls; prints one JSON list of answers
    conformance_agent.py grpc-serve --port 7070 --service S --namespace NS --pod P

The test runs it with the host's /usr/bin/python3 (Debian's python3-grpcio) under `nsenter --net`
into a pod's network namespace: its connections start where the pod's app's would, so the pod's
capture rules hand them to its sidecar (the agent runs as root, not as the proxy's uid), and a
server it runs is reached through the pod's inbound capture like the app. The pods' images are
built from scratch and hold no Python.

http: REQUESTS is a list of {"ip", "port", "host", "method", "path", "headers": {name: value},
"repeat"}; `{uuid}` in a path becomes a fresh random uuid per request. Each request goes on a
connection of its own and is never redirected. An answer is {"status", "headers": {lowercase
name: value, repeated ones joined with ","}, "body"} or {"error"}; a request with "repeat": N
gives N answers in a list. A request with "tls": {"ca": PEM path} goes over HTTPS, its
certificate verified against that CA for the Host's name, sent as SNI.
ROUNDS is {"requests": REQUESTS, "rounds": N, "pause": seconds between rounds, "statuses": [the
statuses each request's answer may have]}: REQUESTS sent N times (one interpreter start for a
test's consecutive rounds), stopping after the first round in which an answer has another status
or none; the answers of each round sent.

grpc: CALLS is a list of {"ip", "port", "authority", "method" (/package.Service/Method),
"metadata": {name: value}, "repeat"}; an answer is {"code", "details", "body"} (the echo's JSON).

grpc-serve: answers every unary call of any method with JSON naming the server (service,
namespace, pod), the method and the call's metadata ({name: [values]}), until its stdin closes.
"""

import argparse
import http.client
import json
import socket
import ssl
import sys
import threading
import time
import uuid as uuid_lib

TIMEOUT_S = 10


def http_one(req):
    path = req.get("path", "/").replace("{uuid}", str(uuid_lib.uuid4()))
    timeout = req.get("timeout", TIMEOUT_S)
    conn = http.client.HTTPConnection(req["ip"], req["port"], timeout=timeout)
    try:
        if req.get("tls"):
            # The certificate is checked for the Host's name (without a port), sent as SNI.
            context = ssl.create_default_context(cafile=req["tls"]["ca"])
            raw = socket.create_connection((req["ip"], req["port"]), timeout=timeout)
            try:
                conn.sock = context.wrap_socket(raw, server_hostname=req["host"].split(":")[0])
            except BaseException:
                raw.close()
                raise
        headers = {"Host": req["host"]}
        headers.update(req.get("headers", {}))
        conn.request(req.get("method", "GET"), path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        joined = {}
        for name, value in resp.getheaders():
            name = name.lower()
            joined[name] = joined[name] + "," + value if name in joined else value
        return {"status": resp.status, "headers": joined, "body": body, "path": path}
    except (OSError, http.client.HTTPException) as e:
        return {"error": "%s: %s" % (type(e).__name__, e), "path": path}
    finally:
        conn.close()


def run_http(requests):
    out = []
    for req in requests:
        if "repeat" in req:
            out.append([http_one(req) for _ in range(int(req["repeat"]))])
        else:
            out.append(http_one(req))
    return out


def run_rounds(spec):
    out = []
    for i in range(int(spec["rounds"])):
        if i:
            time.sleep(float(spec.get("pause", 0)))
        answers = run_http(spec["requests"])
        out.append(answers)
        if any(isinstance(a, dict) and a.get("status") not in statuses
               for a, statuses in zip(answers, spec["statuses"])):
            break
    return out


def identity(data):
    return data


def run_grpc(calls):
    import grpc
    out = []
    for call in calls:
        channel = grpc.insecure_channel(
            "%s:%d" % (call["ip"], call["port"]),
            options=[("grpc.default_authority", call["authority"]),
                     ("grpc.enable_http_proxy", 0)])
        stub = channel.unary_unary(call.get("method", "/meshlet.e2e.Echo/Echo"),
                                   request_serializer=identity, response_deserializer=identity)
        answers = []
        for _ in range(int(call.get("repeat", 1))):
            try:
                body = stub(b"", metadata=list(call.get("metadata", {}).items()),
                            timeout=TIMEOUT_S)
                answers.append({"code": "OK", "body": json.loads(body.decode())})
            except grpc.RpcError as e:
                answers.append({"code": e.code().name, "details": e.details()})
        channel.close()
        out.append(answers if "repeat" in call else answers[0])
    return out


def serve_grpc(args):
    import grpc
    from concurrent import futures

    def echo(request, context):
        metadata = {}
        for key, value in context.invocation_metadata():
            metadata.setdefault(key, []).append(value)
        return json.dumps({"service": args.service, "namespace": args.namespace,
                           "pod": args.pod, "method": method_of(context),
                           "metadata": metadata}).encode()

    def method_of(context):
        # The method's name is not on the servicer context; the handler below records it.
        return getattr(context, "_meshlet_method", "")

    class AnyMethod(grpc.GenericRpcHandler):
        def service(self, handler_call_details):
            name = handler_call_details.method

            def handle(request, context):
                context._meshlet_method = name
                return echo(request, context)
            return grpc.unary_unary_rpc_method_handler(
                handle, request_deserializer=identity, response_serializer=identity)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((AnyMethod(),))
    server.add_insecure_port("0.0.0.0:%d" % args.port)
    server.start()
    print("listening on 0.0.0.0:%d" % args.port, flush=True)
    done = threading.Event()

    def watch_stdin():
        sys.stdin.read()  # until the test (its parent) closes it or is gone
        done.set()
    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    server.stop(0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["http", "grpc", "grpc-serve"])
    p.add_argument("--port", type=int, default=7070)
    p.add_argument("--service", default="")
    p.add_argument("--namespace", default="")
    p.add_argument("--pod", default="")
    args = p.parse_args()
    if args.mode == "grpc-serve":
        serve_grpc(args)
        return 0
    requests = json.load(sys.stdin)
    if args.mode == "grpc":
        out = run_grpc(requests)
    elif isinstance(requests, dict):
        out = run_rounds(requests)
    else:
        out = run_http(requests)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
