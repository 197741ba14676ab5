#include "control-plane/xds/tls_files.h"

#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"

namespace meshlet::controlplane::ads {

tls::TlsContextConfig ServerTlsConfig(std::string certificate_chain_pem,
                                      std::string private_key_pem) {
  return {.certificate_chain_pem = std::move(certificate_chain_pem),
          .private_key_pem = std::move(private_key_pem),
          .alpn_protocols = {"h2"},
          .require_alpn_match = true};
}

absl::StatusOr<tls::TlsContextConfig> ServerTlsConfigFromFiles(const std::string& cert_file,
                                                               const std::string& key_file) {
  absl::StatusOr<std::string> chain = ReadFile(cert_file);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<std::string> key = ReadFile(key_file);
  if (!key.ok()) return key.status();
  tls::TlsContextConfig config = ServerTlsConfig(*std::move(chain), *std::move(key));
  // Checked here so errors name the files.
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateServer(config);
  if (!context.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS certificate \"", cert_file, "\" / key \"",
                                                   key_file, "\": ", context.status().message()));
  }
  return config;
}

absl::StatusOr<net::TransportFactory> ServerTlsFromFiles(const std::string& cert_file,
                                                         const std::string& key_file) {
  absl::StatusOr<tls::TlsContextConfig> config = ServerTlsConfigFromFiles(cert_file, key_file);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
      tls::TlsContext::CreateServer(*config);
  if (!context.ok()) return context.status();
  return tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(*context));
}

}  // namespace meshlet::controlplane::ads
