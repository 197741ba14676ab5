#include "control-plane/telemetry/trace_ring.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::telemetry {
namespace {

SpanRecord Span(int i, size_t attribute_bytes = 10) {
  SpanRecord s;
  s.trace_id = absl::StrCat("4bf92f3577b34da6a3ce929d0e0e", 1000 + i % 9000);
  s.span_id = absl::StrCat("00f067aa0ba9", 1000 + i % 9000);
  s.parent_span_id = i % 2 == 0 ? "" : "00f067aa0ba90001";
  s.trace_state = i % 2 == 0 ? "" : absl::StrCat("congo=", i);
  s.flags = i % 2 == 0 ? 0x301 : 0x101;
  s.name = absl::StrCat("GET /items/", i);
  s.service = i % 3 == 0 ? "frontend" : "backend";
  s.kind = i % 2 == 0 ? SpanKind::kServer : SpanKind::kClient;
  s.start_unix_nanos = 1'700'000'000'000'000'000 + i;
  s.end_unix_nanos = s.start_unix_nanos + 1000 * i;
  s.error = i % 5 == 0;
  s.status_message = s.error ? "HTTP 503" : "";
  s.attributes = {{"http.response.status_code", s.error ? "503" : "200"},
                  {"meshlet.padding", std::string(attribute_bytes, 'x')}};
  return s;
}

void ExpectSame(const SpanRecord& a, const SpanRecord& b) {
  EXPECT_EQ(a.trace_id, b.trace_id);
  EXPECT_EQ(a.span_id, b.span_id);
  EXPECT_EQ(a.parent_span_id, b.parent_span_id);
  EXPECT_EQ(a.trace_state, b.trace_state);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.service, b.service);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.start_unix_nanos, b.start_unix_nanos);
  EXPECT_EQ(a.end_unix_nanos, b.end_unix_nanos);
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(a.status_message, b.status_message);
  EXPECT_EQ(a.attributes, b.attributes);
}

