// Header conversion of the HTTP/2 codec: the field lists BuildNv makes, the requests
// MalformedRequest refuses, and both seen through a codec pair.
#include "common/http/h2/header_conversion.h"

#include <nghttp2/nghttp2.h>

#include <string>
#include <utility>
#include <vector>

#include "common/http/h2/codec.h"
#include "common/http/h2/codec_test_helpers.h"
#include "common/http/h2/test_util.h"
#include "common/net/buffer.h"
#include "gtest/gtest.h"

namespace meshlet::http::h2 {
namespace {

using codec_internal::BuildNv;
using codec_internal::Is1xx;
using codec_internal::IsConnectionSpecific;
using codec_internal::MalformedRequest;
using codec_internal::NvArray;
using testing::ClientRequest;
using testing::CodecPair;
using testing::Request;

std::vector<std::pair<std::string, std::string>> Fields(const NvArray& nv) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const nghttp2_nv& f : nv) {
    out.emplace_back(std::string(reinterpret_cast<const char*>(f.name), f.namelen),
                     std::string(reinterpret_cast<const char*>(f.value), f.valuelen));
  }
  return out;
}

using FieldList = std::vector<std::pair<std::string, std::string>>;

TEST(Http2HeaderConversionTest, RequestGetsSchemeAndAuthorityFromHostBeforeRegularFields) {
  HeaderMap h{{":method", "GET"}, {":path", "/x"}, {"host", "h.test"}, {"accept", "*/*"}};
  NvArray nv;
  BuildNv(h, /*request=*/true, "https", nv);
  EXPECT_EQ(Fields(nv), (FieldList{{":method", "GET"},
                                   {":path", "/x"},
                                   {":scheme", "https"},
                                   {":authority", "h.test"},
                                   {"accept", "*/*"}}));
}

TEST(Http2HeaderConversionTest, RequestKeepsItsOwnSchemeAndAuthorityAndHost) {
  HeaderMap h{{":method", "GET"},
              {":scheme", "http"},
              {":authority", "a.test"},
              {":path", "/"},
              {"host", "h.test"}};
  NvArray nv;
  BuildNv(h, /*request=*/true, "https", nv);
  EXPECT_EQ(Fields(nv), (FieldList{{":method", "GET"},
                                   {":scheme", "http"},
                                   {":authority", "a.test"},
                                   {":path", "/"},
                                   {"host", "h.test"}}));
}

// Request ids and trace context differ in every request: HPACK's dynamic table keeps the fields
// that repeat, so after the first request they are one byte each and the table stops changing.
// The first request's varying fields enter the table too, for their names only: later ones are
// sent never-indexed with the name as a reference to that entry instead of a literal.
TEST(Http2HeaderConversionTest, FieldsDifferentInEveryRequestStayOutOfTheDynamicTable) {
  nghttp2_hd_deflater* deflater;
  ASSERT_EQ(nghttp2_hd_deflate_new(&deflater, 4096), 0);
  // The same requests without a connection's VaryingNames: every name a literal.
  nghttp2_hd_deflater* literal_names;
  ASSERT_EQ(nghttp2_hd_deflate_new(&literal_names, 4096), 0);
  codec_internal::VaryingNames varying;
  size_t entries_after_first = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string id = "7d3f2a1b-9c8e-4f6d-a5b4-" + std::to_string(100000000000 + i);
    const std::string trace =
        "00-4bf92f3577b34da6a3ce929d0e0e" + std::to_string(1000 + i) + "-00f067aa0ba902b7-01";
    HeaderMap h{{":method", "GET"},           {":path", "/api"},    {"host", "svc.test"},
                {"user-agent", "bench"},      {"x-request-id", id}, {"traceparent", trace},
                {"x-forwarded-proto", "http"}};
    NvArray nv;
    BuildNv(h, /*request=*/true, "https", nv, &varying);
    uint8_t block[1024];
    ssize_t n = nghttp2_hd_deflate_hd(deflater, block, sizeof block, nv.data(), nv.size());
    ASSERT_GT(n, 0);
    BuildNv(h, /*request=*/true, "https", nv);
    ssize_t n_literal =
        nghttp2_hd_deflate_hd(literal_names, block, sizeof block, nv.data(), nv.size());
    ASSERT_GT(n_literal, 0);
    const size_t entries = nghttp2_hd_deflate_get_num_table_entries(deflater);
    if (i == 0) {
      entries_after_first = entries;
      // The two varying fields entered the table with the five that repeat.
      EXPECT_EQ(entries, nghttp2_hd_deflate_get_num_table_entries(literal_names) + 2);
      continue;
    }
    if (i % codec_internal::VaryingNames::kReindexEvery == 0) {
      // Indexed again, in case other fields had pushed the names out of the table.
      EXPECT_EQ(entries, entries_after_first + 2) << i;
      entries_after_first = entries;
      continue;
    }
    EXPECT_EQ(entries, entries_after_first) << i;
    // The two values as literals, one byte per repeated field and per name reference.
    EXPECT_LE(static_cast<size_t>(n), id.size() + trace.size() + 4 + 6) << i;
    // "x-request-id" and "traceparent" Huffman-coded are 8 bytes each.
    EXPECT_LE(n + 16, n_literal) << i;
  }
  nghttp2_hd_deflate_del(literal_names);
  nghttp2_hd_deflate_del(deflater);
  EXPECT_TRUE(codec_internal::DifferentInEveryMessage("x-meshlet-deadline"));
  EXPECT_FALSE(codec_internal::DifferentInEveryMessage("x-forwarded-proto"));
}

