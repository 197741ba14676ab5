"""A controllable HTTP/2 (h2c, prior knowledge) upstream built on python3-h2.

It answers every request 200 with a body naming the request, and can be told to refuse streams
before processing them, the two ways RFC 9113 gives a server:
  refuse_next = N   the next N requests get RST_STREAM(REFUSED_STREAM) instead of an answer;
  goaway_next = N   on the next N connections, the first request's HEADERS is answered with
                    GOAWAY(last_stream_id=0, NO_ERROR) and the connection closes: no stream on it
                    was processed.
Requests it processed are in `processed` as (method, path, body length); `refused` and `goaways`
count what it turned away.
"""

import socket
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions


class H2Upstream:
    def __init__(self):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.lock = threading.Lock()
        self.refuse_next = 0
        self.goaway_next = 0
        self.processed = []
        self.refused = 0
        self.goaways = 0
        self.connections = 0
        self._closed = False
        self._sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def control(self, refuse_next=None, goaway_next=None):
        with self.lock:
            if refuse_next is not None:
                self.refuse_next = refuse_next
            if goaway_next is not None:
                self.goaway_next = goaway_next

    def close(self):
        self._closed = True
        self._listener.close()
        with self.lock:
            for s in self._sockets:
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self):
        while not self._closed:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self.lock:
                self._sockets.append(sock)
                self.connections += 1
                goaway = self.goaway_next > 0
                if goaway:
                    self.goaway_next -= 1
            threading.Thread(target=self._serve, args=(sock, goaway), daemon=True).start()

    def _serve(self, sock, goaway):
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        requests = {}  # stream id -> [headers dict, body bytes]
        try:
            sock.sendall(conn.data_to_send())
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        if goaway:
                            conn.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR,
                                                  last_stream_id=0)
                            sock.sendall(conn.data_to_send())
                            with self.lock:
                                self.goaways += 1
                            return
                        with self.lock:
                            refuse = self.refuse_next > 0
                            if refuse:
                                self.refuse_next -= 1
                                self.refused += 1
                        if refuse:
                            conn.reset_stream(event.stream_id,
                                              error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
                            continue
                        requests[event.stream_id] = [dict(event.headers), b""]
                        if event.stream_ended:
                            self._answer(conn, event.stream_id, requests.pop(event.stream_id))
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                        if event.stream_id in requests:
                            requests[event.stream_id][1] += event.data
                    elif isinstance(event, h2.events.StreamEnded):
                        if event.stream_id in requests:
                            self._answer(conn, event.stream_id, requests.pop(event.stream_id))
                sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            sock.close()

    def _answer(self, conn, stream_id, request):
        headers, body = request
        method, path = headers.get(":method", ""), headers.get(":path", "")
        with self.lock:
            self.processed.append((method, path, len(body)))
        reply = f"h2 upstream method={method} path={path} body={len(body)}\n".encode()
        conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(len(reply))),
                                      ("x-upstream", "h2")])
        conn.send_data(stream_id, reply, end_stream=True)
