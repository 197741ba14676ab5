"""`sidecar init` in real network namespaces: the traffic capture does what docs/operations.md
(Traffic capture) says, shown with connections rather than rule text.

Usage: capture_test.py SIDECAR

Two namespaces joined by a veth pair: the "pod" (198.18.9.1/30, fd00:9::1/64) where `sidecar init`
runs, and a "peer" (198.18.9.2/30, fd00:9::2/64, and 198.18.10.1 / fd00:10::1 on its loopback as a
second destination range). Small Python servers answer each connection with one JSON line naming
the namespace and port that accepted it and the original destination the kernel reports
(SO_ORIGINAL_DST), so each check says where a connection really landed. Shown, for IPv4 and (when
the kernel has IPv6 NAT) IPv6: an ordinary user's connection to the peer lands on the outbound
listener 15001 with the peer's address as original destination; the proxy's UID 1337, or GID
1337 alone, reaches the peer directly; excluded ports and ranges are not captured, nor is
loopback, nor the app's calls to its own pod address; the proxy's own calls to its pod address go
to the inbound listener; a connection from the peer to the pod's port 8080 lands on 15006 with
8080 as original port while 15000, 15020, 15021 and an excluded port are left alone; include lists
capture only what they list. `--dry-run` prints exactly the rules iptables-save shows afterwards;
a second run leaves the same table; --cleanup restores the nat table to exactly its state
before (another program's rules kept throughout); without NET_ADMIN, or without the iptables
tools, the command fails saying so.

The namespace tests need root, ip, setpriv and iptables; without them they print "SKIP: needs root
and iptables" and only the checks that need no privilege run (the dispatch to `init`, its help
and usage errors, --dry-run). Everything it creates (namespaces, processes) is removed at the end, also on failure.
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

import netns
from netns import PATH, in_ns, run

SIDECAR = None
PREFIX = "mlcap"  # namespaces of this test: mlcap<pid>p (pod) and mlcap<pid>q (peer)
POD = f"{PREFIX}{os.getpid()}p"
PEER = f"{PREFIX}{os.getpid()}q"
VETH_POD = f"mlc{os.getpid()}a"
VETH_PEER = f"mlc{os.getpid()}b"

POD4, PEER4, OTHER4 = "198.18.9.1", "198.18.9.2", "198.18.10.1"
POD6, PEER6, OTHER6 = "fd00:9::1", "fd00:9::2", "fd00:10::1"
APP_USER = 1000
PROXY_ID = 1337

# Flags of the main run: an excluded outbound port, an excluded range of each family, an
# excluded inbound port.
MAIN_FLAGS = ["--exclude-outbound-ports", "5432",
              "--exclude-outbound-cidrs", "198.18.10.0/24,fd00:10::/64",
              "--exclude-inbound-ports", "9090"]

# Accepts on every ADDR:PORT given; answers each connection with one JSON line: the namespace
# label, the port that accepted it, and the original destination from SO_ORIGINAL_DST (null
# when the connection was not redirected). Prints "ready" once every socket listens.
SERVER = r"""
import json, socket, struct, sys, threading
label = sys.argv[1]
def original(conn, family):
    local = conn.getsockname()
    try:
        if family == socket.AF_INET:
            raw = conn.getsockopt(socket.SOL_IP, 80, 16)
            port, addr = struct.unpack("!H4s", raw[2:8])
            dst = (socket.inet_ntop(socket.AF_INET, addr), port)
            text = "%s:%d" % dst
        else:
            raw = conn.getsockopt(41, 80, 28)
            dst = (socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack("!H", raw[2:4])[0])
            text = "[%s]:%d" % dst
    except OSError:
        return None  # no conntrack entry
    # Conntrack reports an original destination for every tracked connection: only one that
    # differs from where the connection was accepted was redirected.
    return None if dst == tuple(local[:2]) else text
def serve(sock, family, port):
    while True:
        conn, _ = sock.accept()
        with conn:
            line = {"ns": label, "port": port, "original": original(conn, family)}
            conn.sendall((json.dumps(line) + "\n").encode())
