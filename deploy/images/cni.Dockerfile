# meshlet-cni: CNI mode's node agent (meshlet-cni-agent) and the plugin it installs on the node
# (meshlet-cni), for the DaemonSet of k8s/cni (README.md here). Build with deploy/images/build.py
# (./dev images), which fills the context: bin/ the binaries, root/ the shared libraries they load.
FROM scratch
COPY root/ /
COPY etc/ /etc/
COPY bin/meshlet-cni-agent /usr/local/bin/meshlet-cni-agent
COPY bin/meshlet-cni /usr/local/bin/meshlet-cni
# Root, for the node's root-owned CNI directories (the DaemonSet drops every capability).
USER 0:0
ENTRYPOINT ["/usr/local/bin/meshlet-cni-agent"]
