#include "common/http/header_map.h"

#include <algorithm>
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

// The six pseudo-headers HTTP defines are looked up by a kept position: it must follow every
// change to the pseudo-headers, and any other pseudo name is still found by walking them.
TEST(HeaderMapTest, PseudoHeaderLookupsFollowEveryChange) {
  HeaderMap map;
  map.Add("user-agent", "curl");
  map.Add(":method", "GET");
  map.Add(":x-other", "o");
  map.Add(":PATH", "/a");  // stored lowercase
  map.Add(":path", "/second");
  EXPECT_EQ(map.Get(":path"), "/a");
  EXPECT_EQ(map.Get(":Path"), "/a");
  EXPECT_EQ(map.Get(":x-other"), "o");
  EXPECT_THAT(map.GetAll(":path"), ElementsAre("/a", "/second"));
  EXPECT_FALSE(map.Has(":authority"));
  map.Add(":authority", "h");
  EXPECT_EQ(map.Get(":authority"), "h");
  EXPECT_EQ(map.Get(":method"), "GET");

  // Removing a pseudo-header moves the ones after it.
  EXPECT_EQ(map.Remove(":method"), 1u);
  EXPECT_FALSE(map.Has(":method"));
  EXPECT_EQ(map.Get(":path"), "/a");
  EXPECT_EQ(map.Get(":authority"), "h");
  map.Set(":path", "/set");  // replaces both, keeps the first's place
  EXPECT_THAT(map.GetAll(":path"), ElementsAre("/set"));
  EXPECT_EQ(map.Get(":authority"), "h");
  EXPECT_EQ(map.Get(":x-other"), "o");

  // Copies, moves and Clear carry or drop the positions with the fields.
  HeaderMap copy = map;
  EXPECT_EQ(copy.Get(":authority"), "h");
  HeaderMap moved = std::move(map);
  EXPECT_EQ(moved.Get(":path"), "/set");
  EXPECT_FALSE(map.Has(":path"));  // NOLINT(bugprone-use-after-move): moved-from is empty
  map.Add(":status", "200");
  EXPECT_EQ(map.Get(":status"), "200");
  EXPECT_FALSE(map.Has(":path"));
  moved.Clear();
  EXPECT_FALSE(moved.Has(":path"));
  moved.Add(":scheme", "https");
  moved.Add(":protocol", "websocket");
  EXPECT_EQ(moved.Get(":scheme"), "https");
  EXPECT_EQ(moved.Get(":protocol"), "websocket");
  EXPECT_FALSE(moved.Has(":authority"));
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

// "name+ " for each trusted regular field, "name- " for each other one, in order.
std::string TrustMarks(const HeaderMap& headers) {
  std::string out;
  headers.ForEachRegularWithTrust([&](HeaderView h, bool trusted) {
    absl::StrAppend(&out, h.name, trusted ? "+" : "-", " ");
  });
  return out;
}

// Fields a codec checked on input (HTTP/2's decoded fields) are stored as they are and trusted;
// pseudo-headers still go ahead of the regular fields, and lookups find both.
TEST(HeaderMapTest, CheckedFieldsAreStoredAsTheyAreAndTrusted) {
  HeaderMap headers;
  headers.AddChecked("x-a", "1");
  headers.AddChecked(":status", "200");
  headers.AddChecked("content-type", "text/plain");
  headers.Add("x-b", "2");
  EXPECT_EQ(headers.DebugString(), ":status: 200\nx-a: 1\ncontent-type: text/plain\nx-b: 2\n");
  EXPECT_EQ(headers.Get("Content-Type"), "text/plain");
  EXPECT_TRUE(headers.MayHaveAny(HeaderMap::NameFilterBit("x-a")));
  EXPECT_EQ(headers.ByteSize(), std::string(":status200x-a1content-typetext/plainx-b2").size());
  EXPECT_EQ(TrustMarks(headers), "x-a+ content-type+ x-b- ");
  // A value viewing the map itself survives the arena's growth.
  headers.AddChecked("x-copy", *headers.Get("content-type"));
  EXPECT_EQ(headers.Get("x-copy"), "text/plain");
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
  EXPECT_EQ(TrustMarks(headers), "traceparent+ a- x-b3-spanid+ ");
  headers.Set("traceparent", "from a filter");
  EXPECT_EQ(TrustMarks(headers), "traceparent- a- x-b3-spanid+ ");
  EXPECT_EQ(headers.Get("traceparent"), "from a filter");

  // Absent: SetTrusted appends. Copies and moves keep the flag.
  HeaderMap fresh;
  fresh.SetTrusted("traceparent", "00-x");
  HeaderMap copy = fresh;
  bool copied_trusted = false;
  copy.ForEachRegularWithTrust([&](HeaderView, bool trusted) { copied_trusted = trusted; });
  EXPECT_TRUE(copied_trusted);
  EXPECT_EQ(copy.Get("traceparent"), "00-x");

  // A value written in place reads back the same, trusted.
  std::memcpy(fresh.AddTrustedInPlace("traceparent", 17), "00-side-by-side..", 17);
  fresh.Add("after", "1");
  EXPECT_EQ(fresh.DebugString(), "traceparent: 00-x\ntraceparent: 00-side-by-side..\nafter: 1\n");
  EXPECT_EQ(fresh.ByteSize(),
            std::string("traceparent00-xtraceparent00-side-by-side..after1").size());
  bool all_trusted = true;
  fresh.ForEachRegularWithTrust([&](HeaderView h, bool trusted) {
    if (h.name == "traceparent") all_trusted = all_trusted && trusted;
  });
  EXPECT_TRUE(all_trusted);
}

// The name filter answers lookups of absent names; it must never hide a present one. Against a
// plain list, through every mutation that adds, removes or carries names: mixed case, names that
// share a filter bit, empty names, pseudo-headers, trusted fields, Remove, hop-by-hop removal,
// Clear, copies and moves.
TEST(HeaderMapTest, NameFilterNeverHidesAPresentName) {
  std::vector<std::string> pool = {"",
                                   ":path",
                                   "Host",
                                   "te",
                                   "TE",
                                   "connection",
                                   "x-request-id",
                                   "X-Client-Trace-Id",
                                   "b3",
                                   "B3",
                                   "traceparent",
                                   "under_score",
                                   "care^t",
                                   "care~t",
                                   "a",
                                   "Z"};
  // Names sharing a bit with others already in the pool, so the filter's "maybe" is exercised.
  for (int i = 0; pool.size() < 60 && i < 10000; ++i) {
    const std::string candidate = "n" + std::to_string(i);
    for (const std::string& name : pool) {
      if (HeaderMap::NameFilterBit(candidate) == HeaderMap::NameFilterBit(name)) {
        pool.push_back(candidate);
        break;
      }
    }
  }
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return s;
  };
  auto check = [&](const HeaderMap& map, const std::vector<std::string>& expected_lower) {
    for (const std::string& name : pool) {
      const bool expected = std::find(expected_lower.begin(), expected_lower.end(), lower(name)) !=
                            expected_lower.end();
      ASSERT_EQ(map.Has(name), expected) << "'" << name << "' in\n" << map.DebugString();
      if (expected && !HeaderMap::IsPseudoName(name)) {  // pseudo-headers: not filtered
        EXPECT_TRUE(map.MayHaveAny(HeaderMap::NameFilterBit(name)));
        EXPECT_TRUE(map.MayHaveAny(HeaderMap::NameFilterBit(lower(name))));
      }
    }
  };
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<size_t>(state >> 33);
  };
  HeaderMap map;
  std::vector<std::string> present;  // lowercase, with repeats
  for (int step = 0; step < 3000; ++step) {
    const std::string& name = pool[next() % pool.size()];
    switch (next() % 9) {
      case 0:
      case 1:
      case 2:
        map.Add(name, "v");
        present.push_back(lower(name));
        break;
      case 3:
        if (!name.empty() && name[0] != ':') {
          map.AddTrusted(lower(name), "t");
          present.push_back(lower(name));
        }
        break;
      case 4:
        map.Remove(name);
        present.erase(std::remove(present.begin(), present.end(), lower(name)), present.end());
        break;
      case 5:
        map.RemoveHopByHopHeaders();
        present.erase(std::remove_if(present.begin(), present.end(),
                                     [](const std::string& n) {
                                       return HeaderMap::IsHopByHopName(n) && n != "te";
                                     }),
                      present.end());
        // TE survives only as "trailers", which these values never ask for.
        present.erase(std::remove(present.begin(), present.end(), "te"), present.end());
        break;
      case 6: {
        HeaderMap copy = map;
        map = std::move(copy);
        break;
      }
      case 7:
        if (next() % 8 == 0) {
          map.Clear();
          present.clear();
        }
        break;
      default:
        map.Set(name, "s");
        present.erase(std::remove(present.begin(), present.end(), lower(name)), present.end());
        present.push_back(lower(name));
        break;
    }
    SCOPED_TRACE(step);
    check(map, present);
  }
}

