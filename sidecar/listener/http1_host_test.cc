#include "sidecar/listener/http1_host.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/allocation_counter.h"
#include "gtest/gtest.h"

namespace meshlet::sidecar::listener {
namespace {

using Status = Http1Host::Status;

constexpr size_t kMax = 4096;

// The answer for `bytes`, checked against every way of feeding them: every prefix is undecided or
// already this answer, and the reader fed in pieces (one byte, three bytes at a time) agrees.
Http1Host Read(const std::string& bytes, size_t max_bytes = kMax) {
  const Http1Host whole = ParseHttp1Host(bytes, max_bytes);
  for (size_t n = 0; n < bytes.size(); ++n) {
    const Http1Host prefix = ParseHttp1Host(absl::string_view(bytes).substr(0, n), max_bytes);
    if (prefix.status != Status::kNeedMoreBytes) {
      EXPECT_EQ(prefix.status, whole.status) << "prefix of " << n << " bytes of " << bytes;
      EXPECT_EQ(prefix.host, whole.host) << "prefix of " << n << " bytes of " << bytes;
    }
  }
  for (size_t piece : {size_t{1}, size_t{3}}) {
    Http1HostReader reader(max_bytes);
    for (size_t at = 0; at < bytes.size(); at += piece) {
      reader.Feed(absl::string_view(bytes).substr(at, piece));
    }
    EXPECT_LE(reader.bytes_read(), bytes.size());
    const Http1Host fed = reader.Result(bytes);
    EXPECT_EQ(fed.status, whole.status) << "in pieces of " << piece << ": " << bytes;
    EXPECT_EQ(fed.host, whole.host) << "in pieces of " << piece << ": " << bytes;
  }
  return whole;
}

// Read()'s host of `bytes`, or "<status name>" when it has none.
std::string HostOf(const std::string& bytes, size_t max_bytes = kMax) {
  const Http1Host host = Read(bytes, max_bytes);
  if (host.status == Status::kOk) return host.host;
  return absl::StrCat("<", Http1HostStatusName(host.status), ">");
}

TEST(Http1HostTest, ReadsTheHostField) {
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nHost: api.partner.example\r\n\r\n"), "api.partner.example");
  EXPECT_EQ(HostOf("POST /orders?id=7 HTTP/1.1\r\nuser-agent: curl/8\r\nhost: api.example\r\n"
                   "content-length: 2\r\n\r\n{}"),
            "api.example");
  // Any case of the name; the value lower-cased, its OWS and port left out.
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nHOST: \t API.Partner.Example:8080 \t\r\n\r\n"),
            "api.partner.example");
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nhOsT:api.example:\r\n\r\n"), "api.example");
  EXPECT_EQ(HostOf("GET / HTTP/1.0\r\nHost: api.example\r\n\r\n"), "api.example");
  // IP literals: not names, but read all the same (they match no destination's names).
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\n\r\n"), "10.0.0.1");
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), "[::1]");
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nHost: [FD00::1]\r\n\r\n"), "[fd00::1]");
  // A trailing dot stays: the route table does not drop it either.
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nHost: api.example.\r\n\r\n"), "api.example.");
  // Fields like Host are not Host.
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nX-Host: a.example\r\nHosts: b.example\r\nHos: c\r\n"
                   "Host: d.example\r\n\r\n"),
            "d.example");
  // Empty lines before the request line are skipped, as the codec skips them.
  EXPECT_EQ(HostOf("\r\n\r\nGET / HTTP/1.1\r\nHost: api.example\r\n\r\n"), "api.example");
  // Methods the protocol detector does not know; OPTIONS *.
  EXPECT_EQ(HostOf("PURGE /x HTTP/1.1\r\nHost: api.example\r\n\r\n"), "api.example");
  EXPECT_EQ(HostOf("OPTIONS * HTTP/1.1\r\nHost: api.example\r\n\r\n"), "api.example");
  EXPECT_EQ(HostOf("CONNECTED / HTTP/1.1\r\nHost: api.example\r\n\r\n"), "api.example");
  // An empty field value, obs-text and tabs elsewhere are fine.
  EXPECT_EQ(
      HostOf("GET / HTTP/1.1\r\nx-empty:\r\nx-text: caf\xc3\xa9\tb\r\nHost: a.example\r\n\r\n"),
      "a.example");
}

