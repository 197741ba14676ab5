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
    : OneConnectionClient(loop, request.url.host, request.url.port, request.url.ToString(),
                          request.timeout, std::move(callback)),
      request_(std::move(request)) {}

// The connection closes before the codec goes.
Fetch::~Fetch() { CloseConnection(); }

void Fetch::OnConnectStarted() {
  // After a refused address, the previous codec goes at the end of the turn.
  loop().DeferDelete(std::move(codec_));
  const HttpUrl& url = request_.url;
  codec_ = std::make_unique<http::h1::ClientCodec>(loop(), *this, *this);

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

void Fetch::OnData(net::Buffer& data, bool end_stream) {
  absl::Status status = codec_->Dispatch(data);
  if (status.ok() && end_stream) status = codec_->OnEndOfStream();
  if (!status.ok()) {
    Finish(absl::DataLossError(
        absl::StrCat("bad answer from ", request_.url.ToString(), ": ", status.message())));
  }
}

void Fetch::OnClosedEarly(net::CloseReason reason) {
  codec_->OnConnectionClosed();  // resets the stream if the answer is not complete
  Finish(absl::UnavailableError(absl::StrCat(
      request_.url.authority, " closed the connection: ", net::CloseReasonName(reason))));
}

size_t Fetch::UnsentBytes() const {
  return connection() == nullptr ? 0 : connection()->buffered_write_bytes();
}

void Fetch::ReadDisable(bool disable) {
  net::Connection* c = connection();
  if (c == nullptr || c->closed()) return;
  disable ? c->ReadDisable() : c->ReadEnable();
}

void Fetch::Close(bool flush) {
  net::Connection* c = connection();
  if (c == nullptr || c->closed()) return;
  c->Close(flush ? net::CloseMode::kFlush : net::CloseMode::kNoFlush);
}

void Fetch::DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) {
  absl::SimpleAtoi(headers->Get(":status").value_or(""), &result_.status);
  for (const http::HeaderView h : *headers) {
    if (!http::HeaderMap::IsPseudoName(h.name)) result_.headers.Add(h.name, h.value);
  }
  if (end_stream) Finish(absl::OkStatus());
}

void Fetch::DecodeData(net::Buffer& data, bool end_stream) {
  if (finished()) {
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
