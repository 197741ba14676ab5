#include "sidecar/cluster/fake_codec.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/net/buffer.h"

namespace meshlet::sidecar::cluster::testing {

class FakeClientConnection::FakeStream final : public http::StreamEncoder, public http::Stream {
 public:
  FakeStream(FakeClientConnection& codec, uint32_t id, http::StreamDecoder& decoder)
      : codec_(codec), id_(id), decoder_(decoder) {}

  // http::StreamEncoder
  void Encode1xxHeaders(const http::HeaderMap&) override {}
  void EncodeHeaders(const http::HeaderMap& headers, bool end_stream) override {
    if (!open()) return;
    Write(absl::StrCat("REQ ", id_, " ", headers.Get(":path").value_or("/"), "\n"));
    if (end_stream) EndRequest();
  }
  void EncodeData(net::Buffer& data, bool end_stream) override {
    const size_t length = data.length();
    data.Drain(length);
    if (!open()) return;
    if (length > 0) Write(absl::StrCat("DATA ", id_, " ", length, "\n"));
    if (end_stream) EndRequest();
  }
  void EncodeTrailers(const http::HeaderMap&) override {
    if (open()) EndRequest();
  }
  http::Stream& GetStream() override { return *this; }

  // http::Stream
  void AddCallbacks(http::StreamCallbacks& callbacks) override { callbacks_.push_back(&callbacks); }
  void RemoveCallbacks(http::StreamCallbacks& callbacks) override {
    callbacks_.erase(std::remove(callbacks_.begin(), callbacks_.end(), &callbacks),
                     callbacks_.end());
  }
  void ResetStream(http::StreamResetReason reason) override {
    if (!open()) return;
    if (codec_.options_.protocol == http::Protocol::kHttp2) {
      Write(absl::StrCat("RST ", id_, "\n"));
    }
    Reset(reason, "local reset");
    if (codec_.options_.protocol != http::Protocol::kHttp2) codec_.io_.Close(false);
  }
  void ReadDisable(bool disable) override { read_disabled_ += disable ? 1 : -1; }
  uint32_t BufferLimit() const override { return 1 << 20; }

  bool open() const { return !reset_ && !(request_done_ && response_done_); }

  void Reset(http::StreamResetReason reason, absl::string_view details) {
    if (!open()) return;
    reset_ = true;
    auto callbacks = callbacks_;
    for (http::StreamCallbacks* cb : callbacks) cb->OnResetStream(reason, details);
  }

  void OnResponseHeaders(int status, bool end_stream) {
    if (!open() || response_done_) return;
    if (end_stream) response_done_ = true;
    auto headers = std::make_unique<http::HeaderMap>();
    headers->Add(":status", absl::StrCat(status));
    for (const auto& [name, value] : pending_fields_) headers->Add(name, value);
    pending_fields_.clear();
    decoder_.DecodeHeaders(std::move(headers), end_stream);
  }
  // A field for the next headers or trailers.
  void AddField(absl::string_view name, absl::string_view value) {
    pending_fields_.emplace_back(std::string(name), std::string(value));
  }
  void OnResponseTrailers() {
    if (!open() || response_done_) return;
    response_done_ = true;
    auto trailers = std::make_unique<http::HeaderMap>();
    for (const auto& [name, value] : pending_fields_) trailers->Add(name, value);
    pending_fields_.clear();
    decoder_.DecodeTrailers(std::move(trailers));
  }
  void OnResponseData(absl::string_view text, bool end_stream) {
    if (!open() || response_done_) return;
    if (end_stream) response_done_ = true;
    net::Buffer data(text);
    decoder_.DecodeData(data, end_stream);
  }

 private:
  void Write(absl::string_view text) {
    net::Buffer buffer(text);
    codec_.io_.Write(buffer);
  }
  void EndRequest() {
    request_done_ = true;
    Write(absl::StrCat("END ", id_, "\n"));
  }

