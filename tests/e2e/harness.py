"""Pods for meshlet's end-to-end tests: podman, on a network and in a storage of the run's own.

    with harness.Run() as run:            # SKIP (exit 0) unless root with a working podman
        run.build_images(bin_dir)         # deploy/images/build.py, then loads the OCI archives
        ip = run.play(pod_manifest)       # podman kube play on the run's network; the pod's IP
        run.wait_ready("ratings-app", ["testapp", "get", "http://127.0.0.1:9080/healthz"])
        out = run.exec("ratings-app", ["testapp", "get", "http://productpage:9080/"])
    # everything the run made is gone here, also after a failure, SIGINT or SIGTERM

What a run makes and removes (tests/e2e/README.md):
- a directory under $MESHLET_E2E_DIR (default /var/tmp/meshlet-e2e) holding podman's storage
  (--root, --runroot, --tmpdir) and the manifests played, so the run's images, containers and
  pods are nobody else's and go with the directory;
- one podman network, `meshlet-e2e-<id>`, internal (no route out of it), on a free /24 of
  198.18.0.0/15 (deploy/podman/containers.conf). Networks are shared by every podman user of the
  machine (podman allocates their subnets and bridges under its lock), so only the network lives
  outside the run's directory; it is labelled with the run's directory and process (pid and start
  time), and a later run removes what a killed run left (its pods, images, network, directory).
podman runs with CONTAINERS_CONF=deploy/podman/containers.conf; nothing in /etc is edited.
Every podman command and its output are logged on failure, with every container's log.
"""

import atexit
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CONTAINERS_CONF = os.path.join(REPO, "deploy", "podman", "containers.conf")
BUILD_IMAGES = os.path.join(REPO, "deploy", "images", "build.py")
# Annotation podman 4.3 reads to keep an init container after it ran (docs in README.md).
INIT_TYPE_ANNOTATION = "io.podman.annotations.init.container.type"
LABEL = "meshlet-e2e"  # network labels: LABEL=<run dir>, LABEL-pid=<pid>
# Debian's containernetworking-plugins: what a CNI run (Run(cni=True)) chains.
CNI_PLUGINS_DIR = "/usr/lib/cni"
CNI_STATE_DIR = "/var/lib/cni/networks"  # host-local's addresses, per network
CNI_RESULTS_DIR = "/var/lib/cni/results"  # libcni's cache: NETWORK-CONTAINERID-IFNAME


class Skip(Exception):
    """The run cannot happen on this machine (not root, no podman)."""


class E2EError(Exception):
    pass


# The release every binary reports and the images are tagged with: the repository's VERSION.
RELEASE = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                            "VERSION")).read().strip()


