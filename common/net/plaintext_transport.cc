#include "common/net/plaintext_transport.h"

#include "common/net/buffer.h"

namespace meshlet::net {

absl::Status PlaintextTransport::Start(const Address&, Buffer&) { return absl::OkStatus(); }

absl::Status PlaintextTransport::OnReceived(Buffer& wire_in, Buffer& app_in, Buffer&) {
  app_in.Move(wire_in);
  return absl::OkStatus();
}

absl::Status PlaintextTransport::Send(Buffer& app_out, Buffer& out) {
  out.Move(app_out);
  return absl::OkStatus();
}

void PlaintextTransport::Shutdown(Buffer&) {}

TransportFactory PlaintextTransport::Factory() {
  return [] { return std::make_unique<PlaintextTransport>(); };
}

}  // namespace meshlet::net
