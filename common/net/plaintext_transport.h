#pragma once

// PlaintextTransport: the identity Transport for connections without TLS. Bytes move between the
// wire and application buffers by relinking blocks, never by copying payload. Stateless apart
// from the empty PeerInfo; HandshakeComplete() is always true.

#include <memory>

#include "common/net/transport.h"

namespace meshlet::net {

class PlaintextTransport final : public Transport {
 public:
  absl::Status Start(const Address& peer, Buffer& out) override;
  absl::Status OnReceived(Buffer& wire_in, Buffer& app_in, Buffer& out) override;
  absl::Status Send(Buffer& app_out, Buffer& out) override;
  void Shutdown(Buffer& out) override;
  bool HandshakeComplete() const override { return true; }
  const PeerInfo& peer() const override { return peer_; }

  static TransportFactory Factory();

 private:
  PeerInfo peer_;
};

}  // namespace meshlet::net
