"""Cost of mesh mTLS between two sidecars (docs/performance.md, "Mesh mTLS").

Usage: mtls_bench.py --sidecar PATH [--duration 10] [--rounds 3] [--smoke]

Two measurements, both on an optimized build (`bazel build --config=opt //sidecar`):

1. Steady state: h2load (h2c, many streams) -> sidecar A (outbound) -> sidecar B (inbound) ->
   nginx (1 KiB body), A -> B over one pooled HTTP/2 connection, either mTLS (ECDSA P-256
   certificates with SPIFFE ids, STRICT on B, the peer's id checked by A) or plaintext. Both
   sidecars run with one worker, pinned together to core 0; nginx and h2load share core 1. The
   two variants alternate round by round; the figure is the ratio of the median requests/s
   (mTLS / plaintext) and the sidecars' CPU time per request.
2. New handshakes: `openssl s_time -new` (a full TLS 1.3 handshake with a client certificate per
   connection, no resumption) against B's STRICT listener, two clients on core 1. B's CPU time
   over the run (from /proc) gives handshakes per CPU-second of B, i.e. per core. Then the same
   for resumed handshakes: two Python clients that offer a ticket B issued on every connection.

Certificates are generated at run time with the openssl CLI. --smoke runs each part for a second
and only checks that everything answered.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_compare as pc  # noqa: E402  (helpers: processes, CPU time, nginx upstream)

TRUST_DOMAIN = "cluster.local"


def spiffe(sa):
    return f"spiffe://{TRUST_DOMAIN}/ns/bench/sa/{sa}"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd)


def make_certificates(d, extensions="", dns_names=False):
    """ca.pem (the mesh root) and a.pem, b.pem (SPIFFE ids of service accounts a and b in
    namespace bench, for client and server use) with their keys, in `d`. `extensions`: more
    openssl extfile lines for both leaves. `dns_names`: the leaves also name a.bench and b.bench,
    for peers that verify a host name rather than a SPIFFE id (nginx)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", "/CN=bench mesh root", "-days",
            "1", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    for sa in ("a", "b"):
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{sa}-key.pem", "-out", f"{sa}.csr", "-subj", "/", cwd=d)
        with open(os.path.join(d, f"{sa}.ext"), "w") as f:
            dns = f",DNS:{sa}.bench" if dns_names else ""
            f.write(f"subjectAltName=critical,URI:{spiffe(sa)}{dns}\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n"
                    + extensions)
        openssl("x509", "-req", "-in", f"{sa}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-days", "1", "-extfile", f"{sa}.ext", "-out", f"{sa}.pem",
                cwd=d)


def secret(name, d, sa):
    return (f"  - name: {name}\n    certificate_chain_file: {d}/{sa}.pem\n"
            f"    private_key_file: {d}/{sa}-key.pem\n    trust_bundle_file: {d}/ca.pem\n")


def sidecar_b(d, mtls_port, plain_port, upstream_port):
    routes = """  - name: app
    virtual_hosts:
    - name: all
      domains: ["*"]
      routes:
      - match: {prefix: /}
        route: {cluster: upstream, timeout: 0s}
"""
    return (f"""static_resources:
  secrets:
{secret("b-cert", d, "b")}  listeners:
  - name: inbound-mtls
    address: 127.0.0.1:{mtls_port}
    direction: INBOUND
    protocol: PROTOCOL_HTTP
    route_config_name: app
    tls: {{mode: STRICT, secret_name: b-cert, allowed_peer_ids: ["{spiffe('a')}"]}}
  - name: inbound-plain
    address: 127.0.0.1:{plain_port}
    direction: INBOUND
    protocol: PROTOCOL_HTTP
    route_config_name: app
  clusters:
  - name: upstream
    load_assignment:
      endpoints: [{{address: "127.0.0.1:{upstream_port}"}}]
  routes:
{routes}""")


