#pragma once

// BannerServer: an opaque TCP service whose server speaks first, as MySQL's greeting or SMTP's
// "220" line do, so the end-to-end tests can check that a mesh's transparent capture passes such
// protocols (a sidecar that waits for the client's first bytes to detect the protocol would hold
// the banner back).
//
//   on accept, before reading anything:  <banner>\r\n      (default "220 SERVICE POD ready")
//   for every line read (up to LF; a CR before it is dropped):
//                                        echo SERVICE/POD: <line>\r\n
//   the client finishes sending:         a last unterminated line is answered too, then the
//                                        connection closes once the answers are written
//   a line longer than max_line_bytes:   error: line longer than N bytes\r\n, then it closes
//
// Ownership and threading: everything runs on the loop's thread. The server owns its listener
// and connections; connections beyond max_connections are closed at once, unanswered. Destroy
// the server before its Loop.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "tests/e2e/testapp/acceptor.h"

namespace meshlet::testapp {

class BannerConnection;  // tcp_server.cc

struct BannerServerOptions {
  std::string service = "testapp";
  std::string pod = "testapp";
  std::string banner;  // one line without CR/LF; "" means "220 SERVICE POD ready"
  size_t max_connections = 1024;
  size_t max_line_bytes = 64 << 10;
  bool log_connections = false;  // one line on stderr per closed connection
};

class BannerServer {
 public:
  // Listens on `address` (port 0: any free one).
  static absl::StatusOr<std::unique_ptr<BannerServer>> Create(event::Loop& loop,
                                                              const net::Address& address,
                                                              BannerServerOptions options);
  ~BannerServer();
  BannerServer(const BannerServer&) = delete;
  BannerServer& operator=(const BannerServer&) = delete;

  const net::Address& address() const { return acceptor_->address(); }
  // The first line every connection gets, without CR LF.
  const std::string& banner() const { return banner_; }
  // Stops accepting and closes every connection once what it was sent is written.
  void Shutdown() { acceptor_->Shutdown(); }
  size_t connections() const { return acceptor_->connections(); }
  uint64_t accepted() const { return acceptor_->accepted(); }
  uint64_t lines() const { return lines_; }  // lines answered

 private:
  friend class BannerConnection;
  explicit BannerServer(BannerServerOptions options);

  const BannerServerOptions options_;
  const std::string banner_;
  std::unique_ptr<Acceptor> acceptor_;
  uint64_t lines_ = 0;
};

}  // namespace meshlet::testapp
