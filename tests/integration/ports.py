"""Loopback ports for servers a test starts later, shared by every integration test and the
benchmarks (import free_port from here; do not pick ports any other way)."""

import random
import socket


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


_handed_out = set()
# Sockets held for the life of this process, one per port it handed out; see _reserve.
_reservations = []


def _reserve(port):
    """Claims `port` for this process against every other test process on the machine.

    Checking that a port is bindable is not enough when tests run in parallel: two processes can
    both find the same port free and both hand it out. An abstract unix socket named after the
    port is a lock every process in the network namespace sees, needs no files, and is released
    by the kernel when the holding process exits however it exits."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0meshlet-test-port-{port}")
    except OSError:
        lock.close()
        return False
    _reservations.append(lock)
    return True


def free_port():
    """A loopback port for a server a test starts later (a sidecar listener, an admin port, a
    control plane restarted on the same port).

    Not one the kernel picks for port 0: a port taken with bind(("", 0)) and closed returns to
    the ephemeral range, where any outgoing connection of any process (other tests run in
    parallel, with load generators) may take it as its local port before the server binds it;
    the server's bind then fails and the test waits for something that never listens. So the
    port comes from below the ephemeral range, is checked bindable, and is never handed out
    twice by this process nor by any other process using this module while this one lives. Servers a test runs in its own process should bind port 0 instead and
    read the port back with getsockname()."""
    low, _ = _ephemeral_range()
    floor = 10000 if low > 12000 else 1024
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(floor, low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _reserve(port):
            continue
        _handed_out.add(port)
        return port
    raise AssertionError("no free port below the ephemeral range")
