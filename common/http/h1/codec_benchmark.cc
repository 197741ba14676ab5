// HTTP/1 codec round trips in memory: ClientCodec encodes a request, ServerCodec decodes it and
// answers, ClientCodec decodes the response; keep-alive, one connection. Reports heap
// allocations per round trip (all four codec steps plus the HeaderMaps handed to decoders).
//
//   bazel run --config=opt //common/http/h1:codec_benchmark

#include <string>

#include "benchmark/benchmark.h"
#include "common/base/allocation_counter.h"
#include "common/event/loop.h"
#include "common/http/h1/codec.h"

namespace meshlet::http::h1 {
namespace {

class PipeIo : public CodecIo {
 public:
  void Write(net::Buffer& data) override { out.Move(data); }
  size_t UnsentBytes() const override { return 0; }
  void ReadDisable(bool) override {}
  void Close(bool) override {}
  net::Buffer out;
};

// Answers every request from its end-of-request callback with a fixed response.
class Responder : public ServerConnectionCallbacks, public StreamDecoder {
 public:
  explicit Responder(size_t response_bytes) : body_(std::string(response_bytes, 'r')) {}
  StreamDecoder& NewStream(StreamEncoder& encoder) override {
    encoder_ = &encoder;
    return *this;
  }
  void DecodeHeaders(HeaderMapPtr, bool end_stream) override {
    if (end_stream) Respond();
  }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    data.Clear();
    if (end_stream) Respond();
  }
  void DecodeTrailers(HeaderMapPtr) override { Respond(); }

 private:
  void Respond() {
    encoder_->EncodeHeaders(headers_, false);
    net::Buffer body(body_);
    encoder_->EncodeData(body, true);
  }
  std::string body_;
  HeaderMap headers_{{":status", "200"},
                     {"content-type", "application/json"},
                     {"content-length", std::to_string(body_.size())},
                     {"cache-control", "no-cache"},
                     {"x-request-id", "7d3f2a1b-9c8e-4f6d-a5b4-c3d2e1f0a9b8"}};
  StreamEncoder* encoder_ = nullptr;
};

class Sink : public StreamDecoder {
 public:
  void DecodeHeaders(HeaderMapPtr, bool end_stream) override { done = end_stream; }
  void DecodeData(net::Buffer& data, bool end_stream) override {
    bytes += data.length();
    data.Clear();
    done = end_stream;
  }
  void DecodeTrailers(HeaderMapPtr) override { done = true; }
  bool done = false;
  size_t bytes = 0;
};

ConnectionCallbacks g_client_callbacks;

HeaderMap TypicalRequest(absl::string_view method) {
  return HeaderMap{{":method", method},
                   {":scheme", "http"},
                   {":path", "/api/v1/users/12345/orders?limit=20&offset=40"},
                   {":authority", "orders.default.svc.cluster.local:8080"},
                   {"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"},
                   {"accept", "application/json, text/plain, */*"},
                   {"accept-encoding", "gzip, deflate, br"},
                   {"authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2ln"},
                   {"x-request-id", "7d3f2a1b-9c8e-4f6d-a5b4-c3d2e1f0a9b8"},
                   {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}};
}

// range(0): request body bytes (0: GET); range(1): response body bytes.
void BM_RoundTrip(benchmark::State& state) {
  const size_t request_bytes = static_cast<size_t>(state.range(0));
  event::Loop loop;
  PipeIo client_io, server_io;
  Responder responder(static_cast<size_t>(state.range(1)));
  ServerCodec server(loop, server_io, responder);
  ClientCodec client(loop, client_io, g_client_callbacks);
  HeaderMap request = TypicalRequest(request_bytes == 0 ? "GET" : "POST");
  if (request_bytes > 0) request.Add("content-length", std::to_string(request_bytes));
  const std::string payload(request_bytes, 'q');
  Sink sink;
  uint64_t allocations = 0;
  for (auto _ : state) {
    const AllocationScope scope;
    sink.done = false;
    StreamEncoder& encoder = client.NewStream(sink);
    encoder.EncodeHeaders(request, request_bytes == 0);
    if (request_bytes > 0) {
      net::Buffer body(payload);
      encoder.EncodeData(body, true);
    }
    (void)server.Dispatch(client_io.out);
    (void)client.Dispatch(server_io.out);
    if (!sink.done) state.SkipWithError("response incomplete");
    allocations += scope.count();
  }
  state.counters["allocs_per_rt"] =
      benchmark::Counter(static_cast<double>(allocations), benchmark::Counter::kAvgIterations);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() *
                          static_cast<int64_t>(request_bytes + state.range(1)));
}
BENCHMARK(BM_RoundTrip)->Args({0, 256})->Args({0, 0})->Args({16 << 10, 256})->Args({0, 64 << 10});

}  // namespace
}  // namespace meshlet::http::h1
