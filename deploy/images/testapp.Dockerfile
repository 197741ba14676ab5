# meshlet-testapp: the end-to-end tests' sample service (tests/e2e/testapp; README.md here).
# Build with deploy/images/build.py (./dev images), which fills the context: bin/ the binary,
# root/ the shared libraries it loads (found with ldd), etc/.
FROM scratch
COPY root/ /
COPY etc/ /etc/
COPY bin/testapp /usr/local/bin/testapp
# Not the proxy user (1337): interception must see the app's own connections.
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/testapp"]
