// ParseClientHello over ClientHellos that BoringSSL writes (TLS 1.2 and 1.3 clients with and
// without SNI and ALPN), the same hello split over records and cut short at every length, and
// hand-made malformed ones.

#include "common/tls/client_hello.h"

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/tls/client_hello_test_util.h"
#include "gtest/gtest.h"

namespace meshlet::tls {
namespace {

using Status = ClientHello::Status;

// The first flight of a real client: its ClientHello records.
std::string RealClientHello(const char* server_name, const std::vector<std::string>& alpn,
                            uint16_t max_version = TLS1_3_VERSION) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL* ssl = SSL_new(ctx);
  if (server_name != nullptr) SSL_set_tlsext_host_name(ssl, server_name);
  if (!alpn.empty()) {
    std::string wire;
    for (const std::string& p : alpn)
      wire += absl::StrCat(std::string(1, static_cast<char>(p.size())), p);
    SSL_set_alpn_protos(ssl, reinterpret_cast<const uint8_t*>(wire.data()), wire.size());
  }
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);
  SSL_set_connect_state(ssl);
  EXPECT_EQ(SSL_get_error(ssl, SSL_do_handshake(ssl)), SSL_ERROR_WANT_READ);
  const uint8_t* data = nullptr;
  size_t size = 0;
  BIO_mem_contents(out, &data, &size);
  std::string hello(reinterpret_cast<const char*>(data), size);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return hello;
}

// `hello` (one record) rewritten as records of at most `chunk` payload bytes each.
std::string SplitRecords(const std::string& hello, size_t chunk) {
  const std::string message = hello.substr(5);
  std::string out;
  for (size_t at = 0; at < message.size(); at += chunk) {
    const std::string part = message.substr(at, chunk);
    out += std::string("\x16\x03\x01", 3);
    out += static_cast<char>(part.size() >> 8);
    out += static_cast<char>(part.size() & 0xff);
    out += part;
  }
  return out;
}

TEST(ClientHelloTest, ReadsTheNameAndProtocolsOfRealClients) {
  for (uint16_t version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version);
    const std::string hello =
        RealClientHello("Reviews.Shop.svc.cluster.local", {"h2", "http/1.1"}, version);
    const ClientHello parsed = ParseClientHello(hello);
    ASSERT_EQ(parsed.status, Status::kOk) << parsed.error;
    EXPECT_EQ(parsed.server_name, "reviews.shop.svc.cluster.local");  // lower-cased
    EXPECT_EQ(parsed.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
    EXPECT_EQ(parsed.consumed, hello.size());
  }
  const ClientHello bare = ParseClientHello(RealClientHello(nullptr, {}));
  ASSERT_EQ(bare.status, Status::kOk) << bare.error;
  EXPECT_EQ(bare.server_name, "");
  EXPECT_TRUE(bare.alpn.empty());
}

// Every prefix asks for more; the bytes after the hello (the client's next flight) are not
// counted as the hello's.
TEST(ClientHelloTest, APrefixNeedsMoreBytesAndTrailingBytesAreLeft) {
  const std::string hello = RealClientHello("api.partner.example", {"h2"});
  for (size_t n = 0; n < hello.size(); ++n) {
    ASSERT_EQ(ParseClientHello(hello.substr(0, n)).status, Status::kNeedMoreBytes) << n;
  }
  const ClientHello parsed = ParseClientHello(hello + std::string("\x17\x03\x03\x00\x01x", 6));
  ASSERT_EQ(parsed.status, Status::kOk);
  EXPECT_EQ(parsed.consumed, hello.size());
}

