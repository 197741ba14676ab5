#include "sidecar/tracing/trace_context.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/http/header_map.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::tracing {
namespace {

constexpr absl::string_view kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceparentTest, ParsesVersion00) {
  std::optional<ParentContext> context = ParseTraceparent(kValid);
  ASSERT_TRUE(context.has_value());
  EXPECT_EQ(context->trace_id.high, 0x4bf92f3577b34da6ULL);
  EXPECT_EQ(context->trace_id.low, 0xa3ce929d0e0e4736ULL);
  EXPECT_EQ(context->span_id, 0x00f067aa0ba902b7ULL);
  EXPECT_EQ(context->sampling, SamplingHint::kSampled);
  EXPECT_EQ(context->format, Propagation::kW3c);
}

TEST(TraceparentTest, SampledIsBitZeroOfFlags) {
  std::string value(kValid);
  value.replace(53, 2, "00");
  EXPECT_EQ(ParseTraceparent(value)->sampling, SamplingHint::kNotSampled);
  value.replace(53, 2, "03");  // unknown flag bits are ignored
  EXPECT_EQ(ParseTraceparent(value)->sampling, SamplingHint::kSampled);
  value.replace(53, 2, "02");
  EXPECT_EQ(ParseTraceparent(value)->sampling, SamplingHint::kNotSampled);
}

TEST(TraceparentTest, RejectsInvalidVersion00) {
  const std::string valid(kValid);
  std::vector<std::string> bad = {
      "",
      valid.substr(0, 54),                                        // short
      absl::StrCat(valid, "-00"),                                 // 00 has no extras
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  // not hex
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // delimiter
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
      "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version not hex
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",  // flags not hex
  };
  for (const std::string& value : bad) {
    EXPECT_FALSE(ParseTraceparent(value).has_value()) << value;
  }
}