  FakeClientConnection& codec_;
  const uint32_t id_;
  http::StreamDecoder& decoder_;
  absl::InlinedVector<http::StreamCallbacks*, 2> callbacks_;
  bool request_done_ = false;
  bool response_done_ = false;
  std::vector<std::pair<std::string, std::string>> pending_fields_;
  bool reset_ = false;
  int read_disabled_ = 0;
};

FakeClientConnection::FakeClientConnection(http::CodecIo& io, http::ConnectionCallbacks& callbacks,
                                           FakeCodecOptions options)
    : io_(io), callbacks_(callbacks), options_(options) {}

FakeClientConnection::~FakeClientConnection() = default;

size_t FakeClientConnection::ActiveStreams() const {
  return static_cast<size_t>(std::count_if(streams_.begin(), streams_.end(),
                                           [](const auto& entry) { return entry.second->open(); }));
}

bool FakeClientConnection::CanOpenStream() const {
  if (goaway_received_) return false;
  uint64_t limit = 1;
  if (options_.protocol == http::Protocol::kHttp2) {
    limit = std::min(options_.max_concurrent_streams, peer_max_streams_);
  }
  return ActiveStreams() < limit;
}

http::StreamEncoder& FakeClientConnection::NewStream(http::StreamDecoder& response_decoder) {
  CHECK(CanOpenStream()) << "NewStream on a connection that cannot open one";
  const uint32_t id = next_id_++;
  auto stream = std::make_unique<FakeStream>(*this, id, response_decoder);
  FakeStream& ref = *stream;
  streams_.emplace(id, std::move(stream));
  return ref;
}

absl::Status FakeClientConnection::Dispatch(net::Buffer& data) {
  std::string text = data.ToString();
  size_t consumed = 0;
  absl::Status status;
  while (status.ok()) {
    const size_t eol = text.find('\n', consumed);
    if (eol == std::string::npos) break;
    const std::string line = text.substr(consumed, eol - consumed);
    consumed = eol + 1;
    status = HandleLine(line);
  }
  data.Drain(status.ok() ? consumed : data.length());
  if (!status.ok()) ResetAll(http::StreamResetReason::kProtocolError, status.message());
  return status;
}

FakeClientConnection::FakeStream* FakeClientConnection::Find(absl::string_view id_text) {
  uint32_t id = 0;
  if (!absl::SimpleAtoi(id_text, &id)) return nullptr;
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

absl::Status FakeClientConnection::HandleLine(absl::string_view line) {
  std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
  const absl::string_view verb = parts[0];
  if (verb == "GOAWAY") {
    goaway_received_ = true;
    callbacks_.OnGoAway();
    return absl::OkStatus();
  }
  if (verb == "SETTINGS" && parts.size() == 2) {
    if (!absl::SimpleAtoi(parts[1], &peer_max_streams_)) {
      return absl::InvalidArgumentError("bad SETTINGS");
    }
    return absl::OkStatus();
  }
  if (parts.size() < 2) return absl::InvalidArgumentError(absl::StrCat("bad line: ", line));
  FakeStream* stream = Find(parts[1]);
  if (stream == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown stream: ", line));
  }
  int status = 0;
  if ((verb == "RESP" || verb == "FULL") && parts.size() == 3 &&
      absl::SimpleAtoi(parts[2], &status)) {
    stream->OnResponseHeaders(status, verb == "FULL");
  } else if (verb == "BODY" && parts.size() == 3) {
    stream->OnResponseData(parts[2], false);
  } else if (verb == "DONE") {
    stream->OnResponseData("", true);
  } else if (verb == "FIELD" && parts.size() == 3 &&
             parts[2].find(' ') != absl::string_view::npos) {
    const size_t space = parts[2].find(' ');
    stream->AddField(parts[2].substr(0, space), parts[2].substr(space + 1));
  } else if (verb == "TRAILERS") {
    stream->OnResponseTrailers();
  } else if (verb == "RST") {
    stream->Reset(http::StreamResetReason::kRemoteReset, "remote reset");
  } else {
    return absl::InvalidArgumentError(absl::StrCat("bad line: ", line));
  }
  return absl::OkStatus();
}

void FakeClientConnection::ResetAll(http::StreamResetReason reason, absl::string_view details) {
  for (auto& [id, stream] : streams_) stream->Reset(reason, details);
}

CodecFactory FakeClientConnection::Factory(FakeCodecOptions options,
                                           std::vector<FakeClientConnection*>* created) {
  return [options, created](http::CodecIo& io, http::ConnectionCallbacks& callbacks) {
    auto codec = std::make_unique<FakeClientConnection>(io, callbacks, options);
    if (created != nullptr) created->push_back(codec.get());
    return std::unique_ptr<http::ClientConnection>(std::move(codec));
  };
}

// One accepted connection of the FakeUpstream.
struct FakeUpstream::Conn final : public net::ConnectionCallbacks {
  Conn(FakeUpstream& upstream, size_t index, std::unique_ptr<net::Connection> connection)
      : upstream(upstream), index(index), connection(std::move(connection)) {
    this->connection->SetCallbacks(this);
  }

  void OnData(net::Buffer& data, bool end_stream) override {
    pending += data.ToString();
    data.Drain(data.length());
    size_t eol;
    while ((eol = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, eol);
      pending.erase(0, eol + 1);
      upstream.OnLine(index, line);
      if (closed) return;
    }
    if (end_stream && !closed) connection->Close(net::CloseMode::kFlush);
  }
  void OnClose(net::CloseReason, const absl::Status&) override { closed = true; }

  FakeUpstream& upstream;
  size_t index;
  std::unique_ptr<net::Connection> connection;
  std::string pending;
  bool closed = false;
};

FakeUpstream::FakeUpstream(event::Loop& loop) : loop_(loop) {
  auto address = net::Address::Parse("127.0.0.1:0");
  CHECK_OK(address);
  net::ListenerOptions options;
  options.reuse_port = false;
  auto listener = net::Listener::Create(
      loop_, *address, options, [this](std::unique_ptr<net::Connection> connection) {
        const size_t index = connections_.size();
        connections_.push_back(std::make_unique<Conn>(*this, index, std::move(connection)));
      });
  CHECK_OK(listener);
  listener_ = std::move(*listener);
}

FakeUpstream::~FakeUpstream() = default;

const net::Address& FakeUpstream::address() const { return listener_->address(); }

void FakeUpstream::Send(size_t index, absl::string_view text) {
  CHECK(index < connections_.size());
  Conn& conn = *connections_[index];
  if (!conn.closed) conn.connection->Write(text);
}

void FakeUpstream::Close(size_t index) {
  CHECK(index < connections_.size());
  Conn& conn = *connections_[index];
  if (!conn.closed) conn.connection->Close(net::CloseMode::kFlush);
}

void FakeUpstream::StopListening() { listener_->StopAccepting(); }

size_t FakeUpstream::open_connections() const {
  return static_cast<size_t>(std::count_if(connections_.begin(), connections_.end(),
                                           [](const auto& c) { return !c->closed; }));
}

bool FakeUpstream::connection_open(size_t index) const {
  return index < connections_.size() && !connections_[index]->closed;
}

size_t FakeUpstream::unanswered() const {
  size_t n = 0;
  for (size_t i = 0; i < requests_.size(); ++i) {
    if (requests_[i].ended && !answered_[i]) ++n;
  }
  return n;
}

void FakeUpstream::Respond(size_t i, int status) {
  CHECK(i < requests_.size());
  answered_[i] = true;
  Send(requests_[i].connection, absl::StrCat("FULL ", requests_[i].id, " ", status, "\n"));
}

void FakeUpstream::OnLine(size_t index, absl::string_view line) {
  std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
  uint32_t id = 0;
  if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &id)) return;
  if (parts[0] == "REQ") {
    requests_.push_back(
        Request{index, id, parts.size() == 3 ? std::string(parts[2]) : std::string("/")});
    answered_.push_back(false);
    if (on_request) on_request(requests_.back());
    return;
  }
  if (parts[0] == "DATA") {
    size_t length = 0;
    if (parts.size() < 3 || !absl::SimpleAtoi(parts[2], &length)) return;
    for (size_t i = requests_.size(); i-- > 0;) {
      if (requests_[i].connection == index && requests_[i].id == id) {
        requests_[i].body_bytes += length;
        return;
      }
    }
    return;
  }
  if (parts[0] != "END") return;
  for (size_t i = requests_.size(); i-- > 0;) {
    if (requests_[i].connection == index && requests_[i].id == id) {
      requests_[i].ended = true;
      if (on_request) on_request(requests_[i]);
      if (auto_respond && !answered_[i]) Respond(i);
      return;
    }
  }
}

}  // namespace meshlet::sidecar::cluster::testing
