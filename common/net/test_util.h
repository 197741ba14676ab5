#pragma once

// Test helpers for Connection/Listener tests: a ConnectionCallbacks that records what happened
// and lets a test hook any callback; a port that refuses connections.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/net/buffer.h"
#include "common/net/connection.h"

namespace meshlet::net::testing {

class RecordingCallbacks : public ConnectionCallbacks {
 public:
  void OnConnected() override {
    connected = true;
    if (on_connected) on_connected();
  }
  void OnData(Buffer& data, bool eos) override {
    ++data_events;
    if (eos) end_stream = true;
    if (on_data) {
      on_data(data, eos);
      return;
    }
    received += data.ToString();
    data.Drain(data.length());
  }
  void OnWriteHighWatermark() override {
    ++high_watermarks;
    if (on_high) on_high();
  }
  void OnWriteLowWatermark() override {
    ++low_watermarks;
    if (on_low) on_low();
  }
  void OnClose(CloseReason reason, const absl::Status& detail) override {
    ++closes;
    close_reason = reason;
    close_detail = detail;
    if (on_close) on_close(reason);
  }

  bool connected = false;
  bool end_stream = false;
  int data_events = 0;
  std::string received;
  int high_watermarks = 0;
  int low_watermarks = 0;
  int closes = 0;
  std::optional<CloseReason> close_reason;
  absl::Status close_detail;

  std::function<void()> on_connected;
  std::function<void(Buffer&, bool)> on_data;
  std::function<void()> on_high;
  std::function<void()> on_low;
  std::function<void(CloseReason)> on_close;
};

// A short unix socket path (sun_path holds 107 bytes; test temp directories can be longer).
inline std::string TestSocketPath(absl::string_view name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
  if (path.size() > 100) path = absl::StrCat("/tmp/", name, "-", getpid());
  return path;
}

// A TCP port that refuses connections for the object's life: held by a socket bound to it (on
// every IPv4 address, so 127.0.0.1 and 127.0.0.2 alike) that never listens. A port merely freed
// (bound, then closed) can, on a busy machine, be bound again by another process or taken by a
// connect as its own source port (a self-connect), and then a connect there does not fail.
// Aborts if no socket can be bound. Not copyable.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t size = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &size) != 0) {
      std::abort();
    }
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;

  uint16_t port() const { return port_; }
  // "127.0.0.1:PORT".
  std::string loopback() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

}  // namespace meshlet::net::testing
