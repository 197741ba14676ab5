"""Raw HTTP/2 frames for tests and benchmarks that misbehave on purpose (floods, abuse, slow
clients), where a library such as python3-h2 would refuse to send what they need."""

import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 2, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream_id) + payload


def hpack_literal(name, value):
    """A literal header field without indexing, new name (RFC 7541 6.2.2), no Huffman."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request_block(path=b"/", extra=b""):
    # :method GET (index 2), :scheme http (6), :path (literal), :authority (literal).
    return b"\x82\x86" + hpack_literal(b":path", path) + hpack_literal(b":authority", b"a") + extra


def read_frames(sock, timeout=10):
    """Reads until the connection ends (EOF or reset) or `timeout` passes; the frames received as
    (seconds since the call, type, flags, stream id, payload), and whether it ended."""
    start = time.time()
    sock.settimeout(timeout)
    data, frames, ended = bytearray(), [], False
    try:
        while True:
            chunk = sock.recv(1 << 16)
            now = time.time() - start
            if not chunk:
                ended = True
                break
            data += chunk
            while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                length = int.from_bytes(data[:3], "big")
                frames.append((now, data[3], data[4],
                               int.from_bytes(data[5:9], "big") & 0x7fffffff,
                               bytes(data[9:9 + length])))
                del data[:9 + length]
    except ConnectionResetError:
        ended = True
    except socket.timeout:
        pass
    return frames, ended


def goaway_fields(payload):
    """(last-stream-id, error code) of a GOAWAY frame's payload."""
    return int.from_bytes(payload[:4], "big") & 0x7fffffff, int.from_bytes(payload[4:8], "big")


def read_goaway(sock, timeout=10):
    """Reads until the connection ends; the error code of the last GOAWAY received, or None."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    code, pos = None, 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        if data[pos + 3] == GOAWAY and pos + 9 + 8 <= len(data):
            code = int.from_bytes(data[pos + 13:pos + 17], "big")
        pos += 9 + length
    return code