def log(msg):
    sys.stderr.write("[e2e %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def podman_env(run_dir=None):
    """The environment of podman commands; for a run with a configuration of its own (CNI
    backend, Run(cni=True)), that configuration."""
    env = dict(os.environ)
    own = os.path.join(run_dir, "containers.conf") if run_dir else None
    env["CONTAINERS_CONF"] = own if own and os.path.exists(own) else CONTAINERS_CONF
    # netavark and the runtime look for iptables and friends on PATH.
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def skip_reason(cni=False):
    """Why this machine cannot run pods (with cni: on podman's CNI backend), or None when it
    can."""
    if os.geteuid() != 0:
        return "not root"
    for plugin in ("bridge", "host-local", "portmap", "firewall", "tuning") if cni else ():
        if not os.path.exists(os.path.join(CNI_PLUGINS_DIR, plugin)):
            return "needs %s/%s (containernetworking-plugins)" % (CNI_PLUGINS_DIR, plugin)
    if shutil.which("podman", path=podman_env()["PATH"]) is None:
        return "podman is not installed (./dev test installs it when run as root)"
    try:
        r = subprocess.run(["podman", "info", "--format", "{{.Host.NetworkBackend}}"],
                           capture_output=True, text=True, env=podman_env(), timeout=60)
    except subprocess.TimeoutExpired:
        return "podman info did not answer within 60 s"
    if r.returncode != 0:
        return "podman info failed: %s" % r.stderr.strip()[-300:]
    return None


def _process_start(pid):
    """The start time of process `pid` (clock ticks since boot), or None when it is gone or a
    zombie: with the pid it tells a run's process from a later one that got the same pid."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # state; killed, not yet reaped by its parent
        return None
    return fields[19]  # starttime, field 22 of stat


class Run:
    """One end-to-end run: its podman storage, network, images and pods (see the module doc)."""

    def __init__(self, name="e2e", keep=False, cni=False):
        """cni: the run's network on podman's CNI backend instead of netavark, with a
        configuration of the run's own (CONTAINERS_CONF in the run's directory): its conflists in
        net.d/ and its plugins in cni-bin/ (a copy of CNI_PLUGINS_DIR), where a node agent may
        add meshlet-cni."""
        self.name = name
        self.cni = cni
        self.keep = keep or os.environ.get("MESHLET_E2E_KEEP") == "1"
        self.base = os.environ.get("MESHLET_E2E_DIR", "/var/tmp/meshlet-e2e")
        self.dir = None
        self.network = None
        self.subnet = None
        self.bridge = None
        self.pods = []
        self.pod_ips = []
        self.images = []
        self.transcript = []  # (command, exit status, output) of every podman call
        self.helpers = []     # host processes in pods' network namespaces (start_in_pod_network)
        self._closed = False
        self._old_handlers = {}

    # --- life cycle -------------------------------------------------------------------------

    def __enter__(self):
        reason = skip_reason(cni=self.cni)
        if reason is not None:
            raise Skip(reason)
        self._install_signal_handlers()
        atexit.register(self.close)
        try:
            self.start()
        except BaseException:
            self.close(failed=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(failed=exc_type is not None)
        return False

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        self.reap_stale_runs()
        try:
            self.dir = tempfile.mkdtemp(prefix="%s-" % self.name, dir=self.base)
        except FileNotFoundError:
            # Another run ended just now and removed the (then empty) base directory.
            os.makedirs(self.base, exist_ok=True)
            self.dir = tempfile.mkdtemp(prefix="%s-" % self.name, dir=self.base)
        for sub in ("storage", "run", "tmp", "manifests", "images"):
            os.makedirs(os.path.join(self.dir, sub))
        if self.cni:
            self._write_cni_configuration()
        run_id = os.path.basename(self.dir)
        self.network = "meshlet-e2e-%s" % run_id.replace("_", "-").lower()
        labels = ["--label", "%s=%s" % (LABEL, self.dir),
                  "--label", "%s-pid=%d:%s" % (LABEL, os.getpid(), _process_start(os.getpid()))]
        if self.keep:
            labels += ["--label", "%s-keep=1" % LABEL]
            open(os.path.join(self.dir, "keep"), "w").close()
        # A CNI run's podman sees only its own networks: its subnet is chosen here, apart
        # from every other CNI network's (netavark's runs take theirs from 198.18.0.0/16).
        with cni_network_lock(self.cni):
            subnet = ["--subnet", free_cni_subnet()] if self.cni else []
            self.podman(["network", "create", "--internal", "--disable-dns"] + subnet + labels +
                        [self.network])
            if self.cni:
                self._own_bridge(run_id)
        info = json.loads(self.podman(["network", "inspect", self.network]))
        self.subnet = ipaddress.ip_network(info[0]["subnets"][0]["subnet"])
        self.bridge = info[0]["network_interface"]
        log("run %s: network %s on %s, bridge %s; podman %s" % (
            run_id, self.network, self.subnet, self.bridge, " ".join(self.podman_prefix()[1:])))

    def _own_bridge(self, run_id):
        """Gives the run's CNI network a bridge named after the run. podman names it cni-podmanN,
        the first N no network it knows and no live interface has; it knows only this run's
        networks, and the bridge appears with the first pod, so two runs that start together
        would share one bridge, and the first to end would delete it under the other's pods."""
        path = os.path.join(self.cni_conf_dir, self.network + ".conflist")
        with open(path) as f:
            conf = json.load(f)
        bridge = "mlt" + hashlib.sha1(run_id.encode()).hexdigest()[:12]
        if os.path.exists("/sys/class/net/" + bridge):
            raise E2EError("bridge %s of run %s exists already" % (bridge, run_id))
        for plugin in conf["plugins"]:
            if plugin.get("type") == "bridge":
                plugin["bridge"] = bridge
        with open(path + ".tmp", "w") as f:
            json.dump(conf, f, indent=2)
        os.replace(path + ".tmp", path)

    def _write_cni_configuration(self):
        """The run's containers.conf: the project's, on the CNI backend with the run's dirs."""
        self.cni_conf_dir = os.path.join(self.dir, "net.d")
        self.cni_bin_dir = os.path.join(self.dir, "cni-bin")
        os.makedirs(self.cni_conf_dir)
        shutil.copytree(CNI_PLUGINS_DIR, self.cni_bin_dir)
        with open(CONTAINERS_CONF) as f:
            lines = f.read().splitlines()
        if 'network_backend = "netavark"' not in lines:
            raise E2EError("%s sets no network_backend to replace" % CONTAINERS_CONF)
        lines[lines.index('network_backend = "netavark"')] = "\n".join([
            'network_backend = "cni"',
            'cni_plugin_dirs = ["%s"]' % self.cni_bin_dir,
            'network_config_dir = "%s"' % self.cni_conf_dir])
        with open(os.path.join(self.dir, "containers.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def conflist(self):
        """The path of the run's network configuration (CNI runs)."""
        return os.path.join(self.cni_conf_dir, self.network + ".conflist")

    def close(self, failed=False):
        """Removes everything the run made. Safe to call twice; never raises."""
        if self._closed:
            return
        self._closed = True
        for helper in self.helpers:
            if helper.poll() is None:
                helper.kill()
            helper.wait()
        if failed:
            self.dump()
        if self.keep and self.dir is not None:
            log("MESHLET_E2E_KEEP=1: leaving the run in place; remove it with: "
                "%s pod rm -f -a; %s network rm -f %s; rm -rf %s" % (
                    " ".join(self.podman_prefix()), "podman", self.network, self.dir))
            self._restore_signal_handlers()
            return
        if self.dir is not None:
            started = time.monotonic()
            remove_run(self.dir, self.network)
            log("run removed in %.1f s" % (time.monotonic() - started))
        self._restore_signal_handlers()

    def detach(self):
        """The run outlives this process (the demo's pods): nothing is removed at exit; remove
        it later with remove_run(run.dir, run.network)."""
        self._closed = True
        atexit.unregister(self.close)
        self._restore_signal_handlers()

    def _install_signal_handlers(self):
        def on_signal(signum, frame):
            # Turns the signal into an exception, so that `with` and `finally` clean up.
            raise KeyboardInterrupt("signal %d" % signum)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, on_signal)

    def _restore_signal_handlers(self):
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers = {}

    def reap_stale_runs(self):
        """Removes what runs whose process is gone left behind: their networks (found by label),
        and their pods, images and directories."""
        networks = []
        # netavark's networks, and those of CNI runs (each with a configuration of its own).
        for run_dir in [None] + [os.path.join(self.base, e) for e in os.listdir(self.base)
                                 if os.path.exists(os.path.join(self.base, e,
                                                                "containers.conf"))]:
            try:
                r = subprocess.run(["podman", "network", "ls", "--format", "json"],
                                   capture_output=True, text=True, env=podman_env(run_dir),
                                   timeout=60)
                networks += json.loads(r.stdout or "[]") if r.returncode == 0 else []
            except (subprocess.TimeoutExpired, ValueError):
                pass
        live = set()
        for net in networks:
            labels = net.get("labels") or {}
            run_dir, pid = labels.get(LABEL), labels.get(LABEL + "-pid")
            if run_dir is None or pid is None:
                continue
            pid, _, start = pid.partition(":")
            if labels.get(LABEL + "-keep") or (pid.isdigit() and
                                                _process_start(int(pid)) == start):
                live.add(run_dir)
                continue
            log("removing what a stopped run left: network %s, %s" % (net["name"], run_dir))
            remove_run(run_dir, net["name"])
        # Directories of runs that never got a network (or lost it), a while ago.
        for entry in os.listdir(self.base):
            path = os.path.join(self.base, entry)
            if os.path.isdir(path) and path not in live and \
                    not os.path.exists(os.path.join(path, "keep")) and \
                    os.path.getmtime(path) < time.time() - 6 * 3600:
                remove_run(path, None)

    # --- podman -----------------------------------------------------------------------------

    def podman_prefix(self):
        """podman with the run's storage; paste it into a shell to look around (MESHLET_E2E_KEEP)."""
        return podman_command(self.dir)

    def podman(self, args, check=True, timeout=120, input=None):
        """Runs podman with the run's storage; returns stdout. Raises E2EError on failure unless
        check is False (then returns the CompletedProcess)."""
        cmd = self.podman_prefix() + list(args)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=podman_env(self.dir),
                               timeout=timeout, input=input)
        except subprocess.TimeoutExpired as e:
            self.transcript.append((cmd, "timeout", str(e.stdout or "") + str(e.stderr or "")))
            raise E2EError("%s: no answer within %d s" % (" ".join(cmd[-len(args):]), timeout))
        self.transcript.append((cmd, r.returncode, (r.stdout + r.stderr)[-4000:]))
        if not check:
            return r
        if r.returncode != 0:
            raise E2EError("podman %s failed (exit %d): %s" % (
                " ".join(args), r.returncode, (r.stderr or r.stdout).strip()[-2000:]))
        return r.stdout

    def build_images(self, bin_dir, images=None):
        """Builds the images from `bin_dir` (a Bazel output tree) into OCI archives with
        deploy/images/build.py, in the run's storage, then loads the archives."""
        cmd = [sys.executable, BUILD_IMAGES, "--bin-dir", bin_dir,
               "--out", os.path.join(self.dir, "images"), "--context-dir", self.dir]
        for arg in self.podman_prefix()[1:]:
            cmd += ["--podman-arg=" + arg]
        cmd += list(images or [])
        started = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, env=podman_env(self.dir),
                           timeout=600)
        self.transcript.append((cmd, r.returncode, (r.stdout + r.stderr)[-4000:]))
        if r.returncode != 0:
            raise E2EError("building the images failed:\n%s" % (r.stdout + r.stderr).strip())
        log("images built in %.1f s:\n%s" % (time.monotonic() - started, r.stdout.rstrip()))
        self.load_images(os.path.join(self.dir, "images"))

    def load_images(self, archive_dir):
        """Loads every NAME.oci.tar of `archive_dir` into the run's storage."""
        for name in sorted(os.listdir(archive_dir)):
            if name.endswith(".oci.tar"):
                out = self.podman(["load", "-q", "-i", os.path.join(archive_dir, name)])
                self.images += [line.split(":", 1)[1].strip() for line in out.splitlines()
                                if line.startswith("Loaded image")]
        return self.images

    def ip(self, host):
        """The address `host` (a number from 2 up) in the run's subnet: a pod's --ip."""
        return str(self.subnet.network_address + host)

    def play(self, pod, ip, extra_documents=()):
        """Plays one Pod (a dict, as Kubernetes' JSON) on the run's network at `ip`, with
        `extra_documents` (ConfigMaps it mounts) in the same file. Pods with init containers
        must say restartPolicy OnFailure or Never: podman 4.3 applies the pod's restart policy to
        init containers too, so with Always they run again and again."""
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        if spec.get("initContainers") and spec.get("restartPolicy", "Always") == "Always":
            raise E2EError("pod %s has init containers: give it restartPolicy OnFailure or "
                           "Never (podman 4.3 reruns init containers under Always)" % name)
        path = os.path.join(self.dir, "manifests", name + ".yaml")
        with open(path, "w") as f:
            # JSON documents are YAML documents; kube play reads several from one file.
            for doc in list(extra_documents) + [pod]:
                f.write("---\n%s\n" % json.dumps(doc, indent=1))
        self.pods.append(name)
        self.pod_ips.append(ip)
        self.podman(["kube", "play", "--network", self.network, "--ip", ip,
                     "--mac-address", mac_for(ip), path])
        return ip

    def pod_pid(self, pod):
        """The pid of `pod`'s infra process: its network namespace is the pod's."""
        infra = self.podman(["pod", "inspect", pod, "--format", "{{.InfraContainerID}}"]).strip()
        return int(self.podman(["inspect", "--format", "{{.State.Pid}}", infra]).strip())

    def in_pod_network(self, pod, cmd, check=True, timeout=30):
        """Runs a host command (curl, ip, ...) in `pod`'s network namespace only: its traffic
        starts and ends where the pod's would."""
        full = ["nsenter", "--target", str(self.pod_pid(pod)), "--net"] + list(cmd)
        r = subprocess.run(full, capture_output=True, text=True, env=podman_env(),
                           timeout=timeout)
        if check and r.returncode != 0:
            raise E2EError("%s in pod %s failed (exit %d): %s" % (
                " ".join(cmd), pod, r.returncode, (r.stderr or r.stdout).strip()[-1000:]))
        return r

    def start_in_pod_network(self, pod, cmd, log_path):
        """Starts a host program (a fake API server) in `pod`'s network namespace only, its stdin
        a pipe, its output in `log_path`: it listens where the pod's addresses are. Killed when
        the run closes; it should also end when its stdin closes, so that it does not outlive a
        killed test."""
        full = ["nsenter", "--target", str(self.pod_pid(pod)), "--net"] + list(cmd)
        with open(log_path, "w") as log:
            proc = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=log,
                                    stderr=subprocess.STDOUT, text=True, env=podman_env())
        self.helpers.append(proc)
        return proc

    def add_default_route(self, pod):
        """Gives `pod` the default route a cluster's pod network would (on-link through its
        eth0). The run's network is internal: podman gives its pods no default route, and a
        connect to an address outside the subnet (a service's virtual address) then fails with
        ENETUNREACH before the pod's nat rules can redirect it. Beyond the subnet nothing
        answers: the host has no address on the network and forwards nothing from it. A pod
        that has already stopped (a Job whose containers all exited) has no network left to
        route."""
        if self.pod_pid(pod) == 0:
            return
        r = self.in_pod_network(pod, ["ip", "route", "replace", "default", "dev", "eth0"],
                                check=False)
        if r.returncode != 0 and self.pod_pid(pod) != 0:  # not because it stopped meanwhile
            raise E2EError("ip route replace default dev eth0 in pod %s failed (exit %d): %s" % (
                pod, r.returncode, r.stderr.strip()))

    def wait_until(self, predicate, timeout, what, detail=None):
        """Calls `predicate` until it returns something true (returned); E2EError naming `what`
        (and `detail()`'s text) after `timeout` seconds."""
        started = time.monotonic()
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() - started > timeout:
                raise E2EError("timed out after %.0f s waiting for %s%s" % (
                    timeout, what, (":\n" + detail()) if detail else ""))
            time.sleep(0.2)

    def exec(self, container, cmd, user=None, check=True, timeout=60):
        """Runs `cmd` in `container`; returns its stdout (or the CompletedProcess, check=False)."""
        args = ["exec"] + (["--user", str(user)] if user is not None else []) + [container]
        return self.podman(args + list(cmd), check=check, timeout=timeout)

    def logs(self, container):
        r = self.podman(["logs", container], check=False)
        return r.stdout + r.stderr

    def wait_ready(self, container, probe, timeout=60):
        """Runs `probe` in `container` until it succeeds; returns the seconds it took."""
        started = time.monotonic()
        last = ""
        while time.monotonic() - started < timeout:
            r = self.exec(container, probe, check=False, timeout=30)
            if r.returncode == 0:
                return time.monotonic() - started
            last = (r.stdout + r.stderr).strip()
            time.sleep(0.2)
        raise E2EError("%s not ready after %d s: %s\n%s" % (
            container, timeout, last[-1000:], self.logs(container)[-3000:]))

    def save_logs(self, pod):
        """Copies the logs of `pod`'s containers to the run's logs/ (before the pod is removed),
        where dump() shows them."""
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        out = self.podman(["pod", "inspect", pod, "--format",
                           "{{range .Containers}}{{.Name}} {{end}}"], check=False)
        for name in (out.stdout.split() if out.returncode == 0 else []):
            if not name.endswith("-infra"):
                with open(os.path.join(self.dir, "logs", name + ".log"), "w") as f:
                    f.write(self.logs(name))

    def leftovers(self):
        """What of the run is still there: pods, containers and images in its storage, its
        network and bridge, its directory, processes naming it. Empty once close() has run."""
        out = {}
        if self.dir is not None and os.path.isdir(os.path.join(self.dir, "storage")):
            for what, args in (("pods", ["pod", "ps", "-q"]),
                               ("containers", ["ps", "-a", "-q"]),
                               ("images", ["images", "-q"])):
                r = subprocess.run(self.podman_prefix() + args, capture_output=True, text=True,
                                   env=podman_env(self.dir), timeout=60)
                out[what] = r.stdout.split()
        r = subprocess.run(["podman", "network", "exists", self.network],
                           env=podman_env(self.dir),
                           capture_output=True, timeout=60)
        out["network"] = [self.network] if r.returncode == 0 else []
        if self.cni and self.network:
            state = os.path.join(CNI_STATE_DIR, self.network)
            out["network"] += [state] if os.path.exists(state) else []
            out["network"] += [os.path.join(CNI_RESULTS_DIR, n) for n in (
                os.listdir(CNI_RESULTS_DIR) if os.path.isdir(CNI_RESULTS_DIR) else ())
                if n.startswith(self.network + "-")]
            # The firewall plugin's rules for the run's pods (left when a teardown failed).
            rules = subprocess.run(["iptables", "-S", "CNI-FORWARD"], capture_output=True,
                                   text=True, env=podman_env(), timeout=30).stdout
            out["network"] += [r for r in rules.splitlines()
                               if any(" %s/32 " % ip in r + " " for ip in self.pod_ips)]
        out["bridge"] = [self.bridge] if self.bridge and os.path.exists(
            "/sys/class/net/" + self.bridge) else []
        out["directory"] = [self.dir] if self.dir and os.path.exists(self.dir) else []
        out["processes"] = processes_mentioning(self.dir) if self.dir else []
        return {k: v for k, v in out.items() if v}

    def dump(self):
        """Logs what a failure needs: the podman commands run, the pods, every container's log."""
        log("--- podman commands of this run (last 40) ---")
        for cmd, status, output in self.transcript[-40:]:
            sys.stderr.write("$ %s  [exit %s]\n%s\n" % (
                " ".join(cmd[len(self.podman_prefix()):] if cmd[0] == "podman" else cmd),
                status, output.rstrip()))
        if self.dir is None or not os.path.isdir(os.path.join(self.dir, "storage")):
            return
        saved = os.path.join(self.dir, "logs")
        for name in sorted(os.listdir(saved)) if os.path.isdir(saved) else []:
            with open(os.path.join(saved, name)) as f:
                log("--- log of %s (pod removed) ---\n%s" % (name[:-4], f.read()[-6000:]))
        r = self.podman(["ps", "-a", "--format", "{{.Names}}  {{.Status}}  {{.Image}}"],
                        check=False)
        log("--- containers ---\n" + r.stdout)
        for name in r.stdout.split("\n"):
            name = name.split("  ")[0].strip()
            if name and not name.endswith("-infra"):
                log("--- log of %s ---\n%s" % (name, self.logs(name)[-6000:]))


