"""Requests and a gRPC echo for //tests/e2e:gateway_conformance_test, in a pod's network namespace.

    conformance_agent.py http  < REQUESTS.json     HTTP requests; prints one JSON list of answers
    conformance_agent.py http  < ROUNDS.json       the same requests in rounds; a list of lists
    conformance_agent.py grpc  < CALLS.json        gRPC calls; prints one JSON list of answers
    conformance_agent.py grpc-serve --port 7070 --service S --namespace NS --pod P
    conformance_agent.py h2c   < REQUESTS.json     HTTP/2 requests with prior knowledge (cleartext)
    conformance_agent.py ws    < SESSIONS.json     WebSocket sessions; one JSON list of answers
    conformance_agent.py h2c-serve --port 3001 --service S --namespace NS --pod P
    conformance_agent.py ws-serve --port 3000 --service S --namespace NS --pod P
    conformance_agent.py tls-serve --port 8443 --cert PEM --key PEM --service S --namespace NS
                                   --pod P

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

h2c: REQUESTS and answers as for http, each request on a connection of its own that speaks
HTTP/2 from its first byte (the connection preface, no Upgrade: RFC 9113 section 3.3).

h2c-serve: an HTTP/2 server with prior knowledge only (Debian's python3-h2): a connection that
does not start with the HTTP/2 preface is closed unanswered. Every request is answered 200 with
the JSON of testapp's echo mode ({"path", "host", "method", "proto": "HTTP/2.0", "headers":
{name: [values]}, "service", "namespace", "pod", "status"}), until its stdin closes.

ws: SESSIONS is a list of {"ip", "port", "host", "path", "origin", "messages": [{"text": S} or
{"binary": [bytes as ints]}]}: the RFC 6455 opening handshake (its Sec-WebSocket-Accept checked),
then each message as one masked frame, waiting for one message back before the next, then a
close. An answer is {"status": 101, "headers": {...}, "replies": [{"text"} or {"binary"}]}, or
{"status", "headers"} when the handshake was refused, or {"error"}.

tls-serve: an HTTPS echo (HTTP/1.1, keep-alive) presenting --cert/--key (PEM paths): every
request is answered 200 with the JSON of testapp's echo mode ({"path", "host", "method", "proto",
"headers", "service", "namespace", "pod", "status"}) and "sni", the server name the client's
ClientHello asked for (null without one), until its stdin closes. A handshake that fails (the
client refused the certificate) is logged with the reason.

ws-serve: a WebSocket echo (RFC 6455): the opening handshake of a GET asking to upgrade to
websocket is answered 101 with x-echo-service, x-echo-namespace and x-echo-pod naming the server;
then every text or binary message is sent back as it came, pings answered, a close returned. A
request that does not ask for a WebSocket gets 426. Until its stdin closes.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import uuid as uuid_lib

TIMEOUT_S = 10
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
WS_MAX_MESSAGE = 1 << 20  # larger messages end the session (both sides)


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
        wait_for_stdin_end()
        done.set()
    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    server.stop(0)


def wait_for_stdin_end():
    """Blocks until the test (the parent) closes stdin or is gone."""
    sys.stdin.read()


# --- HTTP/2 with prior knowledge ------------------------------------------------------------------

def h2c_one(req):
    import h2.config
    import h2.connection
    import h2.events
    path = req.get("path", "/").replace("{uuid}", str(uuid_lib.uuid4()))
    sock = None
    try:
        sock = socket.create_connection((req["ip"], req["port"]), timeout=req.get("timeout",
                                                                                TIMEOUT_S))
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        headers = [(":method", req.get("method", "GET")), (":scheme", "http"),
                   (":authority", req["host"]), (":path", path)]
        headers += [(k.lower(), v) for k, v in req.get("headers", {}).items()]
        conn.send_headers(1, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, joined, body = None, {}, b""
        while True:
            data = sock.recv(65536)
            if not data:
                return {"error": "connection closed before the answer ended", "path": path}
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    for name, value in event.headers:
                        if name == ":status":
                            status = int(value)
                        elif not name.startswith(":"):
                            joined[name] = joined[name] + "," + value if name in joined else value
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    return {"error": "stream reset (code %s)" % event.error_code, "path": path}
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return {"error": "GOAWAY (code %s)" % event.error_code, "path": path}
                elif isinstance(event, h2.events.StreamEnded) and status is not None:
                    conn.close_connection()
                    sock.sendall(conn.data_to_send())
                    return {"status": status, "headers": joined, "path": path,
                            "body": body.decode("utf-8", "replace")}
            sock.sendall(conn.data_to_send())
    except Exception as e:  # noqa: BLE001 (h2's protocol errors and socket errors alike)
        return {"error": "%s: %s" % (type(e).__name__, e), "path": path}
    finally:
        if sock is not None:
            sock.close()


def serve_h2c(args):
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
                client_side=False, header_encoding="utf-8"))
            conn.initiate_connection()
            self.request.sendall(conn.data_to_send())
            heads = {}
            try:
                while True:
                    data = self.request.recv(65536)
                    if not data:
                        return
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            heads[event.stream_id] = event.headers
                        elif isinstance(event, h2.events.DataReceived):
                            conn.acknowledge_received_data(event.flow_controlled_length,
                                                           event.stream_id)
                        elif isinstance(event, h2.events.StreamEnded):
                            answer(conn, event.stream_id, heads.pop(event.stream_id, []))
                        elif isinstance(event, h2.events.ConnectionTerminated):
                            self.request.sendall(conn.data_to_send())
                            return
                    self.request.sendall(conn.data_to_send())
            except (h2.exceptions.ProtocolError, OSError) as e:
                print("h2c connection from %s closed: %s" % (self.client_address[0], e),
                      flush=True)

    def answer(conn, stream_id, head):
        pseudo = {k: v for k, v in head if k.startswith(":")}
        regular = {}
        for k, v in head:
            if not k.startswith(":"):
                regular.setdefault(k, []).append(v)
        body = json.dumps({"path": pseudo.get(":path", ""), "host": pseudo.get(":authority", ""),
                           "method": pseudo.get(":method", ""), "proto": "HTTP/2.0",
                           "headers": regular, "namespace": args.namespace,
                           "service": args.service, "pod": args.pod, "status": 200}).encode()
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/json"),
                                      ("content-length", str(len(body)))])
        conn.send_data(stream_id, body, end_stream=True)
        print("%s %s HTTP/2.0 200" % (pseudo.get(":method"), pseudo.get(":path")), flush=True)

    serve(args, Handler)


# --- WebSocket (RFC 6455) -------------------------------------------------------------------------

def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def read_exactly(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(out), n))
        out += chunk
    return out


def ws_send(sock, opcode, payload, mask):
    """One final frame; masked (a client's) when `mask`."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    if len(payload) < 126:
        head += bytes([bit | len(payload)])
    elif len(payload) < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", len(payload))
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    sock.sendall(head + payload)


def ws_frame(sock):
    """(fin, opcode, payload) of the next frame, unmasked."""
    b0, b1 = read_exactly(sock, 2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exactly(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exactly(sock, 8))[0]
    if length > WS_MAX_MESSAGE:
        raise ValueError("a frame of %d bytes, more than %d" % (length, WS_MAX_MESSAGE))
    key = read_exactly(sock, 4) if b1 & 0x80 else None
    payload = read_exactly(sock, length)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bool(b0 & 0x80), b0 & 0x0F, payload


def ws_message(sock, mask):
    """(opcode, payload) of the next message (fragments joined); pings answered on the way. A
    close is returned as opcode 8."""
    opcode, data = None, b""
    while True:
        fin, op, payload = ws_frame(sock)
        if op == 9:
            ws_send(sock, 10, payload, mask)
            continue
        if op == 10:
            continue
        if op == 8:
            return 8, payload
        if op != 0:
            opcode = op
        data += payload
        if len(data) > WS_MAX_MESSAGE:
            raise ValueError("a message of more than %d bytes" % WS_MAX_MESSAGE)
        if fin:
            return opcode, data


def read_head(sock):
    """The HTTP head (up to the blank line) and what followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the end of the HTTP head")
        data += chunk
        if len(data) > 65536:
            raise ValueError("an HTTP head of more than 64 KiB")
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers[name] = headers[name] + "," + value.strip() if name in headers else value.strip()
    return lines[0], headers, rest


def ws_one(session):
    sock = None
    try:
        sock = socket.create_connection((session["ip"], session["port"]),
                                        timeout=session.get("timeout", TIMEOUT_S))
        key = base64.b64encode(os.urandom(16)).decode()
        head = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (
                    session.get("path", "/"), session["host"], key))
        if session.get("origin"):
            head += "Origin: %s\r\n" % session["origin"]
        sock.sendall((head + "\r\n").encode())
        status_line, headers, rest = read_head(sock)
        status = int(status_line.split(" ")[1])
        if status != 101:
            return {"status": status, "headers": headers}
        if rest:
            return {"error": "bytes before any message: %r" % rest[:80]}
        if headers.get("sec-websocket-accept") != ws_accept(key):
            return {"error": "Sec-WebSocket-Accept %r, expected %r" % (
                headers.get("sec-websocket-accept"), ws_accept(key))}
        replies = []
        for message in session.get("messages", []):
            if "text" in message:
                ws_send(sock, 1, message["text"].encode(), True)
            else:
                ws_send(sock, 2, bytes(message["binary"]), True)
            opcode, payload = ws_message(sock, True)
            if opcode == 1:
                replies.append({"text": payload.decode("utf-8", "replace")})
            elif opcode == 2:
                replies.append({"binary": list(payload)})
            else:
                replies.append({"opcode": opcode})
                break
        ws_send(sock, 8, struct.pack("!H", 1000), True)
        return {"status": 101, "headers": headers, "replies": replies}
    except (OSError, ValueError, IndexError) as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}
    finally:
        if sock is not None:
            sock.close()


def serve_ws(args):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            try:
                request_line, headers, _ = read_head(sock)
                key = headers.get("sec-websocket-key")
                if "websocket" not in headers.get("upgrade", "").lower() or not key:
                    body = b"this port speaks WebSocket only\n"
                    sock.sendall(b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n"
                                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (
                                     len(body), body))
                    return
                sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                              "x-echo-service: %s\r\nx-echo-namespace: %s\r\n"
                              "x-echo-pod: %s\r\n\r\n" % (ws_accept(key), args.service,
                                                           args.namespace, args.pod)).encode())
                print("%s 101" % request_line, flush=True)
                while True:
                    opcode, payload = ws_message(sock, False)
                    if opcode == 8:
                        ws_send(sock, 8, payload[:2], False)
                        return
                    ws_send(sock, opcode, payload, False)
            except (OSError, ValueError, IndexError) as e:
                print("WebSocket session from %s ended: %s" % (self.client_address[0], e),
                      flush=True)

    serve(args, Handler)


# --- HTTPS with the server name seen -------------------------------------------------------------

def serve_tls(args):
    import http.server

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    seen = threading.local()

    def remember_sni(_sock, name, _context):
        seen.sni = name

    context.sni_callback = remember_sni

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            # The handshake runs in this connection's own thread, where the callback records the
            # name; a client that refuses the certificate ends the connection here.
            seen.sni = None
            try:
                self.request = context.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                print("TLS handshake from %s failed: %s" % (self.client_address[0], e),
                      flush=True)
                self.request.close()
                raise
            self.sni = seen.sni
            super().setup()

        def do_GET(self):
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            headers = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            body = json.dumps({"path": self.path, "host": self.headers.get("host", ""),
                               "method": self.command, "proto": self.request_version,
                               "headers": headers, "namespace": args.namespace,
                               "service": args.service, "pod": args.pod, "status": 200,
                               "sni": self.sni}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

        def log_message(self, fmt, *a):
            print("%s sni=%s %s" % (self.client_address[0], self.sni, fmt % a), flush=True)

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # a failed handshake, logged by the handler

    server = Server(("0.0.0.0", args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("listening on 0.0.0.0:%d" % args.port, flush=True)
    wait_for_stdin_end()
    server.shutdown()


def serve(args, handler):
    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server(("0.0.0.0", args.port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("listening on 0.0.0.0:%d" % args.port, flush=True)
    wait_for_stdin_end()
    server.shutdown()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["http", "grpc", "grpc-serve", "h2c", "ws", "h2c-serve",
                                    "ws-serve", "tls-serve"])
    p.add_argument("--port", type=int, default=7070)
    p.add_argument("--service", default="")
    p.add_argument("--namespace", default="")
    p.add_argument("--pod", default="")
    p.add_argument("--cert", default="")
    p.add_argument("--key", default="")
    args = p.parse_args()
    if args.mode == "grpc-serve":
        serve_grpc(args)
        return 0
    if args.mode == "tls-serve":
        serve_tls(args)
        return 0
    if args.mode in ("h2c-serve", "ws-serve"):
        (serve_h2c if args.mode == "h2c-serve" else serve_ws)(args)
        return 0
    requests = json.load(sys.stdin)
    if args.mode == "http" and isinstance(requests, dict):
        out = run_rounds(requests)
    else:
        out = {"http": run_http, "grpc": run_grpc, "h2c": lambda rs: [h2c_one(r) for r in rs],
               "ws": lambda rs: [ws_one(r) for r in rs]}[args.mode](requests)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