// The codec takes an absolute-form target's authority as :authority, replacing Host: that is the
// name, and a Host naming another host makes the request ambiguous.
TEST(Http1HostTest, AbsoluteFormTargets) {
  EXPECT_EQ(HostOf("GET http://api.example/x HTTP/1.1\r\nHost: api.example\r\n\r\n"),
            "api.example");
  EXPECT_EQ(HostOf("GET HTTP://API.example:80?q=1 HTTP/1.1\r\nHost: api.EXAMPLE:8080\r\n\r\n"),
            "api.example");
  EXPECT_EQ(HostOf("GET https://api.example HTTP/1.1\r\nHost: api.example\r\n\r\n"), "api.example");
  EXPECT_EQ(HostOf("GET http://api.example/ HTTP/1.1\r\nHost: other.example\r\n\r\n"),
            "<ambiguous>");
  EXPECT_EQ(HostOf("GET http://api.example/ HTTP/1.1\r\nHost:\r\n\r\n"), "<ambiguous>");
  // HTTP/1.1 needs Host all the same (the codec's 400); HTTP/1.0 may leave it out.
  EXPECT_EQ(HostOf("GET http://api.example/ HTTP/1.1\r\n\r\n"), "<no_host>");
  EXPECT_EQ(HostOf("GET http://api.example/ HTTP/1.0\r\n\r\n"), "api.example");
  // Targets the codec refuses.
  EXPECT_EQ(HostOf("GET ftp://api.example/ HTTP/1.1\r\nHost: api.example\r\n\r\n"), "<not_http1>");
  EXPECT_EQ(HostOf("GET http:///x HTTP/1.1\r\nHost: api.example\r\n\r\n"), "<not_http1>");
  EXPECT_EQ(HostOf("GET http://u@api.example/ HTTP/1.1\r\nHost: api.example\r\n\r\n"),
            "<not_http1>");
  EXPECT_EQ(HostOf("GET api.example:80 HTTP/1.1\r\nHost: api.example\r\n\r\n"), "<not_http1>");
  EXPECT_EQ(HostOf("GET * HTTP/1.1\r\nHost: api.example\r\n\r\n"), "<not_http1>");
}

TEST(Http1HostTest, ConnectNamesNoHost) {
  // Decided by the method alone.
  EXPECT_EQ(ParseHttp1Host("CONNECT ", kMax).status, Status::kNoHost);
  EXPECT_EQ(ParseHttp1Host("CONNECT", kMax).status, Status::kNeedMoreBytes);
  EXPECT_EQ(HostOf("CONNECT api.example:443 HTTP/1.1\r\nHost: api.example:443\r\n\r\n"),
            "<no_host>");
}

TEST(Http1HostTest, RequestsWithoutAUsableHost) {
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\n\r\n"), "<no_host>");
  EXPECT_EQ(HostOf("GET / HTTP/1.0\r\n\r\n"), "<no_host>");
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nHost:\r\n\r\n"), "<no_host>");
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nHost:   \r\n\r\n"), "<no_host>");
  // Values the codec refuses (400).
  for (const char* value :
       {"a b", "a,b", "user@a", "a:http", "a:65536", "::1", "a/b", "[::1", "a.example:80:80"}) {
    EXPECT_EQ(HostOf(absl::StrCat("GET / HTTP/1.1\r\nHost: ", value, "\r\n\r\n")), "<no_host>")
        << value;
  }
}

TEST(Http1HostTest, TwoHostFieldsAreAmbiguous) {
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n"), "<ambiguous>");
  // Known at the second field's end, whatever follows.
  EXPECT_EQ(ParseHttp1Host("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r", kMax).status,
            Status::kAmbiguous);
}

TEST(Http1HostTest, BytesThatAreNotAnHttp1RequestHead) {
  for (const std::string& bytes : std::vector<std::string>{
           std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),  // TLS
           "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
           "SSH-2.0-OpenSSH_9.2\r\n",
           std::string("\0\0\0\0", 4),
           "GET / HTTP/1.2\r\nHost: a\r\n\r\n",  // the codec's 505
           "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
           "GET / http/1.1\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
           "GET / HTTP/1.10\r\nHost: a\r\n\r\n",
           "GET /\r\n\r\n",  // HTTP/0.9
           "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
           " GET / HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET /#x HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
           "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
           // Line ends: a bare LF or CR anywhere.
           "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
           "\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.1\nHost: a\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\n\n",
           "GET / HTTP/1.1\r\nHost: a\r\n\r\r",
           "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
           // Field lines: obs-fold, whitespace before the colon, no name, no colon, controls.
           "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
           "GET / HTTP/1.1\r\nx: 1\r\n\tHost: a\r\n\r\n",
           "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
           "GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.1\r\nHost a\r\n\r\n",
           "GET / HTTP/1.1\r\nx(y): 1\r\nHost: a\r\n\r\n",
           std::string("GET / HTTP/1.1\r\nHost: a") + '\0' + "\r\n\r\n",
           "GET / HTTP/1.1\r\nx: \x01\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.1\r\nx: \x7f\r\nHost: a\r\n\r\n",
       }) {
    EXPECT_EQ(HostOf(bytes), "<not_http1>") << absl::CEscape(bytes);
  }
  // Decided at the first byte that cannot begin a request.
  Http1HostReader reader(kMax);
  reader.Feed("\x16\x03\x01");
  EXPECT_TRUE(reader.decided());
  EXPECT_EQ(reader.bytes_read(), 1u);
  EXPECT_EQ(reader.Result("\x16").status, Status::kNotHttp1);
}

