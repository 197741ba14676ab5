# meshlet-control-plane: the control plane and meshctl (README.md here).
# Build with deploy/images/build.py (./dev images), which fills the context: bin/ the binaries,
# root/ the shared libraries they load (found with ldd), etc/.
FROM scratch
COPY root/ /
COPY etc/ /etc/
COPY bin/control-plane bin/meshctl /usr/local/bin/
# The default --data-dir (policy store, API token), writable by the control plane's user.
COPY --chown=65532:65532 data/ /var/lib/meshlet/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/control-plane"]
