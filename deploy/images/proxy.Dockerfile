# meshlet-proxy: the sidecar, and the iptables tools its init step runs (README.md here).
# Build with deploy/images/build.py (./dev images), which fills the context: bin/ the binaries,
# root/ the shared libraries they load (found with ldd) and iptables with its modules, etc/.
FROM scratch
COPY root/ /
COPY etc/ /etc/
COPY bin/sidecar /usr/local/bin/sidecar
# The sidecar runs as the proxy user, whose traffic interception leaves alone; the init container
# that writes the iptables rules runs as root (with NET_ADMIN).
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/sidecar"]