TEST(TraceparentTest, FutureVersionParsesFirstFourFields) {
  std::optional<ParentContext> context = ParseTraceparent(
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds");
  ASSERT_TRUE(context.has_value());
  EXPECT_EQ(context->span_id, 0x00f067aa0ba902b7ULL);
  EXPECT_EQ(context->sampling, SamplingHint::kSampled);
  EXPECT_TRUE(ParseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  // Extras must follow a '-'.
  EXPECT_FALSE(ParseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));
  // The known fields stay strict.
  EXPECT_FALSE(ParseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-x"));
}

TEST(TraceparentTest, FormatRoundTrips) {
  char out[kTraceparentLength];
  FormatTraceparent(TraceId{0x4bf92f3577b34da6ULL, 0xa3ce929d0e0e4736ULL}, 0x00f067aa0ba902b7ULL,
                    true, out);
  EXPECT_EQ(absl::string_view(out, sizeof(out)), kValid);
  FormatTraceparent(TraceId{0, 1}, 2, false, out);
  EXPECT_EQ(absl::string_view(out, sizeof(out)),
            "00-00000000000000000000000000000001-0000000000000002-00");
}

TEST(TraceparentTest, FormatsEveryHexDigitInOrder) {
  char out[16];
  for (const auto& [value, text] :
       {std::pair<uint64_t, absl::string_view>{0x0123456789abcdefULL, "0123456789abcdef"},
        {0xfedcba9876543210ULL, "fedcba9876543210"},
        {0, "0000000000000000"},
        {~0ULL, "ffffffffffffffff"},
        {0x00000000000000a9ULL, "00000000000000a9"}}) {
    FormatHex64(value, out);
    EXPECT_EQ(absl::string_view(out, 16), text);
  }
}

TEST(TracestateTest, KeepsValidLists) {
  std::string rewritten;
  EXPECT_EQ(CheckTracestate("congo=t61rcWkgMzE", &rewritten), TracestateVerdict::kKeep);
  EXPECT_EQ(CheckTracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", &rewritten),
            TracestateVerdict::kKeep);
  EXPECT_EQ(CheckTracestate("tenant1@vendor=x,a-b_c*d/e=value with spaces", &rewritten),
            TracestateVerdict::kKeep);
}

TEST(TracestateTest, NormalisesEmptyMembersAndWhitespace) {
  std::string rewritten;
  EXPECT_EQ(CheckTracestate("a=1, ,b=2 ,", &rewritten), TracestateVerdict::kRewrite);
  EXPECT_EQ(rewritten, "a=1,b=2");
}

TEST(TracestateTest, DropsInvalidHeaders) {
  std::string rewritten;
  for (absl::string_view bad : {"", "a", "A=1", "1a=1", "a=", "a=1,a=2", "a=b=c", "a=1,b", "@v=1",
                                "t@=1", "t@Vendor=1", "a=x\ty", "a=\x7f"}) {
    EXPECT_EQ(CheckTracestate(bad, &rewritten), TracestateVerdict::kDrop) << bad;
  }
  EXPECT_EQ(CheckTracestate(std::string(257, 'a') + "=1", &rewritten), TracestateVerdict::kDrop);
  EXPECT_EQ(CheckTracestate("a=" + std::string(257, 'v'), &rewritten), TracestateVerdict::kDrop);
}

TEST(TracestateTest, AtMost32Members) {
  std::vector<std::string> members;
  for (int i = 0; i < 32; ++i) members.push_back(absl::StrCat("k", i, "=v"));
  std::string rewritten;
  EXPECT_EQ(CheckTracestate(absl::StrJoin(members, ","), &rewritten), TracestateVerdict::kKeep);
  members.push_back("k32=v");
  EXPECT_EQ(CheckTracestate(absl::StrJoin(members, ","), &rewritten), TracestateVerdict::kDrop);
}

TEST(TracestateTest, ShortensTo512LongMembersFirst) {
  // 3 members of 200 characters and one long one of 150 in the middle: 751 characters.
  const std::string a = "a=" + std::string(98, 'x');
  const std::string long_member = "l=" + std::string(148, 'y');
  const std::string b = "b=" + std::string(98, 'x');
  const std::string c = "c=" + std::string(98, 'x');
  std::vector<std::string> members = {a, long_member, b, c};
  for (int i = 0; i < 4; ++i) members.push_back(absl::StrCat("d", i, "=", std::string(60, 'z')));
  const std::string value = absl::StrJoin(members, ",");
  ASSERT_GT(value.size(), kMaxTracestateLength);
  std::string rewritten;
  ASSERT_EQ(CheckTracestate(value, &rewritten), TracestateVerdict::kRewrite);
  EXPECT_LE(rewritten.size(), kMaxTracestateLength);
  EXPECT_EQ(rewritten.find("l="), std::string::npos);  // the long member went first
  EXPECT_EQ(rewritten.rfind(a, 0), 0u);                // the newest stays in front
  // 100+100+100+4*63 + 6 commas = 558 without the long one: the last member went too.
  EXPECT_EQ(rewritten.find("d3="), std::string::npos);
  EXPECT_NE(rewritten.find("d2="), std::string::npos);
}

TEST(B3Test, SingleHeaderForms) {
  std::optional<ParentContext> c =
      ParseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->trace_id.high, 0x80f198ee56343ba8ULL);
  EXPECT_EQ(c->span_id, 0xe457b5a2e4d86bd1ULL);
  EXPECT_EQ(c->sampling, SamplingHint::kSampled);
  EXPECT_FALSE(c->trace_id_64bit);

  c = ParseB3Single("64fe8b2a57d3eff7-e457b5a2e4d86bd1");
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->trace_id_64bit);
  EXPECT_EQ(c->trace_id.high, 0u);
  EXPECT_EQ(c->trace_id.low, 0x64fe8b2a57d3eff7ULL);
  EXPECT_EQ(c->sampling, SamplingHint::kNone);

  c = ParseB3Single("64fe8b2a57d3eff7-e457b5a2e4d86bd1-d");
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->debug);

  c = ParseB3Single("0");
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->trace_id.valid());
  EXPECT_EQ(c->sampling, SamplingHint::kNotSampled);
  EXPECT_EQ(ParseB3Single("1")->sampling, SamplingHint::kSampled);
  EXPECT_TRUE(ParseB3Single("d")->debug);

  for (absl::string_view bad :
       {"x", "64fe8b2a57d3eff7", "64fe8b2a57d3eff7-e457b5a2e4d86bd",
        "64fe8b2a57d3eff7-e457b5a2e4d86bd1-2", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3",
        "0000000000000000-e457b5a2e4d86bd1",
        "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-x"}) {
    EXPECT_FALSE(ParseB3Single(bad).has_value()) << bad;
  }
}

