#pragma once

// TLS for the control plane's gRPC port (15012) from PEM files: server-authenticated, ALPN "h2".
// Files are read once, synchronously, at startup (main thread).

#include <string>

#include "absl/status/statusor.h"
#include "common/net/transport.h"
#include "common/tls/tls_context.h"

namespace meshlet::controlplane::ads {

// `cert_file` holds the certificate chain (leaf first), `key_file` its private key. Errors name
// the file and what was wrong.
absl::StatusOr<net::TransportFactory> ServerTlsFromFiles(const std::string& cert_file,
                                                         const std::string& key_file);
// The same as a context configuration, for callers that rebuild the context later.
absl::StatusOr<tls::TlsContextConfig> ServerTlsConfigFromFiles(const std::string& cert_file,
                                                               const std::string& key_file);

}  // namespace meshlet::controlplane::ads