TEST(HeaderMapTest, NameFilterSkipsAbsentNamesAndFoldsCase) {
  HeaderMap map{{":method", "GET"}, {"Host", "a"}};
  EXPECT_TRUE(map.MayHaveAny(HeaderMap::NameFilterBit("host")));
  EXPECT_TRUE(map.MayHaveAny(HeaderMap::NameFilterBit("HOST")));
  EXPECT_EQ(map.Get(":method"), "GET");  // pseudo-headers are not in the filter, nor asked
  EXPECT_EQ(HeaderMap::NameFilterBit("Traceparent"), HeaderMap::NameFilterBit("traceparent"));
  EXPECT_EQ(HeaderMap::NameFilterBit("X-B3"), HeaderMap::NameFilterBit("x-b3"));
  EXPECT_EQ(HeaderMap::NameFilterBit("TE"), HeaderMap::NameFilterBit("te"));
  // A name whose bit nothing in the map has set is absent without a look.
  const uint64_t traceparent = HeaderMap::NameFilterBit("traceparent");
  ASSERT_NE(traceparent, HeaderMap::NameFilterBit("host"));
  EXPECT_FALSE(map.MayHaveAny(traceparent));
  map.Add("traceparent", "x");
  EXPECT_TRUE(map.MayHaveAny(traceparent));
  // Clear() forgets every name; a moved-from map is empty and forgets them too.
  HeaderMap moved = std::move(map);
  EXPECT_TRUE(moved.MayHaveAny(traceparent));
  EXPECT_FALSE(map.MayHaveAny(traceparent));  // NOLINT(bugprone-use-after-move): documented
  moved.Clear();
  EXPECT_FALSE(moved.MayHaveAny(traceparent | HeaderMap::NameFilterBit("host")));
  // Bits spread: names that differ in length, first or last letter reach all 64.
  uint64_t seen = 0;
  for (char first = 'a'; first <= 'z'; ++first) {
    for (char last = 'a'; last <= 'z'; ++last) {
      for (size_t length = 2; length < 20; ++length) {
        std::string name(length, '-');
        name.front() = first;
        name.back() = last;
        seen |= HeaderMap::NameFilterBit(name);
      }
    }
  }
  EXPECT_EQ(seen, ~uint64_t{0});
}

