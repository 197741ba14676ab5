"""Network namespaces for the capture tests: commands in them, and their removal (also of what a
killed earlier run left behind). Needs root and ip."""

import os
import re
import shutil
import signal
import subprocess

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(*args, check=True, timeout=60, **kwargs):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                            env={"PATH": PATH}, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): "
                             f"{result.stdout}{result.stderr}")
    return result


def in_ns(ns, *args, check=True):
    return run("ip", "netns", "exec", ns, *args, check=check)


def veth_pair(pod, peer, veth_pod, veth_peer, pod4, peer4):
    """Namespaces `pod` and `peer` (loopback up) joined by a veth pair, up, with the IPv4
    addresses `pod4` and `peer4` on a /30."""
    for ns in (pod, peer):
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "link", "add", veth_pod, "netns", pod, "type", "veth", "peer", "name", veth_peer,
        "netns", peer)
    run("ip", "-n", pod, "addr", "add", f"{pod4}/30", "dev", veth_pod)
    run("ip", "-n", peer, "addr", "add", f"{peer4}/30", "dev", veth_peer)
    run("ip", "-n", pod, "link", "set", veth_pod, "up")
    run("ip", "-n", peer, "link", "set", veth_peer, "up")


def remove_namespace(ns):
    for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    run("ip", "netns", "del", ns, check=False)


def teardown(processes, namespaces):
    """Kills `processes` (Popen objects, emptied) and removes `namespaces` that exist."""
    while processes:
        proc = processes.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for ns in namespaces:
        if os.path.exists(f"/var/run/netns/{ns}"):
            remove_namespace(ns)


def remove_leftovers(prefix, suffixes):
    """Namespaces PREFIX<pid><suffix> whose test process is gone."""
    for ns in run("ip", "netns", "list", check=False).stdout.split("\n"):
        match = re.match(rf"({prefix}(\d+)[{suffixes}])\b", ns)
        if match and not os.path.exists(f"/proc/{match.group(2)}"):
            remove_namespace(match.group(1))


def probe_nat(probe):
    """Whether network namespaces with a nat table work here: (why not, or None; whether
    ip6tables and the kernel's IPv6 NAT work too). Creates the namespace `probe` and removes it."""
    if run("ip", "netns", "add", probe, check=False).returncode != 0:
        return "cannot create network namespaces here", False
    try:
        if in_ns(probe, "iptables", "-t", "nat", "-L", "-n", check=False).returncode != 0:
            return "the kernel has no IPv4 NAT", False
        return None, (shutil.which("ip6tables", path=PATH) is not None and
                      in_ns(probe, "ip6tables", "-t", "nat", "-L", "-n",
                            check=False).returncode == 0)
    finally:
        run("ip", "netns", "del", probe, check=False)