class TraceRingTest : public testing::Test {
 protected:
  void SetUp() override {
    // A directory of its own per test: TEST_TMPDIR is shared by every test of the binary.
    char pattern[] = "/tmp/trace_ring_test.XXXXXX";
    const char* tmp = std::getenv("TEST_TMPDIR");
    const std::string base = tmp != nullptr ? std::string(tmp) : std::string(mkdtemp(pattern));
    dir_ = absl::StrCat(base, "/", testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  std::string dir_;
};

TEST_F(TraceRingTest, SpansComeBackAfterAReopen) {
  std::vector<SpanRecord> replay;
  {
    auto ring = TraceRing::Open(dir_, 1 << 20, &replay);
    ASSERT_TRUE(ring.ok()) << ring.status();
    EXPECT_TRUE(replay.empty());
    ASSERT_TRUE((*ring)->Append({Span(1), Span(2)}).ok());
    ASSERT_TRUE((*ring)->Append({Span(3)}).ok());
  }
  auto ring = TraceRing::Open(dir_, 1 << 20, &replay);
  ASSERT_TRUE(ring.ok()) << ring.status();
  ASSERT_EQ(replay.size(), 3u);
  for (int i = 0; i < 3; ++i) ExpectSame(replay[i], Span(i + 1));
  // A second reopen still has them (and what was added in between, after them).
  ASSERT_TRUE((*ring)->Append({Span(4)}).ok());
  ring->reset();
  replay.clear();
  ASSERT_TRUE(TraceRing::Open(dir_, 1 << 20, &replay).ok());
  ASSERT_EQ(replay.size(), 4u);
  ExpectSame(replay[3], Span(4));
}

TEST_F(TraceRingTest, TheOldestSegmentsMakeRoomAndTheSizeStaysBounded) {
  constexpr size_t kMax = 8 * (64 << 10);  // the smallest segments: 64 KiB each
  std::vector<SpanRecord> replay;
  {
    auto ring = TraceRing::Open(dir_, kMax, &replay);
    ASSERT_TRUE(ring.ok()) << ring.status();
    // ~1 KiB per span, 2000 spans: about four times the ring.
    for (int i = 0; i < 2000; ++i) ASSERT_TRUE((*ring)->Append({Span(i, 1000)}).ok());
  }
  size_t on_disk = 0;
  for (int i = 0; i < TraceRing::kSegments; ++i) {
    std::ifstream in(absl::StrCat(dir_, "/segment-", i, ".ring"), std::ios::binary | std::ios::ate);
    if (in) on_disk += static_cast<size_t>(in.tellg());
  }
  EXPECT_LE(on_disk, kMax + 8 * 2048);
  ASSERT_TRUE(TraceRing::Open(dir_, kMax, &replay).ok());
  ASSERT_GT(replay.size(), 300u);
  ASSERT_LT(replay.size(), 600u);
  // The newest spans, in order, ending with the last one written.
  for (size_t i = 0; i < replay.size(); ++i) {
    ExpectSame(replay[i], Span(static_cast<int>(2000 - replay.size() + i), 1000));
  }
}

TEST_F(TraceRingTest, ARecordCutShortEndsTheReplayOfItsSegment) {
  std::vector<SpanRecord> replay;
  {
    auto ring = TraceRing::Open(dir_, 1 << 20, &replay);
    ASSERT_TRUE(ring.ok()) << ring.status();
    ASSERT_TRUE((*ring)->Append({Span(1)}).ok());
    ASSERT_TRUE((*ring)->Append({Span(2)}).ok());
  }
  // Segment 0 holds both records; cut the last one in half, and add a segment of garbage.
  const std::string segment = dir_ + "/segment-0.ring";
  std::ifstream in(segment, std::ios::binary | std::ios::ate);
  const auto size = static_cast<off_t>(in.tellg());
  ASSERT_EQ(::truncate(segment.c_str(), size - 20), 0);
  std::ofstream(dir_ + "/segment-5.ring") << "not a ring segment";
  ASSERT_TRUE(TraceRing::Open(dir_, 1 << 20, &replay).ok());
  ASSERT_EQ(replay.size(), 1u);
  ExpectSame(replay[0], Span(1));
}

// Segments written before spans had a tracestate and flags ("MLTR") are still read back, older
// than what follows them in generation order.
TEST_F(TraceRingTest, SegmentsOfTheFormerFormatAreReadBack) {
  ASSERT_EQ(::mkdir(dir_.c_str(), 0700), 0);
  std::string segment = "MLTR";
  const uint64_t generation = 7;
  segment.append(reinterpret_cast<const char*>(&generation), sizeof(generation));
  std::string payload;
  EncodeSpans({Span(1), Span(2)}, &payload, /*format=*/1);
  const uint32_t length = static_cast<uint32_t>(payload.size());
  segment.append(reinterpret_cast<const char*>(&length), sizeof(length));
  segment += payload;
  std::ofstream(dir_ + "/segment-3.ring", std::ios::binary) << segment;
  std::vector<SpanRecord> replay;
  {
    auto ring = TraceRing::Open(dir_, 1 << 20, &replay);
    ASSERT_TRUE(ring.ok()) << ring.status();
    ASSERT_EQ(replay.size(), 2u);
    ASSERT_TRUE((*ring)->Append({Span(3)}).ok());
  }
  replay.clear();
  ASSERT_TRUE(TraceRing::Open(dir_, 1 << 20, &replay).ok());
  ASSERT_EQ(replay.size(), 3u);
  for (int i = 0; i < 2; ++i) {
    SpanRecord expected = Span(i + 1);
    expected.trace_state.clear();  // not in that format
    expected.flags = 0;
    ExpectSame(replay[i], expected);
  }
  ExpectSame(replay[2], Span(3));
}

TEST(TraceRingEncodingTest, MalformedPayloadsAreRefused) {
  std::string payload;
  EncodeSpans({Span(7)}, &payload);
  std::vector<SpanRecord> out;
  EXPECT_TRUE(DecodeSpans(payload, &out));
  for (size_t cut = 0; cut < payload.size(); cut += 7) {
    std::vector<SpanRecord> partial;
    EXPECT_FALSE(DecodeSpans(absl::string_view(payload).substr(0, cut), &partial)) << cut;
  }
  EXPECT_FALSE(DecodeSpans(payload + "x", &out));  // trailing bytes
}

}  // namespace
}  // namespace meshlet::controlplane::telemetry
