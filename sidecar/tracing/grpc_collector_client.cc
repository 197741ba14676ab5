#include "sidecar/tracing/grpc_collector_client.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/http/grpc/status.h"

namespace meshlet::sidecar::tracing {

GrpcCollectorClient::GrpcCollectorClient(event::Loop& loop,
                                         std::shared_ptr<const CollectorAddress> address,
                                         Options options, const Clock& clock)
    : loop_(loop),
      address_(std::move(address)),
      options_(std::move(options)),
      clock_(clock),
      failure_timer_(loop, [this] { Finish(std::move(failure_)); }) {}

// The channel ends its calls without calling back.
GrpcCollectorClient::~GrpcCollectorClient() = default;

uint64_t GrpcCollectorClient::connections_opened() const {
  return retired_connections_ + (channel_ != nullptr ? channel_->connection_attempts() : 0);
}

void GrpcCollectorClient::DropChannel() {
  if (channel_ == nullptr) return;
  retired_connections_ += channel_->connection_attempts();
  loop_.DeferDelete(std::move(channel_));
}

void GrpcCollectorClient::Post(absl::string_view, std::initializer_list<absl::string_view> body,
                               Done done) {
  CHECK(!busy_);
  busy_ = true;
  done_ = std::move(done);
  if (channel_ != nullptr && clock_.Now() - last_used_ > options_.idle_limit) DropChannel();
  reused_ = channel_ != nullptr;
  if (channel_ == nullptr) {
    const std::vector<net::Address> addresses = address_->Get();
    if (addresses.empty()) {
      failure_ = Result{.error = absl::StrCat(address_->text(), " has not resolved")};
      failure_timer_.Enable(Duration::zero());
      return;
    }
    const net::Address& target = addresses[next_address_ % addresses.size()];
    channel_address_ = target.ToString();
    channel_ = std::make_unique<http::grpc::Channel>(
        loop_, target,
        http::grpc::ChannelOptions{.transport_factory = options_.transport,
                                   .authority = options_.authority,
                                   .connect_timeout = options_.timeout,
                                   .user_agent = "meshlet-sidecar"});
  }
  // The channel holds the call while it runs; the handle is not needed after this.
  const std::shared_ptr<http::grpc::ClientCall> call =
      channel_->StartCall(kTraceExportMethod, http::grpc::CallOptions{.timeout = options_.timeout});
  // The response is read and dropped: the status comes after it.
  call->OnMessage([](std::string) {});
  call->OnFinish([this](http::grpc::StatusCode code, const std::string& message,
                        const http::HeaderMap&) { OnFinish(code, message); });
  call->SendPieces(body);
  call->HalfClose();
}

void GrpcCollectorClient::OnFinish(http::grpc::StatusCode code, const std::string& message) {
  if (code == http::grpc::StatusCode::kOk) {
    last_used_ = clock_.Now();
    Finish(Result{.ok = true});
    return;
  }
  Result result;
  const bool unavailable = code == http::grpc::StatusCode::kUnavailable;
  // Once more, over a new connection: when a kept one is no longer taken calls on (its
  // certificate expired after a renewal, or it went away as the call went out), or when another
  // replica may be reachable.
  result.may_resend =
      (reused_ && (unavailable || code == http::grpc::StatusCode::kUnauthenticated)) ||
      (unavailable && address_->Get().size() > 1);
  result.error = absl::StrCat("export to ", address_->text(), " (", channel_address_,
                              "): ", http::grpc::StatusCodeName(code), ": ", message);
  // Unreachable: the next call tries the next replica.
  if (unavailable) ++next_address_;
  DropChannel();
  Finish(std::move(result));
}

void GrpcCollectorClient::Finish(Result result) {
  failure_timer_.Disable();
  Done done = std::move(done_);
  done_ = nullptr;
  busy_ = false;
  if (done) done(std::move(result));
}

}  // namespace meshlet::sidecar::tracing