TEST(ClientHelloTest, AHelloSplitOverRecordsIsReassembled) {
  const std::string hello = RealClientHello("split.example", {"http/1.1"});
  for (size_t chunk : {1u, 7u, 100u}) {
    const std::string records = SplitRecords(hello, chunk);
    const ClientHello parsed = ParseClientHello(records);
    ASSERT_EQ(parsed.status, Status::kOk) << chunk << " " << parsed.error;
    EXPECT_EQ(parsed.server_name, "split.example");
    EXPECT_EQ(parsed.consumed, records.size());
    EXPECT_EQ(ParseClientHello(records.substr(0, records.size() - 1)).status,
              Status::kNeedMoreBytes);
  }
}

TEST(ClientHelloTest, OtherProtocolsAreNotTls) {
  EXPECT_EQ(ParseClientHello("GET / HTTP/1.1\r\n\r\n").status, Status::kNotTls);
  EXPECT_EQ(ParseClientHello("PRI * HTTP/2.0\r\n").status, Status::kNotTls);
  EXPECT_EQ(ParseClientHello("G").status, Status::kNotTls);
  // A TLS alert record, and a handshake record with another message (a ServerHello).
  EXPECT_EQ(ParseClientHello(std::string("\x15\x03\x03\x00\x02\x02\x28", 7)).status,
            Status::kNotTls);
  EXPECT_EQ(ParseClientHello(std::string("\x16\x03\x03\x00\x04\x02\x00\x00\x00", 9)).status,
            Status::kNotTls);
}

TEST(ClientHelloTest, MalformedAndOversizedHellosAreRefused) {
  const std::string hello = RealClientHello("ok.example", {});
  using testing::HandMadeClientHello;
  using testing::SniExtension;
  ASSERT_EQ(ParseClientHello(HandMadeClientHello(SniExtension("ok.example"))).status, Status::kOk);
  // The name must be a DNS name: not an IP literal, no trailing dot, no empty label, no other
  // byte, at most 63 bytes a label.
  for (const std::string& name :
       {std::string("10.0.0.1"), std::string("::1"), std::string("bad..example"),
        std::string("white space.example"), std::string("a.example."), std::string(".example"),
        std::string(64, 'a') + ".example", std::string("nul\0.example", 12), std::string("")}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(ParseClientHello(HandMadeClientHello(SniExtension(name))).status, Status::kInvalid);
  }
  // Two server_name extensions.
  EXPECT_EQ(
      ParseClientHello(HandMadeClientHello(SniExtension("a.example") + SniExtension("b.example")))
          .status,
      Status::kInvalid);
  // An extension that runs past the block.
  EXPECT_EQ(ParseClientHello(HandMadeClientHello(std::string("\x00\x00\x00\x09"
                                                             "ab",
                                                             6)))
                .status,
            Status::kInvalid);
  // A handshake length longer than its limit.
  const ClientHello large = ParseClientHello(hello, ClientHelloLimits{.max_bytes = 64});
  EXPECT_EQ(large.status, Status::kTooLarge);
  EXPECT_NE(large.error.find("exceeds the limit of 64"), std::string::npos) << large.error;
  // Lengths that do not add up: the extensions' length one byte too long (the message's length
  // grown to match keeps it a complete record).
  std::string broken = hello;
  broken[3] = static_cast<char>((hello.size() - 5 + 1) >> 8);
  broken[4] = static_cast<char>((hello.size() - 5 + 1) & 0xff);
  broken[6] = static_cast<char>(((hello.size() - 9 + 1) >> 16) & 0xff);
  broken[7] = static_cast<char>(((hello.size() - 9 + 1) >> 8) & 0xff);
  broken[8] = static_cast<char>((hello.size() - 9 + 1) & 0xff);
  broken += '\0';
  EXPECT_EQ(ParseClientHello(broken).status, Status::kInvalid);
  // A record of zero length.
  EXPECT_EQ(ParseClientHello(std::string("\x16\x03\x01\x00\x00", 5)).status, Status::kInvalid);
  EXPECT_EQ(ClientHelloStatusName(Status::kTooLarge), "too_large");
}

}  // namespace
}  // namespace meshlet::tls