TEST(B3Test, MultiHeader) {
  std::optional<ParentContext> c =
      ParseB3Multi("463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "0020000000000001", "1",
                   std::nullopt);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->trace_id.high, 0x463ac35c9f6413adULL);
  EXPECT_EQ(c->span_id, 0xa2fb4a1d1a96d312ULL);
  EXPECT_EQ(c->sampling, SamplingHint::kSampled);
  EXPECT_EQ(c->format, Propagation::kB3Multi);

  c = ParseB3Multi("48485a3953bb6124", "a2fb4a1d1a96d312", std::nullopt, "0", std::nullopt);
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->trace_id_64bit);
  EXPECT_EQ(c->sampling, SamplingHint::kNotSampled);

  c = ParseB3Multi("48485a3953bb6124", "a2fb4a1d1a96d312", std::nullopt, std::nullopt, "1");
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->debug);
  EXPECT_EQ(c->sampling, SamplingHint::kSampled);

  // Sampling only.
  c = ParseB3Multi(std::nullopt, std::nullopt, std::nullopt, "0", std::nullopt);
  ASSERT_TRUE(c.has_value());
  EXPECT_FALSE(c->trace_id.valid());
  EXPECT_EQ(c->sampling, SamplingHint::kNotSampled);

  EXPECT_FALSE(ParseB3Multi(std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt));
  EXPECT_FALSE(ParseB3Multi("48485a3953bb6124", std::nullopt, std::nullopt, "1", std::nullopt));
  EXPECT_FALSE(
      ParseB3Multi("48485a3953bb612", "a2fb4a1d1a96d312", std::nullopt, "1", std::nullopt));
  EXPECT_FALSE(
      ParseB3Multi("48485a3953bb6124", "a2fb4a1d1a96d312", std::nullopt, "yes", std::nullopt));
  EXPECT_FALSE(ParseB3Multi("48485a3953bb6124", "a2fb4a1d1a96d312", "12", "1", std::nullopt));
}

TEST(ExtractParentTest, W3cWinsOverB3) {
  http::HeaderMap headers{{"traceparent", kValid},
                          {"x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"},
                          {"x-b3-spanid", "a2fb4a1d1a96d312"},
                          {"x-b3-sampled", "0"}};
  ParentContext parent = ExtractParent(headers);
  EXPECT_EQ(parent.format, Propagation::kW3c);
  EXPECT_EQ(parent.trace_id.high, 0x4bf92f3577b34da6ULL);
  EXPECT_EQ(parent.sampling, SamplingHint::kSampled);
  EXPECT_TRUE(parent.b3_present);
}

TEST(ExtractParentTest, InvalidTraceparentFallsBackToB3) {
  http::HeaderMap headers{{"traceparent", "00-zz"},
                          {"b3", "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"}};
  ParentContext parent = ExtractParent(headers);
  EXPECT_EQ(parent.format, Propagation::kB3Single);
  EXPECT_EQ(parent.trace_id.low, 0x48485a3953bb6124ULL);
}

TEST(ExtractParentTest, TwoTraceparentsStartOver) {
  http::HeaderMap headers{{"traceparent", kValid}, {"traceparent", kValid}};
  EXPECT_FALSE(ExtractParent(headers).trace_id.valid());
}

