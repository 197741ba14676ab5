// Fuzz target for ParseClientHello (client_hello.h): any bytes as a connection's first bytes.
//
// Invariants: a kOk result consumed no more than the input and parses the same from exactly the
// bytes it consumed; its server name is lower-case DNS characters; a prefix of a kOk input is
// never kOk with more bytes consumed than the prefix holds.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_target.h"
#include "common/tls/client_hello.h"
#include "common/tls/client_hello_test_util.h"

namespace meshlet::tls {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "client_hello_fuzz invariant broken: %s\n", what);
  std::abort();
}

}  // namespace
}  // namespace meshlet::tls

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  using tls::testing::HandMadeClientHello;
  using tls::testing::SniExtension;
  return {HandMadeClientHello(""),
          HandMadeClientHello(SniExtension("reviews.shop.svc.cluster.local")),
          HandMadeClientHello(SniExtension("a.example") +
                              std::string("\x00\x10\x00\x05\x00\x03\x02h2", 9)),
          "GET / HTTP/1.1\r\n\r\n"};
}

std::vector<std::string> Dictionary() {
  return {std::string("\x16\x03\x01", 3),
          std::string("\x16\x03\x03", 3),
          std::string("\x00\x00", 2),
          std::string("\x00\x10", 2),
          "h2",
          "http/1.1",
          ".example"};
}

}  // namespace meshlet::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using meshlet::tls::ClientHello;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  const ClientHello parsed = meshlet::tls::ParseClientHello(bytes);
  if (parsed.status != ClientHello::Status::kOk) return 0;
  if (parsed.consumed == 0 || parsed.consumed > size) meshlet::tls::Die("consumed out of range");
  const ClientHello again = meshlet::tls::ParseClientHello(bytes.substr(0, parsed.consumed));
  if (again.status != ClientHello::Status::kOk || again.server_name != parsed.server_name ||
      again.alpn != parsed.alpn || again.consumed != parsed.consumed) {
    meshlet::tls::Die("the consumed bytes parse differently");
  }
  for (char c : parsed.server_name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_' || c == '.')) {
      meshlet::tls::Die("server name has a byte a DNS name does not");
    }
  }
  if (parsed.consumed > 1 &&
      meshlet::tls::ParseClientHello(bytes.substr(0, parsed.consumed - 1)).status ==
          ClientHello::Status::kOk) {
    meshlet::tls::Die("a shorter prefix parsed as a whole hello");
  }
  return 0;
}
