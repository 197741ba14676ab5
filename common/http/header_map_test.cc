#include "common/http/header_map.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::http {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Names(const HeaderMap& map) {
  std::vector<std::string> names;
  for (HeaderView h : map) names.emplace_back(h.name);
  return names;
}

TEST(HeaderMapTest, StoresNamesLowercaseAndLooksUpIgnoringCase) {
  HeaderMap map;
  map.Add("Content-Type", "text/plain");
  EXPECT_EQ(map.at(0).name, "content-type");
  EXPECT_EQ(map.Get("CONTENT-TYPE"), "text/plain");
  EXPECT_EQ(map.Get("content-type"), "text/plain");
  EXPECT_TRUE(map.Has("Content-type"));
  EXPECT_EQ(map.Get("content-length"), std::nullopt);
}

// Names are lowercased and compared a word at a time (short ones byte by byte, the last word
// overlapping): every length up to 40, an upper-case letter at every position, the letters'
// neighbours ('@', '[', '`', '{') and bytes with the top bit set (0xc1 is 'A' | 0x80) unchanged.
TEST(HeaderMapTest, LowercasesAndMatchesNamesOfEveryLength) {
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_@[`{\xc1\xfa";
  for (size_t length = 1; length <= 40; ++length) {
    std::string lower(length, 'x');
    for (size_t i = 0; i < length; ++i) lower[i] = alphabet[(i * 7 + length) % alphabet.size()];
    std::string upper = lower;
    for (char& c : upper) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    for (size_t at = 0; at < length; ++at) {
      SCOPED_TRACE(::testing::Message() << "length " << length << ", upper case at " << at);
      std::string mixed = lower;
      mixed[at] = upper[at];
      HeaderMap map;
      map.Add(mixed, "v");
      EXPECT_EQ(map.at(0).name, lower);
      EXPECT_EQ(map.Get(upper), "v");
      EXPECT_EQ(map.Get(lower), "v");
      // One byte off anywhere (past the letters, so case cannot hide it) is another name.
      std::string other = lower;
      other[at] = other[at] == '0' ? '1' : '0';
      EXPECT_EQ(map.Get(other), std::nullopt);
    }
  }
}

TEST(HeaderMapTest, KeepsRepeatedValuesInOrder) {
  HeaderMap map;
  map.Add("Set-Cookie", "a=1");
  map.Add("X-Other", "x");
  map.Add("set-cookie", "b=2");
  EXPECT_THAT(map.GetAll("set-cookie"), ElementsAre("a=1", "b=2"));
  EXPECT_EQ(map.Get("set-cookie"), "a=1");
  EXPECT_EQ(map.Count("SET-COOKIE"), 2u);
  EXPECT_EQ(map.GetJoined("set-cookie"), "a=1, b=2");
  EXPECT_THAT(Names(map), ElementsAre("set-cookie", "x-other", "set-cookie"));
}

TEST(HeaderMapTest, PseudoHeadersStayFirst) {
  HeaderMap map;
  map.Add("user-agent", "curl");
  map.Add(":method", "GET");
  map.Add("accept", "*/*");
  map.Add(":path", "/");
  map.Add(":authority", "example.com");
  EXPECT_THAT(Names(map), ElementsAre(":method", ":path", ":authority", "user-agent", "accept"));
  map.Set(":path", "/other");
  EXPECT_THAT(Names(map), ElementsAre(":method", ":path", ":authority", "user-agent", "accept"));
  EXPECT_EQ(map.Get(":path"), "/other");
  EXPECT_EQ(map.Remove(":method"), 1u);
  map.Add(":scheme", "https");
  EXPECT_THAT(Names(map), ElementsAre(":path", ":authority", ":scheme", "user-agent", "accept"));
}

TEST(HeaderMapTest, SetReplacesAllValuesAtFirstPosition) {
  HeaderMap map{{"a", "1"}, {"b", "2"}, {"A", "3"}, {"c", "4"}};
  map.Set("a", "new");
  EXPECT_THAT(Names(map), ElementsAre("a", "b", "c"));
  EXPECT_EQ(map.Get("a"), "new");
  map.Set("d", "5");
  EXPECT_THAT(Names(map), ElementsAre("a", "b", "c", "d"));
}

TEST(HeaderMapTest, RemoveReturnsCountAndUpdatesByteSize) {
  HeaderMap map{{"a", "1"}, {"bb", "22"}, {"a", "333"}};
  EXPECT_EQ(map.ByteSize(), 2u + 4u + 4u);
  EXPECT_EQ(map.Http2ListSize(), 10u + 3 * HeaderMap::kHttp2EntryOverhead);
  EXPECT_EQ(map.Remove("A"), 2u);
  EXPECT_EQ(map.Remove("missing"), 0u);
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(map.ByteSize(), 4u);
  map.Set("bb", "x");
  EXPECT_EQ(map.ByteSize(), 3u);
}

TEST(HeaderMapTest, ClearKeepsWorkingAndAccounting) {
  HeaderMap map;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 40; ++i) map.Add("name-" + std::to_string(i), "value");
    EXPECT_EQ(map.size(), 40u);
    map.Clear();
    EXPECT_TRUE(map.empty());
    EXPECT_EQ(map.ByteSize(), 0u);
  }
}

TEST(HeaderMapTest, CompactionKeepsContents) {
  HeaderMap map;
  map.Add("keep", "me");
  for (int i = 0; i < 1000; ++i) {
    map.Set("churn", std::string(100, static_cast<char>('a' + i % 26)));
  }
  EXPECT_EQ(map.Get("keep"), "me");
  EXPECT_EQ(map.Get("churn"), std::string(100, static_cast<char>('a' + 999 % 26)));
  EXPECT_EQ(map.ByteSize(), 4u + 2u + 5u + 100u);
}

TEST(HeaderMapTest, ArgumentsMayViewTheMapItself) {
  HeaderMap map;
  map.Add("source", std::string(64, 'v'));
  for (int i = 0; i < 20; ++i) {
    absl::string_view v = *map.Get("source");
    map.Add("copy", v);  // may reallocate the arena v points into
  }
  for (absl::string_view v : map.GetAll("copy")) EXPECT_EQ(v, std::string(64, 'v'));
  absl::string_view name = map.at(0).name;
  map.Set(name, "changed");
  EXPECT_EQ(map.Get("source"), "changed");
}

TEST(HeaderMapTest, RemovesHopByHopHeaders) {
  HeaderMap map{{":method", "GET"},        {"Connection", "close, X-Custom , te"},
                {"X-Custom", "1"},         {"Keep-Alive", "timeout=5"},
                {"Proxy-Connection", "x"}, {"Transfer-Encoding", "chunked"},
                {"Upgrade", "websocket"},  {"TE", "gzip, trailers"},
                {"Accept", "*/*"}};
  map.RemoveHopByHopHeaders();
  EXPECT_THAT(Names(map), ElementsAre(":method", "te", "accept"));
  EXPECT_EQ(map.Get("te"), "trailers");
  EXPECT_EQ(map.ByteSize(), 29u);  // :method GET, te trailers, accept */*

  // TE keeps its first place, once; a name Connection lists goes in any case.
  HeaderMap repeated{{"a", "1"}, {"te", "trailers"}, {"connection", "B"},
                     {"b", "2"}, {"te", "deflate"},  {"c", "3"}};
  repeated.RemoveHopByHopHeaders();
  EXPECT_THAT(Names(repeated), ElementsAre("a", "te", "c"));
  EXPECT_EQ(repeated.Get("te"), "trailers");
  EXPECT_EQ(repeated.ByteSize(), 14u);

  HeaderMap no_trailers{{"te", "gzip"}, {"host", "a"}};
  no_trailers.RemoveHopByHopHeaders();
  EXPECT_THAT(Names(no_trailers), ElementsAre("host"));
}

TEST(HeaderMapTest, EqualityAndDebugString) {
  HeaderMap a{{"A", "1"}, {"b", "2"}};
  HeaderMap b{{"a", "1"}, {"B", "2"}};
  EXPECT_EQ(a, b);
  b.Add("c", "3");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.DebugString(), "a: 1\nb: 2\n");
  HeaderMap copy = b;
  EXPECT_EQ(copy, b);
  HeaderMap moved = std::move(copy);
  EXPECT_EQ(moved, b);
}

// Moves keep every entry and the byte accounting, whether the entries sit in the inline buffer or
// on the heap, and leave the source empty and reusable.
TEST(HeaderMapTest, MoveKeepsEntriesAndEmptiesTheSource) {
  for (size_t n : {size_t{0}, size_t{3}, HeaderMap::kInlineEntries + 5}) {
    SCOPED_TRACE(n);
    HeaderMap source;
    source.Add(":status", "200");
    for (size_t i = 0; i < n; ++i) source.Add("x-h" + std::to_string(i), "v");
    source.Remove("x-h0");
    const HeaderMap expected = source;
    const size_t bytes = source.ByteSize();

    HeaderMap moved(std::move(source));
    EXPECT_EQ(moved, expected);
    EXPECT_EQ(moved.ByteSize(), bytes);
    EXPECT_TRUE(source.empty());  // NOLINT(bugprone-use-after-move): documented state
    EXPECT_EQ(source.ByteSize(), 0u);
    source.Add("reused", "yes");
    EXPECT_EQ(source.DebugString(), "reused: yes\n");

    // Assignment over a map that already holds entries on the heap.
    HeaderMap target;
    for (size_t i = 0; i < HeaderMap::kInlineEntries + 2; ++i) target.Add("old", "x");
    target = std::move(moved);
    EXPECT_EQ(target, expected);
    EXPECT_EQ(target.ByteSize(), bytes);
    target.Add("after", "1");
    EXPECT_EQ(target.Get("after"), "1");
    EXPECT_FALSE(target.Has("old"));
  }
}

// Trusted fields (the proxy's own traceparent) are ordinary fields to every reader; only the
// trust flag, which the codecs read, sets them apart, and any ordinary Set() clears it.
TEST(HeaderMapTest, TrustedFields) {
  HeaderMap headers{
      {":method", "GET"}, {"traceparent", "caller"}, {"a", "1"}, {"traceparent", "dup"}};
  headers.SetTrusted("traceparent", "00-mine");
  headers.AddTrusted("x-b3-spanid", "0123");
  EXPECT_EQ(headers.DebugString(), ":method: GET\ntraceparent: 00-mine\na: 1\nx-b3-spanid: 0123\n");
  EXPECT_EQ(headers.ByteSize(),
            std::string(":methodGETtraceparent00-minea1x-b3-spanid0123").size());
  auto trust = [&] {
    std::string out;
    headers.ForEachRegularWithTrust([&](HeaderView h, bool trusted) {
      absl::StrAppend(&out, h.name, trusted ? "+" : "-", " ");
    });
    return out;
  };
  EXPECT_EQ(trust(), "traceparent+ a- x-b3-spanid+ ");
  headers.Set("traceparent", "from a filter");
  EXPECT_EQ(trust(), "traceparent- a- x-b3-spanid+ ");
  EXPECT_EQ(headers.Get("traceparent"), "from a filter");

  // Absent: SetTrusted appends. Copies and moves keep the flag.
  HeaderMap fresh;
  fresh.SetTrusted("traceparent", "00-x");
  HeaderMap copy = fresh;
  bool copied_trusted = false;
  copy.ForEachRegularWithTrust([&](HeaderView, bool trusted) { copied_trusted = trusted; });
  EXPECT_TRUE(copied_trusted);
  EXPECT_EQ(copy.Get("traceparent"), "00-x");

  // A value laid out right after its name (copied in one piece) reads back the same.
  const std::string field = "traceparent00-side-by-side";
  const absl::string_view whole(field);
  fresh.AddTrusted(whole.substr(0, 11), whole.substr(11));
  fresh.Add("after", "1");
  EXPECT_EQ(fresh.DebugString(), "traceparent: 00-x\ntraceparent: 00-side-by-side\nafter: 1\n");
  EXPECT_EQ(fresh.ByteSize(),
            std::string("traceparent00-xtraceparent00-side-by-sideafter1").size());
}

}  // namespace
}  // namespace meshlet::http
