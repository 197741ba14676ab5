"""The Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards, the
policies of Kubernetes 1.30) as checks of one pod: what the admission controller would refuse at
the `baseline` and `restricted` levels. Each violation is "WHERE: WHAT", WHERE naming containers
by name (not index), so that the violations of a pod before and after injection compare.

Not the admission controller itself: the policy texts turned into code, for tests.
"""

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                           "persistentVolumeClaim", "projected", "secret"}
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def containers(spec):
    """(where, container) of every container, init and ephemeral container."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield f"{field}[{c.get('name')}]", c


def security(obj):
    return obj.get("securityContext") or {}


def baseline(metadata, spec):
    found = []
    pod_sc = security(spec)
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("spec.securityContext.windowsOptions.hostProcess: true")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"spec.{field}: true")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            found.append(f"volumes[{volume.get('name')}]: hostPath")
    for name, value in ((metadata or {}).get("annotations") or {}).items():
        if name.startswith(APPARMOR_PREFIX) and not (
                value == "runtime/default" or value.startswith("localhost/")):
            found.append(f"annotation {name}: {value}")
    for where, sc in [("spec.securityContext", pod_sc)] + [
            (f"{w}.securityContext", security(c)) for w, c in containers(spec)]:
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}.appArmorProfile: Unconfined")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            found.append(f"{where}.seLinuxOptions.type: {selinux['type']}")
        for field in ("user", "role"):
            if selinux.get(field):
                found.append(f"{where}.seLinuxOptions.{field} set")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}.seccompProfile: Unconfined")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls: {sysctl.get('name')}")
    for where, c in containers(spec):
        sc = security(c)
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}: hostProcess")
        if sc.get("privileged"):
            found.append(f"{where}: privileged")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            found.append(f"{where}: adds capabilities {sorted(added - BASELINE_CAPABILITIES)}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{where}: hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{where}: procMount {sc['procMount']}")
    return found


def restricted(metadata, spec):
    found = baseline(metadata, spec)
    pod_sc = security(spec)
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volumes[{volume.get('name')}]: type {sorted(kinds)}")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_sc.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser: 0")
    for where, c in containers(spec):
        sc = security(c)
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation is not false")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"{where}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile is not RuntimeDefault or Localhost")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}: capabilities do not drop ALL")
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            found.append(f"{where}: adds capabilities {sorted(added)} (restricted)")
    return found


LEVELS = {"baseline": baseline, "restricted": restricted}


def pod_templates(obj):
    """(object name, pod metadata, pod spec) of a Pod or of the pod template of a workload."""
    kind = obj.get("kind")
    if kind == "Pod":
        return [(f"Pod {obj['metadata']['name']}", obj.get("metadata"), obj["spec"])]
    if kind == "CronJob":
        template = obj["spec"]["jobTemplate"]["spec"]["template"]
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
                  "ReplicationController"):
        template = obj["spec"]["template"]
    else:
        return []
    return [(f"{kind} {obj['metadata']['name']}", template.get("metadata"), template["spec"])]


def violations(obj, level):
    """{object name: [violation]} of every pod in `obj` at `level`."""
    return {name: LEVELS[level](metadata, spec) for name, metadata, spec in pod_templates(obj)}