// The arena grows through the allocator's block sizes and past them; copies, moves, Clear() and
// compaction keep every byte.
TEST(HeaderMapTest, ArenaKeepsBytesAcrossGrowthCopiesAndMoves) {
  HeaderMap map;
  std::vector<std::pair<std::string, std::string>> expected;
  for (size_t size : {size_t{0}, size_t{1}, size_t{200}, size_t{300}, size_t{4000}, size_t{9000}}) {
    const std::string name = "x-size-" + std::to_string(size);
    std::string value(size, 'a');
    for (size_t i = 0; i < size; ++i) value[i] = static_cast<char>('a' + i % 26);
    map.Add(name, value);
    expected.emplace_back(name, value);
  }
  auto check = [&](const HeaderMap& m) {
    ASSERT_EQ(m.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(m.at(i).name, expected[i].first);
      EXPECT_EQ(m.at(i).value, expected[i].second);
    }
  };
  check(map);
  HeaderMap copy = map;
  check(copy);
  HeaderMap reserved;
  reserved.ReserveBytes(100);
  reserved.Add("old", "gone");
  reserved = map;
  check(reserved);
  HeaderMap moved = std::move(copy);
  check(moved);
  // Removing most of the bytes compacts the arena; the rest stays readable.
  moved.Remove("x-size-9000");
  moved.Remove("x-size-4000");
  expected.erase(expected.end() - 2, expected.end());
  check(moved);
  moved.Clear();
  moved.Add("after", "clear");
  EXPECT_EQ(moved.DebugString(), "after: clear\n");
  HeaderMap empty;
  HeaderMap empty_copy = empty;
  EXPECT_TRUE(empty_copy.empty());
  empty_copy.Add("", "");
  EXPECT_EQ(empty_copy.Get(""), "");
}

