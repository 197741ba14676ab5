# meshlet-cni: CNI mode's node agent (meshlet-cni-agent) and the plugin it installs on the node,
# for the DaemonSet of k8s/cni (README.md here). Build with deploy/images/build.py (./dev images),
# which fills the context: bin/ the binaries, root/ the shared libraries they load, bundle/ the
# plugin with its loader and libraries, as the agent copies it to the node's meshlet-cni.d/ for
# the static meshlet-cni-launcher (installed as the node's meshlet-cni) to run.
FROM scratch
COPY root/ /
COPY etc/ /etc/
COPY bin/meshlet-cni-agent /usr/local/bin/meshlet-cni-agent
COPY bin/meshlet-cni /usr/local/bin/meshlet-cni
COPY bin/meshlet-cni-launcher /usr/local/bin/meshlet-cni-launcher
COPY bundle/ /usr/local/lib/meshlet-cni/
# Root, for the node's root-owned CNI directories (the DaemonSet drops every capability).
USER 0:0
ENTRYPOINT ["/usr/local/bin/meshlet-cni-agent"]