TEST(Http2HeaderConversionTest, ConnectionSpecificFieldsAreLeftOut) {
  HeaderMap h{{":status", "200"},  {"connection", "close"},
              {"keep-alive", "5"}, {"transfer-encoding", "chunked"},
              {"upgrade", "h2c"},  {"te", "gzip"},
              {"x-kept", "1"}};
  NvArray nv;
  nv.push_back(nghttp2_nv{});  // replaced, not appended to
  BuildNv(h, /*request=*/false, "", nv);
  EXPECT_EQ(Fields(nv), (FieldList{{":status", "200"}, {"x-kept", "1"}}));
  EXPECT_FALSE(IsConnectionSpecific("te", "trailers"));
  EXPECT_TRUE(IsConnectionSpecific("te", "gzip"));
  EXPECT_TRUE(IsConnectionSpecific("proxy-connection", "keep-alive"));
  EXPECT_FALSE(IsConnectionSpecific("content-length", "3"));
}

TEST(Http2HeaderConversionTest, ResponseGetsNoSchemeOrAuthority) {
  HeaderMap h{{":status", "204"}, {"host", "h.test"}};
  NvArray nv;
  BuildNv(h, /*request=*/false, "http", nv);
  EXPECT_EQ(Fields(nv), (FieldList{{":status", "204"}, {"host", "h.test"}}));
}

TEST(Http2HeaderConversionTest, InterimResponses) {
  EXPECT_TRUE(Is1xx(HeaderMap{{":status", "100"}}));
  EXPECT_TRUE(Is1xx(HeaderMap{{":status", "103"}}));
  EXPECT_FALSE(Is1xx(HeaderMap{{":status", "101"}}));
  EXPECT_FALSE(Is1xx(HeaderMap{{":status", "200"}}));
  EXPECT_FALSE(Is1xx(HeaderMap{{":status", "1000"}}));
  EXPECT_FALSE(Is1xx(HeaderMap{}));
}

TEST(Http2HeaderConversionTest, MalformedRequestsSayWhatIsWrong) {
  EXPECT_EQ(MalformedRequest(HeaderMap{{":path", "/a?b=c"}, {":authority", "h.test:80"}}), "");
  EXPECT_EQ(MalformedRequest(HeaderMap{{":path", "/a b"}}), "invalid :path");
  EXPECT_EQ(MalformedRequest(HeaderMap{{":path", "/a#f"}}), "invalid :path");
  EXPECT_EQ(MalformedRequest(HeaderMap{{":path", "/caf\xc3\xa9"}}), "invalid :path");
  EXPECT_EQ(MalformedRequest(HeaderMap{{":authority", "u@h.test"}}), "invalid :authority");
  EXPECT_EQ(MalformedRequest(HeaderMap{{"host", "h.test:x"}}), "invalid host");
  EXPECT_EQ(MalformedRequest(HeaderMap{{"host", "a.test"}, {"host", "b.test"}}),
            "more than one host");
}

TEST(Http2CodecTest, HostBecomesAuthorityAndConnectionHeadersAreDropped) {
  CodecPair p;
  HeaderMap req{{":method", "GET"},           {":path", "/"},      {"host", "h.test"},
                {"connection", "keep-alive"}, {"keep-alive", "5"}, {"te", "trailers"}};
  p.Start(req, true);
  ASSERT_TRUE(p.Pump().ok());
  ASSERT_EQ(p.server_callbacks.requests.size(), 1u);
  const HeaderMap& h = *p.server_callbacks.requests[0]->decoder.headers;
  EXPECT_EQ(h.Get(":authority"), "h.test");
  EXPECT_EQ(h.Get(":scheme"), "http");
  EXPECT_FALSE(h.Has("host"));
  EXPECT_FALSE(h.Has("connection"));
  EXPECT_FALSE(h.Has("keep-alive"));
  EXPECT_EQ(h.Get("te"), "trailers");
}