// Trusted values that view the map itself are read before the arena grows (here, past its
// first block, so it reallocates).
TEST(HeaderMapTest, TrustedValuesMayViewTheMapItself) {
  HeaderMap map;
  map.Add("x-long", std::string(200, 'v'));
  map.AddTrusted("x-copy", *map.Get("x-long"));
  map.AddTrusted("x-copy-2", *map.Get("x-copy"));
  map.SetTrusted("x-copy", *map.Get("x-long"));
  map.SetTrusted("x-new", *map.Get("x-copy-2"));
  EXPECT_EQ(map.Get("x-copy"), std::string(200, 'v'));
  EXPECT_EQ(map.Get("x-copy-2"), std::string(200, 'v'));
  EXPECT_EQ(map.Get("x-new"), std::string(200, 'v'));
  EXPECT_EQ(map.ByteSize(), std::string("x-longx-copyx-copy-2x-new").size() + 4 * 200);
}

// The filter's constant was chosen so that common request names each have a bit of their own and
// none shares one with a header the tracer reads from callers: an edge request then skips the
// tracer's header scan, and lookups of absent common names stop at the filter.
TEST(HeaderMapTest, CommonNamesHaveBitsOfTheirOwn) {
  const std::vector<std::string> common = {"host",
                                           "user-agent",
                                           "accept",
                                           "accept-encoding",
                                           "accept-language",
                                           "content-type",
                                           "content-length",
                                           "authorization",
                                           "cookie",
                                           "x-forwarded-for",
                                           "x-forwarded-proto",
                                           "x-request-id",
                                           "x-meshlet-peer",
                                           "referer",
                                           "origin",
                                           "cache-control",
                                           "connection",
                                           "upgrade",
                                           "te",
                                           "x-real-ip",
                                           "x-meshlet-deadline",
                                           "grpc-timeout"};
  const std::vector<std::string> trace = {"traceparent",  "tracestate",  "b3",
                                          "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
                                          "x-b3-sampled", "x-b3-flags",  "x-meshlet-force-trace"};
  uint64_t common_bits = 0;
  for (const std::string& name : common) {
    EXPECT_EQ(common_bits & HeaderMap::NameFilterBit(name), 0u) << name << " shares a bit";
    common_bits |= HeaderMap::NameFilterBit(name);
  }
  uint64_t trace_bits = 0;
  for (const std::string& name : trace) {
    EXPECT_EQ(common_bits & HeaderMap::NameFilterBit(name), 0u) << name << " shares a bit";
    trace_bits |= HeaderMap::NameFilterBit(name);
  }
  EXPECT_EQ(__builtin_popcountll(trace_bits), static_cast<int>(trace.size()));
}

}  // namespace
}  // namespace meshlet::http