def sidecar_a(d, mtls_out, plain_out, b_mtls, b_plain):
    def listener(name, port, route):
        return (f"  - name: {name}\n    address: 127.0.0.1:{port}\n    direction: OUTBOUND\n"
                f"    protocol: PROTOCOL_HTTP\n    route_config_name: {route}\n")

    def routes(name, cluster):
        return (f"  - name: {name}\n    virtual_hosts:\n    - name: all\n      domains: [\"*\"]\n"
                f"      routes:\n      - match: {{prefix: /}}\n"
                f"        route: {{cluster: {cluster}, timeout: 0s}}\n")

    def cluster(name, port, tls):
        return (f"  - name: {name}\n    protocol: UPSTREAM_HTTP2\n"
                f"    load_assignment:\n      endpoints: [{{address: \"127.0.0.1:{port}\"}}]\n"
                + (f"    tls: {{enabled: true, secret_name: a-cert, expected_peer_ids: "
                   f"[\"{spiffe('b')}\"]}}\n" if tls else ""))

    return ("static_resources:\n  secrets:\n" + secret("a-cert", d, "a")
            + "  listeners:\n" + listener("out-mtls", mtls_out, "via-mtls")
            + listener("out-plain", plain_out, "via-plain")
            + "  clusters:\n" + cluster("b-mtls", b_mtls, True) + cluster("b-plain", b_plain, False)
            + "  routes:\n" + routes("via-mtls", "b-mtls") + routes("via-plain", "b-plain"))


