#include "tests/e2e/testapp/client.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/net/address.h"
#include "common/net/buffer.h"

namespace meshlet::testapp {

std::unique_ptr<Fetch> Fetch::Start(event::Loop& loop, FetchRequest request, Callback callback) {
  std::unique_ptr<Fetch> fetch(new Fetch(loop, std::move(request), std::move(callback)));
  fetch->Begin();
  return fetch;
}

Fetch::Fetch(event::Loop& loop, FetchRequest request, Callback callback)
    : loop_(loop),
      request_(std::move(request)),
      callback_(std::move(callback)),
      started_(std::chrono::steady_clock::now()),
      deadline_(
          loop,
          [this] {
            Finish(absl::DeadlineExceededError(absl::StrCat(
                "no answer from ", request_.url.ToString(), " within ",
                std::chrono::duration_cast<std::chrono::milliseconds>(request_.timeout).count(),
                " ms")));
          }),
      done_(loop, [this] {
        // The callback may destroy this Fetch: it runs last, from locals.
        Callback callback = std::move(callback_);
        FetchResult result = std::move(result_);
        callback(std::move(result));
      }) {}

Fetch::~Fetch() {
  if (connection_ != nullptr && !connection_->closed()) {
    connection_->SetCallbacks(nullptr);
    connection_->Close(net::CloseMode::kNoFlush);
  }
}

void Fetch::Begin() {
  deadline_.Enable(request_.timeout);
  const HttpUrl& url = request_.url;
  absl::StatusOr<net::Address> literal = net::Address::FromIp(url.host, url.port);
  if (literal.ok()) {
    addresses_.push_back(*literal);
  } else {
    // A name: /etc/hosts (or DNS) has it.
    absl::StatusOr<std::vector<net::Address>> resolved = net::ResolveAll(url.host, url.port);
    if (!resolved.ok()) {
      Finish(absl::UnavailableError(resolved.status().message()));
      return;
    }
    addresses_ = *std::move(resolved);
  }
  Connect();
}

void Fetch::Connect() {
  if (connection_ != nullptr) {
    // The previous address refused: its connection and codec go at the end of the turn.
    loop_.DeferDelete(std::move(connection_));
    loop_.DeferDelete(std::move(codec_));
  }
  const HttpUrl& url = request_.url;
  connection_ = net::Connection::Connect(loop_, addresses_[next_address_++], request_.timeout);
  connection_->SetCallbacks(this);
  codec_ = std::make_unique<http::h1::ClientCodec>(loop_, *this, *this);

  http::HeaderMap headers;
  headers.Add(":method", request_.method);
  headers.Add(":scheme", "http");
  headers.Add(":path", url.has_target() ? absl::string_view(url.target) : "/");
  headers.Add(":authority", url.authority);
  headers.Add("user-agent", "meshlet-testapp");
  for (const auto& [name, value] : request_.headers) {
    if (!name.empty() && name[0] != ':' && name != "host" && name != "content-length") {
      headers.Add(name, value);
    }
  }
  if (!request_.body.empty()) headers.Add("content-length", absl::StrCat(request_.body.size()));
  http::StreamEncoder& encoder = codec_->NewStream(*this);
  encoder.GetStream().AddCallbacks(*this);
  codec_->GoAway();  // this request says `Connection: close`
  encoder.EncodeHeaders(headers, request_.body.empty());
  if (!request_.body.empty()) {
    net::Buffer body(request_.body);
    encoder.EncodeData(body, true);
  }
}

void Fetch::Finish(absl::Status error) {
  if (finished_) return;
  finished_ = true;
  result_.error = std::move(error);
  result_.elapsed = std::chrono::steady_clock::now() - started_;
  deadline_.Disable();
  if (connection_ != nullptr && !connection_->closed()) {
    connection_->SetCallbacks(nullptr);
    connection_->Close(net::CloseMode::kNoFlush);
  }
  done_.Enable(Duration(0));
}

void Fetch::OnData(net::Buffer& data, bool end_stream) {
  absl::Status status = codec_->Dispatch(data);
  if (status.ok() && end_stream) status = codec_->OnEndOfStream();
  if (!status.ok()) {
    Finish(absl::DataLossError(
        absl::StrCat("bad answer from ", request_.url.ToString(), ": ", status.message())));
  }
}

void Fetch::OnClose(net::CloseReason reason, const absl::Status& detail) {
  if (finished_) return;
  if (!connected_) {
    if (reason == net::CloseReason::kConnectFailed && next_address_ < addresses_.size()) {
      Connect();  // the name has another address
      return;
    }
    // The detail names the address and the error ("connect to 10.0.0.7:80: connection refused").
    Finish(absl::UnavailableError(detail.ok()
                                      ? absl::StrCat("cannot connect to ", request_.url.authority,
                                                     ": ", net::CloseReasonName(reason))
                                      : std::string(detail.message())));
    return;
  }
  codec_->OnConnectionClosed();  // resets the stream if the answer is not complete
  Finish(absl::UnavailableError(absl::StrCat(
      request_.url.authority, " closed the connection: ", net::CloseReasonName(reason))));
}

void Fetch::ReadDisable(bool disable) {
  if (connection_ == nullptr || connection_->closed()) return;
  disable ? connection_->ReadDisable() : connection_->ReadEnable();
}

void Fetch::Close(bool flush) {
  if (connection_ == nullptr || connection_->closed()) return;
  connection_->Close(flush ? net::CloseMode::kFlush : net::CloseMode::kNoFlush);
}

void Fetch::DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) {
  absl::SimpleAtoi(headers->Get(":status").value_or(""), &result_.status);
  for (const http::HeaderView h : *headers) {
    if (!http::HeaderMap::IsPseudoName(h.name)) result_.headers.Add(h.name, h.value);
  }
  if (end_stream) Finish(absl::OkStatus());
}

void Fetch::DecodeData(net::Buffer& data, bool end_stream) {
  if (finished_) {
    data.Clear();
    return;
  }
  if (result_.body.size() + data.length() > request_.max_response_bytes) {
    data.Clear();
    Finish(absl::ResourceExhaustedError(absl::StrCat("the answer from ", request_.url.ToString(),
                                                     " is longer than ",
                                                     request_.max_response_bytes, " bytes")));
    return;
  }
  result_.body += data.ToString();
  data.Clear();
  if (end_stream) Finish(absl::OkStatus());
}

void Fetch::DecodeTrailers(http::HeaderMapPtr) { Finish(absl::OkStatus()); }

void Fetch::OnResetStream(http::StreamResetReason reason, absl::string_view details) {
  Finish(absl::UnavailableError(absl::StrCat(
      "request to ", request_.url.ToString(), " failed: ", http::ResetReasonName(reason),
      details.empty() ? "" : " (", details, details.empty() ? "" : ")")));
}

}  // namespace meshlet::testapp
