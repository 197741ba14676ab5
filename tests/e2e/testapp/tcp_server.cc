#include "tests/e2e/testapp/tcp_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/net/buffer.h"

namespace meshlet::testapp {

// One accepted connection: the banner, then an answer per line.
class BannerConnection final : public ServedConnection, public net::ConnectionCallbacks {
 public:
  BannerConnection(BannerServer& server, std::unique_ptr<net::Connection> connection)
      : server_(server), connection_(std::move(connection)) {
    connection_->SetCallbacks(this);
    connection_->Write(absl::StrCat(server_.banner_, "\r\n"));
  }
  ~BannerConnection() override {
    if (!connection_->closed()) {
      connection_->SetCallbacks(nullptr);
      connection_->Close(net::CloseMode::kNoFlush);
    }
  }

  void Shutdown() override { connection_->Close(net::CloseMode::kFlush); }

  // net::ConnectionCallbacks
  void OnData(net::Buffer& data, bool end_stream) override {
    const size_t max = server_.options_.max_line_bytes;
    for (size_t end = data.Find("\n"); end != net::Buffer::npos; end = data.Find("\n")) {
      if (end > max) break;
      Answer(data.Linearize(end));
      data.Drain(end + 1);
    }
    if (data.length() > max) {
      connection_->Write(absl::StrCat("error: line longer than ", max, " bytes\r\n"));
      data.Clear();
      connection_->Close(net::CloseMode::kFlush);
      return;
    }
    if (end_stream) {
      if (!data.empty()) Answer(data.Linearize(data.length()));
      data.Clear();
      connection_->Close(net::CloseMode::kFlush);
    }
  }
  void OnClose(net::CloseReason reason, const absl::Status& detail) override {
    if (server_.options_.log_connections) {
      LOG(INFO) << "tcp connection from " << connection_->remote_address().ToString() << ": "
                << lines_ << " lines, closed: " << net::CloseReasonName(reason)
                << (detail.ok() ? "" : absl::StrCat(" (", detail.message(), ")"));
    }
    server_.acceptor_->Remove(this);
  }

 private:
  void Answer(absl::string_view line) {
    absl::ConsumeSuffix(&line, "\r");
    ++lines_;
    ++server_.lines_;
    const BannerServerOptions& o = server_.options_;
    connection_->Write(absl::StrCat("echo ", o.service, "/", o.pod, ": ", line, "\r\n"));
  }

  BannerServer& server_;
  std::unique_ptr<net::Connection> connection_;
  uint64_t lines_ = 0;
};

BannerServer::BannerServer(BannerServerOptions options)
    : options_(std::move(options)),
      banner_(options_.banner.empty()
                  ? absl::StrCat("220 ", options_.service, " ", options_.pod, " ready")
                  : options_.banner) {}

BannerServer::~BannerServer() { acceptor_.reset(); }

absl::StatusOr<std::unique_ptr<BannerServer>> BannerServer::Create(event::Loop& loop,
                                                                   const net::Address& address,
                                                                   BannerServerOptions options) {
  std::unique_ptr<BannerServer> server(new BannerServer(std::move(options)));
  BannerServer* raw = server.get();
  auto acceptor =
      Acceptor::Create(loop, address, raw->options_.max_connections,
                       [raw](std::unique_ptr<net::Connection> connection) {
                         return std::make_unique<BannerConnection>(*raw, std::move(connection));
                       });
  if (!acceptor.ok()) return acceptor.status();
  server->acceptor_ = *std::move(acceptor);
  return server;
}

}  // namespace meshlet::testapp
