#pragma once

// Test helpers for the HTTP/1 parser: a visitor that records every callback as text, and a
// driver that feeds a message in pieces. Two runs over the same bytes must record the same text
// however the bytes were split; the tests and the fuzz target rely on that.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/http/h1/parser.h"

namespace meshlet::http::h1::testing {

// Records callbacks as "|"-separated events. Adjacent body pieces merge into one event, so the
// record does not depend on how the body was split. Also checks the parser's contract (callback
// order, field syntax, non-empty body pieces) and records violations apart from the log.
class RecordingVisitor : public ParserVisitor {
 public:
  Action OnMessageBegin() override;
  Action OnRequestLine(absl::string_view method, absl::string_view target, int major,
                       int minor) override;
  Action OnStatusLine(int major, int minor, int code, absl::string_view reason) override;
  Action OnHeader(absl::string_view name, absl::string_view value) override;
  Action OnHeadersComplete(const MessageInfo& info) override;
  Action OnChunkHeader(uint64_t size) override;
  Action OnBody(absl::string_view data) override;
  Action OnTrailer(absl::string_view name, absl::string_view value) override;
  Action OnMessageComplete() override;

  const std::vector<std::string>& events() const { return events_; }
  std::string Log() const;
  // Records a broken contract found outside the callbacks.
  void Violation(absl::string_view what) { Expect(false, what); }
  // Contract violations, kept apart from the log so input bytes cannot forge or hide them.
  const std::string& violations() const { return violations_; }
  uint64_t body_bytes() const { return body_bytes_; }
  int messages_completed() const { return messages_completed_; }

  // Set by the driver for response parsing: sent to the parser at each message begin.
  Parser* parser = nullptr;
  const char* request_method = nullptr;

 private:
  enum class Phase { kIdle, kBegun, kHeaders, kBody, kTrailers };
  void Expect(bool ok, absl::string_view what);
  void CheckField(absl::string_view name, absl::string_view value);

  std::vector<std::string> events_;
  std::string violations_;
  Phase phase_ = Phase::kIdle;
  bool last_was_body_ = false;
  uint64_t body_bytes_ = 0;
  int messages_completed_ = 0;
};

struct ParseOptions {
  Parser::Type type = Parser::Type::kRequest;
  ParserLimits limits;
  const char* request_method = nullptr;  // responses: method of the request being answered
  bool finish = false;                   // call Finish() after the last piece
};

struct ParseOutcome {
  std::string log;      // events + " => " + final status (and error name)
  size_t consumed = 0;  // total bytes consumed
  uint64_t body_bytes = 0;
  std::string violations;  // empty when the parser kept its contract
  Parser::Status status = Parser::Status::kOk;
  ParserError error = ParserError::kOk;
};

// Feeds `pieces` in order, stopping early when the parser leaves Status::kOk.
ParseOutcome ParsePieces(const std::vector<absl::string_view>& pieces, const ParseOptions& options);
ParseOutcome ParseWhole(absl::string_view input, const ParseOptions& options);
// Splits `input` at the given ascending offsets.
ParseOutcome ParseSplit(absl::string_view input, const std::vector<size_t>& cuts,
                        const ParseOptions& options);

absl::string_view StatusName(Parser::Status status);

// Valid messages of every framing (keep-alive, pipelined, chunked with trailers, upgrade,
// CONNECT, 100-continue, close-delimited, bodiless statuses): the seeds of the HTTP/1 fuzz
// targets, so mutations start from deep parser and codec states.
std::vector<std::string> SampleRequests();
std::vector<std::string> SampleResponses();
// Fuzz seeds: each sample request prefixed with each of `request_modes`, each sample response
// with each of `response_modes`, then a second byte that counts up (the targets' split/script
// seed).
std::vector<std::string> SampleSeeds(const std::vector<uint8_t>& request_modes,
                                     const std::vector<uint8_t>& response_modes);

}  // namespace meshlet::http::h1::testing