def start_sidecar(args, name, d, config, admin_port):
    path = os.path.join(d, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(config)
    return pc.Proc(name, [args.sidecar, "--config", path, "--concurrency", "1",
                          f"--admin-address=127.0.0.1:{admin_port}", "--log-level", "warn"],
                   d, cpu=0)


def steady_state(port, duration, sidecars, load_cpu):
    warm_up = 1
    h2load = subprocess.Popen(
        ["taskset", "-c", str(load_cpu), "h2load", "-c", "16", "-m", "10", "-D", str(duration),
         "--warm-up-time", str(warm_up), f"http://127.0.0.1:{port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # CPU time over the measured part only (h2load counts no requests during its warm-up).
    time.sleep(warm_up)
    before = sum(sum(pc.cpu_seconds(p.pid)) for p in sidecars)
    out, err = h2load.communicate(timeout=duration + 60)
    cpu = sum(sum(pc.cpu_seconds(p.pid)) for p in sidecars) - before
    result = pc.parse_h2load(out, os.devnull)
    if result["requests"] == 0 or result["errors"]:
        raise RuntimeError(f"h2load through port {port} failed:\n{out}\n{err}")
    result["cpu_us_per_request"] = cpu / result["requests"] * 1e6
    return result


# A client that resumes: one full handshake and a request (a TLS 1.3 ticket arrives after the
# handshake, so it must read), then handshake after handshake offering that session, closing each
# connection right after its handshake as `s_time -new` does. Prints its count of resumed ones.
RESUMING_CLIENT = r"""
import socket, ssl, sys, time
port, duration = int(sys.argv[1]), float(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations("ca.pem")
ctx.load_cert_chain("a.pem", "a-key.pem")
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port))) as first:
    first.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
    while first.recv(65536):
        pass
    session = first.session
resumed = 0
end = time.monotonic() + duration
while time.monotonic() < end:
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), session=session) as conn:
        resumed += conn.session_reused
print(resumed)
"""


def handshakes(d, port, duration, b, load_cpu, resume=False):
    """Handshakes in `duration` s of two clients, and B's CPU seconds meanwhile: `openssl s_time
    -new` (a full handshake each time), or with `resume` the client above."""
    if resume:
        command = [sys.executable, "-c", RESUMING_CLIENT, str(port), str(duration)]
    else:
        command = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time",
                   str(duration), "-cert", "a.pem", "-key", "a-key.pem", "-CAfile", "ca.pem"]
    before = sum(pc.cpu_seconds(b.pid))
    clients = [subprocess.Popen(["taskset", "-c", str(load_cpu)] + command, cwd=d,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    total = 0
    for c in clients:
        out, _ = c.communicate(timeout=duration + 60)
        match = re.search(r"^(\d+)$", out.strip()) if resume else \
            re.search(r"(\d+) connections in [\d.]+s", out)
        if not match:
            raise RuntimeError("handshake client failed:\n" + out)
        total += int(match.group(1))
    cpu = sum(pc.cpu_seconds(b.pid)) - before
    return total, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sidecar", required=True)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.rounds = 1, 1
    for tool in ("h2load", "openssl", "taskset", "nginx"):
        if pc.find_tool(tool) is None:
            print(f"SKIP mtls_bench: {tool} not installed")
            return 0
    load_cpu = 1 if os.cpu_count() and os.cpu_count() > 1 else 0
    d = tempfile.mkdtemp(prefix="mtls-bench-")
    try:
        make_certificates(d)
        up_h1, up_h2 = pc.free_port(), pc.free_port()
        upstream = pc.Proc("upstream", [pc.find_tool("nginx"), "-c", pc.render(
            "upstream-nginx.conf", d,
            {"DIR": d, "H1_PORT": up_h1, "H2_PORT": up_h2, "BODY": "x" * pc.BODY_BYTES}),
            "-p", d], d, cpu=load_cpu)
        pc.wait_ready(upstream, up_h1)
        b_mtls, b_plain, a_mtls, a_plain = (pc.free_port() for _ in range(4))
        b_admin = pc.free_port()
        b = start_sidecar(args, "sidecar-b", d, sidecar_b(d, b_mtls, b_plain, up_h1), b_admin)
        pc.wait_ready(b, b_plain)
        a = start_sidecar(args, "sidecar-a", d, sidecar_a(d, a_mtls, a_plain, b_mtls, b_plain),
                          pc.free_port())
        pc.wait_ready(a, a_plain)
        pc.wait_ready(a, a_mtls)

        runs = {"mtls": [], "plain": []}
        for round_index in range(args.rounds):
            order = ("mtls", "plain") if round_index % 2 == 0 else ("plain", "mtls")
            for variant in order:
                port = a_mtls if variant == "mtls" else a_plain
                runs[variant].append(steady_state(port, args.duration, [a, b], load_cpu))
        connections, b_cpu = handshakes(d, b_mtls, args.duration, b, load_cpu)
        resumed, resumed_cpu = handshakes(d, b_mtls, args.duration, b, load_cpu, resume=True)
        # A client counts its handshake when it sends Finished and closes at once; B counts when
        # it reads that Finished, a moment later, or never if the close overtook it.
        deadline = time.time() + 2
        while True:
            resumed_by_b = pc.admin_counter(b_admin, "meshlet_downstream_tls_resumed_total")
            if resumed_by_b >= resumed or time.time() > deadline:
                break
            time.sleep(0.1)
        if resumed == 0 or resumed_by_b < resumed * 0.9:
            raise RuntimeError(f"the clients resumed {resumed} sessions, B counted "
                               f"{resumed_by_b}")

        rps = {v: pc.median([r["rps"] for r in runs[v]]) for v in runs}
        cpu = {v: pc.median([r["cpu_us_per_request"] for r in runs[v]]) for v in runs}
        print(f"steady state, h2load -c 16 -m 10, {args.rounds} rounds of {args.duration} s "
              f"(medians):")
        for v in ("plain", "mtls"):
            print(f"  {v:5}  {rps[v]:10.0f} requests/s  {cpu[v]:6.1f} us CPU per request "
                  f"(both sidecars)   runs: {[round(r['rps']) for r in runs[v]]}")
        # Each round runs both variants back to back, so its ratio compares like with like on a
        # machine whose load drifts; the median of the rounds' ratios is the steadier figure.
        paired = [m["rps"] / p["rps"] for m, p in zip(runs["mtls"], runs["plain"])]
        print(f"  mTLS / plaintext: {rps['mtls'] / rps['plain']:.2f} of the requests/s "
              f"(median of the rounds' ratios {pc.median(paired):.2f}: "
              f"{[round(r, 2) for r in paired]}), "
              f"{cpu['mtls'] / cpu['plain']:.2f} x the CPU per request")
        print(f"new mTLS handshakes (openssl s_time -new, 2 clients, {args.duration} s): "
              f"{connections} handshakes, {connections / args.duration:.0f}/s, B used "
              f"{b_cpu:.2f} CPU-s: {connections / b_cpu if b_cpu else float('inf'):.0f} "
              f"handshakes per CPU-second of B")
        print(f"resumed mTLS handshakes (2 Python clients offering a ticket, {args.duration} s): "
              f"{resumed} handshakes, {resumed / args.duration:.0f}/s, B used "
              f"{resumed_cpu:.2f} CPU-s: "
              f"{resumed / resumed_cpu if resumed_cpu else float('inf'):.0f} "
              f"handshakes per CPU-second of B")
        return 0
    finally:
        for proc in reversed(pc.STARTED):
            proc.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