for spec in sys.argv[2:]:
    host, port = spec.rsplit(":", 1)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, int(port)))
    sock.listen(64)
    threading.Thread(target=serve, args=(sock, family, int(port)), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

# Connects to HOST PORT and prints the server's line, or "error: ...".
CLIENT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
        print(s.makefile().readline().strip() or "error: no answer")
except OSError as e:
    print("error: %s" % e)
"""

POD_PORTS = [15001, 15006, 15000, 15020, 15021, 8080, 8081, 9090]
PEER_PORTS = [80, 5432]

processes = []


def teardown():
    netns.teardown(processes, (POD, PEER))


def remove_leftovers():
    """Namespaces a killed earlier run of this test left behind."""
    netns.remove_leftovers(PREFIX, "pqx")


def start_server(ns, label, specs):
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", SERVER, label,
                             *specs], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={"PATH": PATH})
    processes.append(proc)
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise AssertionError(f"the {label} server did not start: {line!r}")


def setup_namespaces(ipv6):
    netns.veth_pair(POD, PEER, VETH_POD, VETH_PEER, POD4, PEER4)
    run("ip", "-n", PEER, "addr", "add", f"{OTHER4}/32", "dev", "lo")
    if ipv6:
        run("ip", "-n", POD, "addr", "add", f"{POD6}/64", "dev", VETH_POD, "nodad")
        run("ip", "-n", PEER, "addr", "add", f"{PEER6}/64", "dev", VETH_PEER, "nodad")
        run("ip", "-n", PEER, "addr", "add", f"{OTHER6}/128", "dev", "lo")
    run("ip", "-n", POD, "route", "add", "198.18.10.0/24", "via", PEER4)
    if ipv6:
        run("ip", "-n", POD, "-6", "route", "add", "fd00:10::/64", "via", PEER6)
    pod_specs = [f"0.0.0.0:{p}" for p in POD_PORTS]
    peer_specs = [f"0.0.0.0:{p}" for p in PEER_PORTS]
    if ipv6:
        pod_specs += [f"[::]:{p}" for p in POD_PORTS]
        peer_specs += [f"[::]:{p}" for p in PEER_PORTS]
    start_server(POD, "pod", pod_specs)
    start_server(PEER, "peer", peer_specs)


def connect(ns, host, port, uid=0, gid=None):
    """Where a connection from `ns` as uid:gid to host:port lands: (namespace, port, original)."""
    gid = uid if gid is None else gid
    result = in_ns(ns, "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                   "/usr/bin/python3", "-c", CLIENT, host, str(port))
    line = result.stdout.strip()
    if not line.startswith("{"):
        return ("unreachable", line)
    answer = json.loads(line)
    return (answer["ns"], answer["port"], answer["original"])


def init(*flags, ns=None, check=True):
    return in_ns(ns or POD, SIDECAR, "init", *flags, check=check)


def save(tool):
    """The pod's nat table as iptables-save prints it, without comments and counters."""
    text = in_ns(POD, tool, "-t", "nat").stdout
    lines = [re.sub(r"\[\d+:\d+\]$", "[0:0]", line) for line in text.splitlines()
             if not line.startswith("#")]
    return "\n".join(lines)


OWN_CHAINS = ("MESHLET_INBOUND", "MESHLET_IN_REDIRECT", "MESHLET_OUTPUT", "MESHLET_REDIRECT")


def capture_lines(text):
    """The chain declarations and rules `sidecar init` owns, grouped by chain: {chain: [lines]}."""
    owned = {}
    for line in text.splitlines():
        fields = line.split()
        if line.startswith(":") and line[1:].split()[0] in OWN_CHAINS:
            owned.setdefault("declarations", []).append(line.split()[0])
        elif line.startswith("-A ") and (fields[1] in OWN_CHAINS or fields[-1] in OWN_CHAINS):
            owned.setdefault(fields[1], []).append(line)
    return owned


def dry_run_sections(text):
    """--dry-run output split per family: {"IPv4": text, "IPv6": text}."""
    sections, current = {}, None
    for line in text.splitlines():
        match = re.match(r"# (IPv4|IPv6): ip6?tables-restore --noflush$", line)
        if match:
            current = match.group(1)
            sections[current] = ""
        elif current and not line.startswith("#"):
            sections[current] += line + "\n"
    return sections


class CommandLineTest(unittest.TestCase):
    """What needs no privilege: the dispatch to `init`, its help and usage errors, --dry-run."""

    def sidecar(self, *args):
        return subprocess.run([SIDECAR, *args], capture_output=True, text=True, timeout=10,
                              env={"PATH": "/nonexistent"})

    def test_init_is_a_subcommand_of_the_proxy_binary(self):
        self.assertIn("sidecar init [flags]", self.sidecar("--help").stdout)
        result = self.sidecar("init", "--help")
        self.assertEqual(result.returncode, 0)
        self.assertTrue(result.stdout.startswith("Usage: sidecar init [flags]"), result.stdout)
        result = self.sidecar("init", "--exclude-outbound-ports", "http")
        self.assertEqual(result.returncode, 2)
        self.assertIn('sidecar init: --exclude-outbound-ports="http": "http" is not a port',
                      result.stderr)

    def test_dry_run_needs_neither_privilege_nor_iptables(self):
        result = self.sidecar("init", "--dry-run", "--ipv6=true", "--exclude-outbound-ports=5432")
        self.assertEqual(result.returncode, 0, result.stderr)
        sections = dry_run_sections(result.stdout)
        self.assertEqual(sorted(sections), ["IPv4", "IPv6"])
        self.assertIn("-A MESHLET_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN\n", sections["IPv4"])
        self.assertIn("! -d ::1/128 -o lo", sections["IPv6"])


class CaptureTest(unittest.TestCase):
    ipv6 = False

    @classmethod
    def setUpClass(cls):
        setup_namespaces(cls.ipv6)
        # Another program's rules in the pod's nat table, which init must keep as they are.
        tools = ["iptables"] + (["ip6tables"] if cls.ipv6 else [])
        for tool in tools:
            in_ns(POD, tool, "-t", "nat", "-N", "OTHER_TOOL")
            in_ns(POD, tool, "-t", "nat", "-A", "OTHER_TOOL", "-j", "RETURN")
            in_ns(POD, tool, "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j",
                  "OTHER_TOOL")
        cls.before = {tool: save(f"{tool}-save") for tool in tools}

    def tearDown(self):
        init("--cleanup", "--ipv6", "true" if self.ipv6 else "false", check=False)

    def need_ipv6(self):
        if not self.ipv6:
            self.skipTest("the kernel has no IPv6 NAT (ip6table_nat)")

    def assertLands(self, expected, *connect_args, **connect_kwargs):
        got = connect(*connect_args, **connect_kwargs)
        self.assertEqual(got, expected, f"connect{connect_args} {connect_kwargs}")

    def test_outbound_ipv4(self):
        init(*MAIN_FLAGS)
        self.outbound_checks(PEER4, OTHER4, POD4, "127.0.0.1", "{}:{}")

    def test_outbound_ipv6(self):
        self.need_ipv6()
        init(*MAIN_FLAGS)  # --ipv6=auto: the pod has a global IPv6 address
        self.outbound_checks(PEER6, OTHER6, POD6, "::1", "[{}]:{}")

    def outbound_checks(self, peer, other, pod, loopback, endpoint):
        # An ordinary user's connection lands on the outbound listener, original destination kept.
        self.assertLands(("pod", 15001, endpoint.format(peer, 80)), POD, peer, 80, uid=APP_USER)
        # The proxy's UID, or its GID alone, goes straight to the peer.
        self.assertLands(("peer", 80, None), POD, peer, 80, uid=PROXY_ID)
        self.assertLands(("peer", 80, None), POD, peer, 80, uid=4242, gid=PROXY_ID)
        # Excluded port and range.
        self.assertLands(("peer", 5432, None), POD, peer, 5432, uid=APP_USER)
        self.assertLands(("peer", 80, None), POD, other, 80, uid=APP_USER)
        # Loopback, and the app calling its own pod address, are left alone.
        self.assertLands(("pod", 8080, None), POD, loopback, 8080, uid=APP_USER)
        self.assertLands(("pod", 8080, None), POD, pod, 8080, uid=APP_USER)
        # The proxy calling its own pod address goes inbound, excluded inbound ports excepted.
        self.assertLands(("pod", 15006, endpoint.format(pod, 8080)), POD, pod, 8080, uid=PROXY_ID)
        self.assertLands(("pod", 15020, None), POD, pod, 15020, uid=PROXY_ID)

    def test_inbound_ipv4(self):
        init(*MAIN_FLAGS)
        self.inbound_checks(POD4, "{}:{}")

    def test_inbound_ipv6(self):
        self.need_ipv6()
        init(*MAIN_FLAGS)
        self.inbound_checks(POD6, "[{}]:{}")

    def inbound_checks(self, pod, endpoint):
        self.assertLands(("pod", 15006, endpoint.format(pod, 8080)), PEER, pod, 8080)
        self.assertLands(("pod", 15006, endpoint.format(pod, 8081)), PEER, pod, 8081)
        for port in (15000, 15020, 15021, 9090):
            self.assertLands(("pod", port, None), PEER, pod, port)

    def test_include_lists_capture_only_what_they_list(self):
        init("--include-inbound-ports", "8080", "--include-outbound-cidrs", f"{PEER4}/32")
        self.assertLands(("pod", 15001, f"{PEER4}:80"), POD, PEER4, 80, uid=APP_USER)
        self.assertLands(("peer", 80, None), POD, OTHER4, 80, uid=APP_USER)
        self.assertLands(("pod", 15006, f"{POD4}:8080"), PEER, POD4, 8080)
        self.assertLands(("pod", 8081, None), PEER, POD4, 8081)
        if self.ipv6:
            # No IPv6 range listed: no IPv6 outbound capture; inbound as listed.
            self.assertLands(("peer", 80, None), POD, PEER6, 80, uid=APP_USER)
            self.assertLands(("pod", 15006, f"[{POD6}]:8080"), PEER, POD6, 8080)
            self.assertLands(("pod", 8081, None), PEER, POD6, 8081)

    def test_dry_run_is_what_the_real_run_applies_and_a_second_run_changes_nothing(self):
        for flags in (MAIN_FLAGS, ["--include-inbound-ports", "8080,8081",
                                   "--include-outbound-cidrs", f"{PEER4}/32,{PEER6}/128",
                                   "--proxy-uid", "2000", "--outbound-port", "7001"]):
            dry = init("--dry-run", *flags).stdout
            sections = dry_run_sections(dry)
            self.assertEqual(sorted(sections), ["IPv4", "IPv6"] if self.ipv6 else ["IPv4"], dry)
            init(*flags)
            first = {f: save(f"{t}-save") for f, t in (("IPv4", "iptables"), ("IPv6", "ip6tables"))
                     if f in sections}
            for family, text in sections.items():
                self.assertEqual(capture_lines(first[family]), capture_lines(text),
                                 f"{family}: iptables-save after the run differs from --dry-run")
                self.assertIn("OTHER_TOOL", first[family])
            out = init(*flags).stdout
            self.assertNotIn("-A OUTPUT -p tcp -j MESHLET_OUTPUT", out)  # the jump was there
            for family, text in first.items():
                tool = "iptables-save" if family == "IPv4" else "ip6tables-save"
                self.assertEqual(save(tool), text, f"{family}: a second run changed the table")

    def test_cleanup_restores_the_table_as_it_was(self):
        init(*MAIN_FLAGS, "--ipv6", "true" if self.ipv6 else "false")
        self.assertIn("MESHLET_OUTPUT", save("iptables-save"))
        out = init("--cleanup", "--ipv6", "true" if self.ipv6 else "false").stdout
        self.assertIn("IPv4: removed with iptables-restore --noflush", out)
        for tool, text in self.before.items():
            self.assertEqual(save(f"{tool}-save"), text, f"{tool}: not restored by --cleanup")
        # Nothing left to remove: a second cleanup is a no-op.
        out = init("--cleanup").stdout
        self.assertIn("IPv4: the nat table holds no capture rules; nothing to remove", out)
        self.assertEqual(save("iptables-save"), self.before["iptables"])

    def test_without_net_admin_it_says_so(self):
        result = in_ns(POD, "setpriv", "--inh-caps=-all", "--bounding-set=-net_admin", SIDECAR,
                       "init", check=False)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("lacks the NET_ADMIN capability", result.stderr)
        self.assertIn("--cap-add=NET_ADMIN", result.stderr)
        self.assertEqual(save("iptables-save"), self.before["iptables"])
        # --dry-run needs no privilege.
        result = in_ns(POD, "setpriv", "--inh-caps=-all", "--bounding-set=-net_admin", SIDECAR,
                       "init", "--dry-run", check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("-A OUTPUT -p tcp -j MESHLET_OUTPUT", result.stdout)

    def test_without_the_iptables_tools_it_says_so(self):
        result = run("ip", "netns", "exec", POD, "/usr/bin/env", "PATH=/nonexistent", SIDECAR,
                     "init", check=False)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertRegex(result.stderr, r"iptables-(save|restore) was not found \(searched "
                                        r"/nonexistent\)")
        self.assertIn("apt-get install iptables", result.stderr)


def namespaces_unavailable():
    """Why the namespace tests cannot run here, or None; sets CaptureTest.ipv6."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "setpriv", "iptables", "iptables-save", "iptables-restore"):
        if shutil.which(tool, path=PATH) is None:
            return f"{tool} is missing"
    remove_leftovers()
    reason, CaptureTest.ipv6 = netns.probe_nat(f"{PREFIX}{os.getpid()}x")
    if reason is not None:
        return reason
    if not CaptureTest.ipv6:
        print("SKIP IPv6: ip6tables or the kernel's IPv6 NAT (ip6table_nat) is missing; "
              "IPv4 only")
    return None


def main():
    global SIDECAR
    if len(sys.argv) != 2:
        sys.exit("usage: capture_test.py SIDECAR")
    SIDECAR = os.path.abspath(sys.argv[1])
    started = time.monotonic()
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromTestCase(CommandLineTest)
    atexit.register(teardown)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    reason = namespaces_unavailable()
    if reason is None:
        suite.addTests(loader.loadTestsFromTestCase(CaptureTest))
    else:
        print(f"SKIP: needs root and iptables ({reason}); the network namespace tests do not run")
    try:
        result = unittest.TextTestRunner(verbosity=2).run(suite)
    finally:
        teardown()
    print(f"capture_test: {time.monotonic() - started:.1f}s")
    left = [ns for ns in run("ip", "netns", "list", check=False).stdout.split("\n")
            if POD in ns or PEER in ns]
    if left:
        print(f"FAIL: namespaces left behind: {left}")
        sys.exit(1)
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
