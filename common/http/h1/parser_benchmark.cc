// Parser throughput on typical traffic: a browser/API-style request with ~10 headers and a
// typical JSON response, parsed from one buffer per message on a reused parser (keep-alive).
// Also the cost of copying the headers into a HeaderMap, as the codec does.
//
//   bazel run --config=opt //common/http/h1:parser_benchmark

#include <string>

#include "benchmark/benchmark.h"
#include "common/http/h1/parser.h"
#include "common/http/header_map.h"

namespace meshlet::http::h1 {
namespace {

const std::string& TypicalRequest() {
  static const std::string* request = new std::string(
      "GET /api/v1/users/12345/orders?limit=20&offset=40 HTTP/1.1\r\n"
      "Host: orders.default.svc.cluster.local:8080\r\n"
      "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n"
      "Accept: application/json, text/plain, */*\r\n"
      "Accept-Language: en-US,en;q=0.9\r\n"
      "Accept-Encoding: gzip, deflate, br\r\n"
      "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl\r\n"
      "Cookie: session=4f9a1c2e8b7d6a5f; theme=dark\r\n"
      "X-Request-Id: 7d3f2a1b-9c8e-4f6d-a5b4-c3d2e1f0a9b8\r\n"
      "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
      "Connection: keep-alive\r\n"
      "\r\n");
  return *request;
}

const std::string& TypicalResponse() {
  static const std::string* response = new std::string(
      "HTTP/1.1 200 OK\r\n"
      "Date: Tue, 15 Nov 2022 08:12:31 GMT\r\n"
      "Content-Type: application/json; charset=utf-8\r\n"
      "Content-Length: 256\r\n"
      "Cache-Control: no-cache, no-store, must-revalidate\r\n"
      "X-Request-Id: 7d3f2a1b-9c8e-4f6d-a5b4-c3d2e1f0a9b8\r\n"
      "Server: orders/1.4.2\r\n"
      "Vary: Accept-Encoding\r\n"
      "\r\n" +
      std::string(256, 'j'));
  return *response;
}

class NullVisitor : public ParserVisitor {
 public:
  Action OnHeader(absl::string_view name, absl::string_view) override {
    benchmark::DoNotOptimize(name.data());
    return Action::kContinue;
  }
  Action OnHeadersComplete(const MessageInfo&) override { return Action::kContinue; }
  Action OnBody(absl::string_view data) override {
    benchmark::DoNotOptimize(data.data());
    return Action::kContinue;
  }
  Action OnMessageComplete() override { return Action::kContinue; }
};

class HeaderMapVisitor : public NullVisitor {
 public:
  Action OnMessageBegin() override {
    headers.Clear();
    return Action::kContinue;
  }
  Action OnHeader(absl::string_view name, absl::string_view value) override {
    headers.Add(name, value);
    return Action::kContinue;
  }
  HeaderMap headers;
};

void Run(benchmark::State& state, Parser::Type type, const std::string& message,
         ParserVisitor* visitor) {
  Parser parser(type, visitor);
  for (auto _ : state) {
    if (type == Parser::Type::kResponse) parser.SetRequestMethod("GET");
    size_t n = parser.Execute(message);
    if (n != message.size() || parser.status() != Parser::Status::kOk) {
      state.SkipWithError("parse failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * message.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_ParseRequest(benchmark::State& state) {
  NullVisitor v;
  Run(state, Parser::Type::kRequest, TypicalRequest(), &v);
}
BENCHMARK(BM_ParseRequest);

void BM_ParseResponse(benchmark::State& state) {
  NullVisitor v;
  Run(state, Parser::Type::kResponse, TypicalResponse(), &v);
}
BENCHMARK(BM_ParseResponse);

void BM_ParseRequestIntoHeaderMap(benchmark::State& state) {
  HeaderMapVisitor v;
  Run(state, Parser::Type::kRequest, TypicalRequest(), &v);
}
BENCHMARK(BM_ParseRequestIntoHeaderMap);

// The same request arriving in 64-byte reads: lines straddle reads and go through the spill.
void BM_ParseRequestIn64ByteReads(benchmark::State& state) {
  NullVisitor v;
  Parser parser(Parser::Type::kRequest, &v);
  const std::string& message = TypicalRequest();
  for (auto _ : state) {
    for (size_t off = 0; off < message.size(); off += 64) {
      parser.Execute(absl::string_view(message).substr(off, 64));
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * message.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseRequestIn64ByteReads);

}  // namespace
}  // namespace meshlet::http::h1