TEST(Http1HostTest, AHeadPastTheLimitIsTooLarge) {
  const std::string head = "GET / HTTP/1.1\r\nHost: api.example\r\nx-pad: 0123456789\r\n\r\n";
  EXPECT_EQ(HostOf(head, head.size()), "api.example");
  EXPECT_EQ(HostOf(head, head.size() - 1), "<too_large>");
  EXPECT_EQ(ParseHttp1Host(head.substr(0, 10), 10).status, Status::kTooLarge);
  EXPECT_EQ(ParseHttp1Host(head.substr(0, 9), 10).status, Status::kNeedMoreBytes);
  // Empty lines before the request line count.
  EXPECT_EQ(HostOf("\r\n" + head, head.size() + 1), "<too_large>");
  EXPECT_EQ(HostOf("\r\n" + head, head.size() + 2), "api.example");
  // A method that never ends, a field that never ends.
  EXPECT_EQ(HostOf(std::string(100, 'A'), 64), "<too_large>");
  EXPECT_EQ(HostOf("GET / HTTP/1.1\r\nx: " + std::string(100, 'a'), 64), "<too_large>");
  EXPECT_EQ(ParseHttp1Host("", 0).status, Status::kTooLarge);
}

TEST(Http1HostTest, EveryPrefixOfAWholeHeadNeedsMoreBytes) {
  const std::string head = "GET /a HTTP/1.1\r\nHost: api.example:80\r\nAccept: */*\r\n\r\n";
  for (size_t n = 0; n < head.size(); ++n) {
    EXPECT_EQ(ParseHttp1Host(head.substr(0, n), kMax).status, Status::kNeedMoreBytes) << n;
  }
  EXPECT_EQ(HostOf(head), "api.example");
}

// Only the first request's head is read: its body, and later requests on the connection, are the
// route table's business.
TEST(Http1HostTest, ReadsNothingPastTheHead) {
  const std::string head = "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\n";
  const std::string bytes = head + "hello" + "GET / HTTP/1.1\r\nHost: b.example\r\n\r\n";
  Http1HostReader reader(kMax);
  reader.Feed(bytes);
  ASSERT_TRUE(reader.decided());
  EXPECT_EQ(reader.bytes_read(), head.size());
  EXPECT_EQ(reader.Result(head).host, "a.example");
  reader.Feed("more");
  EXPECT_EQ(reader.bytes_read(), head.size());
  EXPECT_EQ(HostOf(bytes), "a.example");
}

TEST(Http1HostTest, UndecidedUntilTheHeadEnds) {
  Http1HostReader reader(kMax);
  reader.Feed("GET / HTTP/1.1\r\nHost: a.example\r\n");
  EXPECT_FALSE(reader.decided());
  EXPECT_EQ(reader.Result("GET / HTTP/1.1\r\nHost: a.example\r\n").status, Status::kNeedMoreBytes);
  reader.Feed("\r");
  EXPECT_FALSE(reader.decided());
  reader.Feed("\n");
  EXPECT_TRUE(reader.decided());
}

TEST(Http1HostTest, AllocatesOnlyTheHost) {
  const std::string long_host(200, 'a');
  const std::string ok = "GET / HTTP/1.1\r\nHost: " + long_host + ":80\r\n\r\n";
  const std::string ambiguous = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
  const std::string absolute = "GET http://" + long_host + "/ HTTP/1.1\r\nHost: b\r\n\r\n";
  Http1HostReader reader(kMax);
  {
    AllocationScope allocations;
    Http1Host host = ParseHttp1Host(ok, kMax);
    EXPECT_EQ(allocations.count(), 1u);
    EXPECT_EQ(host.host, long_host);
  }
  {
    AllocationScope allocations;
    EXPECT_EQ(ParseHttp1Host(ambiguous, kMax).status, Status::kAmbiguous);
    EXPECT_EQ(ParseHttp1Host(absolute, kMax).status, Status::kAmbiguous);
    reader.Feed(absl::string_view(ok).substr(0, 20));
    reader.Feed(absl::string_view(ok).substr(20));
    EXPECT_TRUE(reader.decided());
    EXPECT_EQ(allocations.count(), 0u);
  }
}

TEST(Http1HostTest, StatusNames) {
  EXPECT_EQ(Http1HostStatusName(Status::kNeedMoreBytes), "need_more_bytes");
  EXPECT_EQ(Http1HostStatusName(Status::kOk), "ok");
  EXPECT_EQ(Http1HostStatusName(Status::kNotHttp1), "not_http1");
  EXPECT_EQ(Http1HostStatusName(Status::kNoHost), "no_host");
  EXPECT_EQ(Http1HostStatusName(Status::kAmbiguous), "ambiguous");
  EXPECT_EQ(Http1HostStatusName(Status::kTooLarge), "too_large");
  EXPECT_EQ(static_cast<size_t>(Status::kTooLarge) + 1, kHttp1HostStatusCount);
}

}  // namespace
}  // namespace meshlet::sidecar::listener
