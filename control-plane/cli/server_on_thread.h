#pragma once

// An HTTP(S) server on a loop thread of its own, for tests of meshctl's blocking clients to call:
// started by the constructor (127.0.0.1, port 0), stopped and joined by the destructor. The
// handler runs on the server's thread.

#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/event/loop.h"
#include "common/http/server.h"
#include "common/net/address.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::cli {

class ServerOnThread {
 public:
  ServerOnThread(http::HttpServerOptions options, http::RequestHandler handler) {
    std::promise<uint16_t> port;
    loop_.Post([&] {
      auto server = http::HttpServer::Create(loop_, *net::Address::Parse("127.0.0.1:0"),
                                             std::move(options), std::move(handler));
      if (!server.ok()) {
        ADD_FAILURE() << server.status();
        port.set_value(0);
        return;
      }
      server_ = *std::move(server);
      port.set_value(server_->address().port());
    });
    thread_ = std::thread([this] { loop_.Run(); });
    address_ = absl::StrCat("127.0.0.1:", port.get_future().get());
  }
  ~ServerOnThread() {
    loop_.Post([this] {
      server_.reset();
      loop_.Stop();
    });
    thread_.join();
  }
  const std::string& address() const { return address_; }

 private:
  event::Loop loop_;
  std::thread thread_;
  std::unique_ptr<http::HttpServer> server_;
  std::string address_;
};

}  // namespace meshlet::controlplane::cli