TEST(ExtractParentTest, NothingIsNothing) {
  http::HeaderMap headers{{":path", "/"}};
  ParentContext parent = ExtractParent(headers);
  EXPECT_FALSE(parent.trace_id.valid());
  EXPECT_EQ(parent.sampling, SamplingHint::kNone);
  EXPECT_FALSE(parent.b3_present);
}

}  // namespace
}  // namespace meshlet::sidecar::tracing

namespace meshlet::sidecar::tracing {
namespace {

TEST(ScanTraceHeadersTest, FindsEveryTraceHeaderAmongOthers) {
  const std::string long_force(70, 'f');
  http::HeaderMap headers{{":method", "GET"},    {"traceparent", "tp"},  {"user-agent", "x"},
                          {"tracestate", "ts1"}, {"tracestate", "ts2"},  {"b3", "single"},
                          {"x-b3-traceid", "t"}, {"x-b3-spanid", "s"},   {"x-b3-parentspanid", "p"},
                          {"x-b3-sampled", "1"}, {"x-b3-flags", "f"},    {"x-forced", "yes"},
                          {long_force, "long"},  {"x-request-id", "id"}, {"grpc-timeout", "1S"},
                          {"x-b3-flagz", "no"},  {"", "empty name"}};
  TraceHeaders found = ScanTraceHeaders(headers, "x-forced");
  EXPECT_EQ(found.get(TraceHeaders::kTraceparent), "tp");
  EXPECT_EQ(found.traceparent_count, 1);
  EXPECT_EQ(found.get(TraceHeaders::kTracestate), "ts1");
  EXPECT_EQ(found.tracestate_count, 2);
  EXPECT_EQ(found.get(TraceHeaders::kB3), "single");
  EXPECT_EQ(found.get(TraceHeaders::kB3TraceId), "t");
  EXPECT_EQ(found.get(TraceHeaders::kB3SpanId), "s");
  EXPECT_EQ(found.get(TraceHeaders::kB3ParentSpanId), "p");
  EXPECT_EQ(found.get(TraceHeaders::kB3Sampled), "1");
  EXPECT_EQ(found.get(TraceHeaders::kB3Flags), "f");
  EXPECT_EQ(found.get(TraceHeaders::kForce), "yes");
  EXPECT_EQ(found.get(TraceHeaders::kRequestId), "id");
  // A force-sample header name of any length.
  EXPECT_EQ(ScanTraceHeaders(headers, long_force).get(TraceHeaders::kForce), "long");
  EXPECT_FALSE(ScanTraceHeaders(headers, "").has(TraceHeaders::kForce));
  // Nothing trace-related: no context, and no field is reported.
  http::HeaderMap plain{{":method", "GET"}, {"x-request-id", "id"}};
  const TraceHeaders nothing = TraceHeaderScan("x-forced").Scan(plain);
  EXPECT_FALSE(nothing.any_context());
  EXPECT_FALSE(nothing.any_b3_multi());
  for (int field = 0; field < TraceHeaders::kFieldCount; ++field) {
    const auto f = static_cast<TraceHeaders::Field>(field);
    EXPECT_EQ(nothing.has(f), f == TraceHeaders::kRequestId) << field;
  }
  EXPECT_EQ(nothing.traceparent_count, 0);
  // x-request-id as the force-sample header is both.
  const TraceHeaders both = TraceHeaderScan("X-Request-Id").Scan(plain);
  EXPECT_EQ(both.get(TraceHeaders::kForce), "id");
  EXPECT_EQ(both.get(TraceHeaders::kRequestId), "id");
  const ParentContext none = ExtractParent(plain);
  EXPECT_FALSE(none.trace_id.valid());
  EXPECT_EQ(none.format, Propagation::kNone);
  EXPECT_FALSE(none.b3_present);
}

}  // namespace
}  // namespace meshlet::sidecar::tracing
