#include "control-plane/ca/pkcs11_signer.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace meshlet::controlplane::ca {
namespace {

std::string WriteTemp(const std::string& name, const std::string& content) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << content;
  return path;
}

TEST(Pkcs11SignerTest, MissingModuleIsNamed) {
  Pkcs11SignerOptions o;
  o.module_path = "/nonexistent/libno-such-pkcs11.so";
  o.token_label = "meshlet-ca";
  o.key_label = "ca";
  o.pin_file = WriteTemp("pin", "1234\n");
  auto signer = NewPkcs11Signer(o);
  ASSERT_EQ(signer.status().code(), absl::StatusCode::kNotFound) << signer.status();
  EXPECT_NE(signer.status().message().find("PKCS#11 module /nonexistent/libno-such-pkcs11.so not found"),
            absl::string_view::npos)
      << signer.status();
}

TEST(Pkcs11SignerTest, PinFileProblemsAreClearAndNeverEchoThePin) {
  Pkcs11SignerOptions o;
  o.module_path = "/nonexistent/libno-such-pkcs11.so";
  o.pin_file = "/nonexistent/pin";
  EXPECT_EQ(NewPkcs11Signer(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.pin_file = WriteTemp("empty-pin", "\n");
  EXPECT_EQ(NewPkcs11Signer(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.max_pin_bytes = 4;
  o.pin_file = WriteTemp("long-pin", "secret-pin-123\n");
  auto too_long = NewPkcs11Signer(o);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(too_long.status().message().find("secret-pin-123"), absl::string_view::npos);
}

}  // namespace
}  // namespace meshlet::controlplane::ca
