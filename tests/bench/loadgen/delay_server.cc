#include "tests/bench/loadgen/delay_server.h"

#include <utility>

namespace meshlet::loadgen {

DelayServer::DelayServer(DelayServerOptions options)
    : options_(std::move(options)), body_(options_.response_bytes, 'x') {}

DelayServer::~DelayServer() {
  // The responders refer to the server's connections: they go first.
  pending_.clear();
  timer_.reset();
  server_.reset();
  grpc_server_.reset();
}

absl::StatusOr<std::unique_ptr<DelayServer>> DelayServer::Create(event::Loop& loop,
                                                                 DelayServerOptions options) {
  std::unique_ptr<DelayServer> server(new DelayServer(std::move(options)));
  DelayServer* self = server.get();
  absl::StatusOr<std::unique_ptr<PreciseTimer>> timer =
      PreciseTimer::Create(loop, [self] { self->OnTimer(); });
  if (!timer.ok()) return timer.status();
  server->timer_ = *std::move(timer);
  if (!server->options_.grpc_method.empty()) {
    http::grpc::ServerOptions grpc;
    grpc.transport_factory = server->options_.transport_factory;
    server->grpc_server_ = std::make_unique<http::grpc::Server>(loop, std::move(grpc));
    absl::Status registered = server->grpc_server_->RegisterMethod(
        server->options_.grpc_method, [self](std::shared_ptr<http::grpc::ServerCall> call) {
          call->OnMessage([](std::string) {});
          call->OnHalfClose([self, call] {
            self->OnRequest([self, call] {
              call->Send(self->body_);
              call->Finish(http::grpc::StatusCode::kOk);
            });
          });
        });
    if (!registered.ok()) return registered;
    if (absl::Status started = server->grpc_server_->Start(server->options_.listen);
        !started.ok()) {
      return started;
    }
    return server;
  }
  http::HttpServerOptions http;
  http.max_connections = server->options_.max_connections;
  http.max_request_body_bytes = 64 << 20;
  http.transport_factory = server->options_.transport_factory;
  absl::StatusOr<std::unique_ptr<http::HttpServer>> listening = http::HttpServer::Create(
      loop, server->options_.listen, std::move(http),
      http::AsyncRequestHandler([self](const http::ServerRequest&, http::Responder responder) {
        self->OnRequest([self, responder = std::move(responder)] {
          responder(http::ServerResponse::Text(200, self->body_));
        });
      }));
  if (!listening.ok()) return listening.status();
  server->server_ = *std::move(listening);
  return server;
}

void DelayServer::OnRequest(std::function<void()> answer) {
  const MonotonicTime now = std::chrono::steady_clock::now();
  ++requests_;
  if (!first_request_.has_value()) first_request_ = now;
  MonotonicTime due = now + options_.delay;
  if (options_.stall > Duration::zero()) {
    const MonotonicTime stall_begin = *first_request_ + options_.stall_after;
    const MonotonicTime stall_end = stall_begin + options_.stall;
    if (due >= stall_begin && due < stall_end) due = stall_end;
  }
  const bool was_empty = pending_.empty();
  pending_.push_back({due, std::move(answer)});
  if (was_empty) timer_->Arm(due);
}

void DelayServer::OnTimer() {
  const MonotonicTime now = std::chrono::steady_clock::now();
  while (!pending_.empty() && pending_.front().due <= now) {
    std::function<void()> answer = std::move(pending_.front().answer);
    pending_.pop_front();
    answer();
  }
  if (!pending_.empty()) timer_->Arm(pending_.front().due);
}

}  // namespace meshlet::loadgen