class cni_network_lock:
    """Held while a CNI run picks its subnet and writes its network (free_cni_subnet reads the
    others' conflists): two runs starting together would otherwise pick the same /24."""

    def __init__(self, held):
        self.held, self.fd = held, None

    def __enter__(self):
        if self.held:
            # A lock on the plugins' directory, which every CNI run needs: no file to remove.
            self.fd = os.open(CNI_PLUGINS_DIR, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
        return False


def free_cni_subnet():
    """A /24 of 198.19.0.0/16 that no CNI network of this host uses: none has addresses from it
    in host-local's state, and no run's conflist names it."""
    used = set()
    for name in os.listdir(CNI_STATE_DIR) if os.path.isdir(CNI_STATE_DIR) else ():
        for entry in os.listdir(os.path.join(CNI_STATE_DIR, name)):
            used.add(entry.rsplit(".", 1)[0])
    for base in {os.environ.get("MESHLET_E2E_DIR", "/var/tmp/meshlet-e2e"),
                 "/var/tmp/meshlet-e2e", "/var/tmp/meshlet-demo"}:
        for run in os.listdir(base) if os.path.isdir(base) else ():
            conf_dir = os.path.join(base, run, "net.d")
            for name in os.listdir(conf_dir) if os.path.isdir(conf_dir) else ():
                with open(os.path.join(conf_dir, name)) as f:
                    used.update(m.rsplit(".", 1)[0] for m in
                                re.findall(r"198\.19\.\d+\.0", f.read()))
    for third in range(256):
        if "198.19.%d" % third not in used:
            return "198.19.%d.0/24" % third
    raise E2EError("no free /24 in 198.19.0.0/16 for a CNI network")


def tcp_streams(capture):
    """What a tshark capture file holds: ({stream: (src, sport, dst, dport, its first payload's
    first three bytes)}, the payloads that look like plaintext HTTP, described)."""
    r = subprocess.run(
        ["tshark", "-r", capture, "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.stream",
         "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
         "-e", "tcp.payload"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise E2EError("tshark -r %s: %s" % (capture, r.stderr[-500:]))
    streams, plaintext = {}, []
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 6:
            continue
        stream, src, sport, dst, dport, payload = parts[:6]
        data = bytes.fromhex(payload.replace(":", ""))
        streams.setdefault(stream, (src, int(sport), dst, int(dport), data[:3]))
        if re.search(rb"HTTP/1\.[01]|PRI \* HTTP/2|^(GET|POST|PUT|HEAD) ", data):
            plaintext.append("%s:%s -> %s:%s %r" % (src, sport, dst, dport, data[:60]))
    return streams, plaintext


def mac_for(ip):
    """A locally administered MAC address made of the pod's IPv4 address. A pod started again
    (podman pod start) keeps it: with a new random one, peers would keep sending to the old MAC
    their neighbour cache holds for the same IP, and their connects would time out until the
    entry went stale (half a minute)."""
    return "02:00:" + ":".join("%02x" % int(b) for b in ip.split("."))


def processes_mentioning(text):
    """Command lines of the processes whose arguments contain `text` (conmon names the storage
    directory of its container)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append("%s: %s" % (pid, cmdline[:200]))
    return found


def podman_command(run_dir):
    return ["podman", "--root", os.path.join(run_dir, "storage"),
            "--runroot", os.path.join(run_dir, "run"),
            "--tmpdir", os.path.join(run_dir, "tmp"),
            "--storage-driver", os.environ.get("MESHLET_E2E_STORAGE_DRIVER", "overlay")]


def remove_run(run_dir, network):
    """Removes the pods, containers and images in `run_dir`'s storage, `network`, and the
    directory. Logs what fails and goes on."""
    prefix = podman_command(run_dir)
    env = podman_env(run_dir)
    # A CNI run's bridge and host-local state outlive its network: removed below.
    bridge = subnet = None
    if network:
        try:
            with open(os.path.join(run_dir, "net.d", network + ".conflist")) as f:
                first = json.load(f)["plugins"][0]
            bridge = first.get("bridge")
            subnet = ipaddress.ip_network(first["ipam"]["ranges"][0][0]["subnet"])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            pass

    def quiet(args, timeout=120):
        try:
            r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
            if r.returncode != 0:
                log("cleanup: %s: %s" % (" ".join(args[len(prefix):] if args[:1] == prefix[:1]
                                                  else args), (r.stderr or r.stdout).strip()))
        except subprocess.TimeoutExpired:
            log("cleanup: %s: no answer" % " ".join(args))

    if os.path.isdir(os.path.join(run_dir, "storage")):
        # podman 4.3's `pod rm --force --time 0` still waits 10 s for some pods; stop first.
        quiet(prefix + ["pod", "stop", "--all", "--time", "0"])
        quiet(prefix + ["pod", "rm", "--all", "--force"])
        quiet(prefix + ["rm", "--all", "--force", "--time", "0"])
        quiet(prefix + ["volume", "rm", "--all", "--force"])
        quiet(prefix + ["rmi", "--all", "--force"])
        # Not `podman system reset`: it would remove every network of the machine.
    if network:
        quiet(["podman", "network", "rm", "--force", network])
    if bridge and os.path.exists("/sys/class/net/" + bridge):
        quiet(["ip", "link", "del", bridge])
    if network and os.path.isdir(os.path.join(CNI_STATE_DIR, network)):
        shutil.rmtree(os.path.join(CNI_STATE_DIR, network), ignore_errors=True)
    if subnet is not None:
        # The firewall plugin's rules for the run's pods, left when a pod's teardown failed (the
        # run's subnet is its own: free_cni_subnet).
        rules = subprocess.run(["iptables", "-S", "CNI-FORWARD"], capture_output=True,
                               text=True, env=env, timeout=30).stdout.splitlines()
        for rule in rules:
            found = re.search(r" -[sd] (\S+)/32 ", rule)
            if found and ipaddress.ip_address(found.group(1)) in subnet:
                quiet(["iptables"] + ["-D"] + rule.split()[1:])
        for name in os.listdir(CNI_RESULTS_DIR) if os.path.isdir(CNI_RESULTS_DIR) else ():
            if name.startswith(network + "-"):
                os.unlink(os.path.join(CNI_RESULTS_DIR, name))
    # Anything still mounted below the directory would make rm fail: unmount it first.
    try:
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f]
        for mount in sorted((m for m in mounts if m.startswith(run_dir + "/")), reverse=True):
            quiet(["umount", "-l", mount])
    except OSError:
        pass
    shutil.rmtree(run_dir, ignore_errors=True)
    if os.path.exists(run_dir):
        log("cleanup: could not remove %s" % run_dir)
    # The base directory too, once no run is left in it.
    try:
        os.rmdir(os.path.dirname(run_dir))
    except OSError:
        pass


# What a scenario may raise for a failure of its own (the next scenarios still run).
SCENARIO_ERRORS = (E2EError, AssertionError, OSError, ValueError, KeyError, TypeError,
                   AttributeError, IndexError, subprocess.TimeoutExpired)


class Suite:
    """One line per scenario, a cleanup line, a summary, and the exit status, around a Run:

        def body(run, suite):
            run.build_images(bin_dir)
            suite.scenario("setup", setup, fatal=True)   # a failure ends the run
            suite.scenario("a mtls", mtls)               # a failure is reported, the next runs
        sys.exit(Suite("mesh").main(body))

    Without root or podman it prints a SKIP line and exits 0, unless MESHLET_REQUIRE_E2E=1."""

    def __init__(self, name):
        self.name = name
        self.results = []
        self.started = time.monotonic()

    def report(self, ok, name, detail, t0):
        self.results.append(ok)
        print("%s  %-16s %s (%.1f s)" % ("PASS" if ok else "FAIL", name, detail,
                                         time.monotonic() - t0), flush=True)

    def scenario(self, name, fn, fatal=False):
        """Runs fn(), which returns the line's detail or raises (SCENARIO_ERRORS) what failed."""
        t0 = time.monotonic()
        try:
            detail = fn()
        except SCENARIO_ERRORS as e:
            self.report(False, name, "%s: %s" % (type(e).__name__, e), t0)
            if fatal:
                raise E2EError(str(e))
            return False
        self.report(True, name, detail, t0)
        return True

    def main(self, body, keep=False, cni=False):
        run = Run(name=self.name, keep=keep, cni=cni)
        try:
            with run:
                body(run, self)
                if not all(self.results):
                    run.dump()
        except Skip as e:
            if os.environ.get("MESHLET_REQUIRE_E2E") == "1":
                print("FAIL  e2e %s needs root and podman here (MESHLET_REQUIRE_E2E=1): %s" % (
                    self.name, e))
                return 1
            print("SKIP: e2e %s (needs root and podman): %s" % (self.name, e))
            return 0
        except E2EError as e:
            # A scenario that failed has reported it, and the run dumped its logs and cleaned
            # up; an error before any failure was reported (the run could not be made, say)
            # must still fail the suite, not leave it to the cleanup line's PASS.
            if False not in self.results:
                self.report(False, "run", "%s: %s" % (type(e).__name__, e), time.monotonic())
        except KeyboardInterrupt as e:  # SIGINT, SIGTERM (a test timeout): the run cleaned up
            print("FAIL  interrupted (%s); the run's pods, images and network were removed" % e)
            return 1
        t0 = time.monotonic()
        left = run.leftovers()
        self.report(not left, "cleanup",
                    "nothing of the run remains" if not left else "left behind: %s" % left, t0)
        print("e2e %s: %d passed, %d failed in %.0f s" % (
            self.name, self.results.count(True), self.results.count(False),
            time.monotonic() - self.started))
        return 0 if self.results and all(self.results) else 1
