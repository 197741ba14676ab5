#pragma once

// TLS for the control plane's gRPC port (15012): server-authenticated, ALPN "h2", from PEM files
// (read once, synchronously, at startup on the main thread) or from PEM text (the certificate the
// control plane's CA issues to itself).

#include <string>

#include "absl/status/statusor.h"
#include "common/net/transport.h"
#include "common/tls/tls_context.h"

namespace meshlet::controlplane::ads {

// The discovery port's server settings for a certificate chain (leaf first) and its key, both
// PEM; not checked here (TlsContext::CreateServer does).
tls::TlsContextConfig ServerTlsConfig(std::string certificate_chain_pem,
                                      std::string private_key_pem);

// `cert_file` holds the certificate chain (leaf first), `key_file` its private key. Errors name
// the file and what was wrong.
absl::StatusOr<net::TransportFactory> ServerTlsFromFiles(const std::string& cert_file,
                                                         const std::string& key_file);
// The same as a context configuration, for callers that rebuild the context later.
absl::StatusOr<tls::TlsContextConfig> ServerTlsConfigFromFiles(const std::string& cert_file,
                                                               const std::string& key_file);

}  // namespace meshlet::controlplane::ads