// RFC 9113 8.3.1: an :authority with userinfo, or anything else that is not
// `uri-host [ ":" port ]`, makes the request malformed; a host field sent over HTTP/2 is held to
// the same rule, and only one is allowed. Each is refused with RST_STREAM(PROTOCOL_ERROR) before
// the user sees it, and the connection goes on.
TEST(Http2CodecTest, InvalidAuthorityOrHostResetsStreamWithProtocolError) {
  CodecPair p;
  std::vector<HeaderMap> bad;
  for (absl::string_view authority :
       {"user:pw@example.test:8080", "a.example,b.example", "example.test:http",
        "example.test:65536", "example.test/admin", "::1"}) {
    HeaderMap h = Request();
    h.Set(":authority", authority);
    bad.push_back(std::move(h));
  }
  HeaderMap host_userinfo = Request();
  host_userinfo.Add("host", "user@example.test");
  bad.push_back(std::move(host_userinfo));
  HeaderMap two_hosts = Request();
  two_hosts.Add("host", "example.test");
  two_hosts.Add("host", "example.test");
  bad.push_back(std::move(two_hosts));

  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "request " << i);
    ClientRequest& c = p.Start(bad[i], true);
    ASSERT_TRUE(p.Pump().ok());
    EXPECT_TRUE(p.server_callbacks.requests.empty());
    EXPECT_EQ(c.callbacks.resets, 1);
    EXPECT_EQ(c.callbacks.reason, StreamResetReason::kRemoteReset);
    EXPECT_EQ(p.server->counters().stream_protocol_errors, i + 1);
    EXPECT_EQ(p.server->counters().rst_stream_sent[ErrorCodeSlot(NGHTTP2_PROTOCOL_ERROR)], i + 1);
    EXPECT_EQ(p.server->ActiveStreams(), 0u);
  }

  // Valid authorities still pass, on the same connection.
  const size_t errors = p.server->counters().stream_protocol_errors;
  size_t served = 0;
  for (absl::string_view authority : {"[::1]:8080", "example.test:", "caf%C3%A9.example:443"}) {
    HeaderMap h = Request();
    h.Set(":authority", authority);
    h.Add("host", authority);
    p.Start(h, true);
    ASSERT_TRUE(p.Pump().ok());
    ASSERT_EQ(p.server_callbacks.requests.size(), ++served) << authority;
    EXPECT_EQ(p.server_callbacks.requests.back()->decoder.headers->Get(":authority"), authority);
  }
  EXPECT_EQ(p.server->counters().stream_protocol_errors, errors);
}

// A :path with a byte no URI holds (raw UTF-8, a control, a space, DEL) or a fragment is a
// malformed request too, refused like the HTTP/1 parser refuses such a request-target: it never
// reaches an upstream.
TEST(Http2CodecTest, InvalidPathResetsStreamWithProtocolError) {
  CodecPair p;
  const std::vector<std::string> bad = {"/caf\xc3\xa9", "/a b",  "/a\x01",
                                        "/a#frag",      "/\x7f", "/\xff"};
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "path " << i);
    HeaderMap h = Request();
    h.Set(":path", bad[i]);
    ClientRequest& c = p.Start(h, true);
    ASSERT_TRUE(p.Pump().ok());
    EXPECT_TRUE(p.server_callbacks.requests.empty());
    EXPECT_EQ(c.callbacks.resets, 1);
    EXPECT_EQ(p.server->counters().stream_protocol_errors, i + 1);
  }
  size_t served = 0;
  for (absl::string_view path : {"/caf%C3%A9?q=1&r=%20", "/a/b;c=d?x=y/z", "*"}) {
    HeaderMap h = Request();
    h.Set(":path", path);
    if (path == "*") h.Set(":method", "OPTIONS");
    p.Start(h, true);
    ASSERT_TRUE(p.Pump().ok());
    ASSERT_EQ(p.server_callbacks.requests.size(), ++served) << path;
    EXPECT_EQ(p.server_callbacks.requests.back()->decoder.headers->Get(":path"), path);
  }
  EXPECT_EQ(p.server->counters().stream_protocol_errors, bad.size());
}

}  // namespace
}  // namespace meshlet::http::h2
