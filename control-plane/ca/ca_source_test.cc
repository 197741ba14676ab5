#include "control-plane/ca/ca_source.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/tls/certificate.h"
#include "common/tls/test_certificates.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::ca {
namespace {

using tls::testing::TestCa;
using tls::testing::ValueOrDie;

std::string SecretJson(const std::vector<std::pair<std::string, std::string>>& data) {
  std::string out = R"({"kind":"Secret","metadata":{"name":"ca","namespace":"meshlet-system",)"
                    R"("resourceVersion":"7"},"data":{)";
  for (size_t i = 0; i < data.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", "\"", data[i].first, "\":\"",
                    absl::Base64Escape(data[i].second), "\"");
  }
  return out + "}}";
}

TEST(MaterialFromSecretTest, ReadsTheTlsLayoutOfCertManager) {
  auto material = MaterialFromSecret(
      SecretJson({{"tls.crt", "CHAIN"}, {"tls.key", "KEY"}, {"ca.crt", "ROOTS"}}),
      SecretLayout::kAuto);
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->chain_pem, "CHAIN");
  EXPECT_EQ(material->key_pem, "KEY");
  EXPECT_EQ(material->roots_pem, "ROOTS");
  // ca.crt is optional (a chain ending in its root).
  material = MaterialFromSecret(SecretJson({{"tls.crt", "CHAIN"}, {"tls.key", "KEY"}}),
                                SecretLayout::kTls);
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->roots_pem, "");
}

TEST(MaterialFromSecretTest, ReadsIstiosCacertsLayout) {
  const auto data =
      std::vector<std::pair<std::string, std::string>>{{"ca-cert.pem", "CERT"},
                                                       {"ca-key.pem", "KEY"},
                                                       {"cert-chain.pem", "CERT+CHAIN"},
                                                       {"root-cert.pem", "ROOT"}};
  auto material = MaterialFromSecret(SecretJson(data), SecretLayout::kAuto);
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->chain_pem, "CERT+CHAIN");
  EXPECT_EQ(material->key_pem, "KEY");
  EXPECT_EQ(material->roots_pem, "ROOT");
  // Without cert-chain.pem, ca-cert.pem is the chain.
  material = MaterialFromSecret(
      SecretJson({{"ca-cert.pem", "CERT"}, {"ca-key.pem", "KEY"}, {"root-cert.pem", "ROOT"}}),
      SecretLayout::kCacerts);
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->chain_pem, "CERT");
}

TEST(MaterialFromSecretTest, NamesWhatIsMissing) {
  auto none = MaterialFromSecret(SecretJson({{"password", "x"}}), SecretLayout::kAuto);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("its keys: password"), std::string::npos) << none.status();
  auto no_cert = MaterialFromSecret(SecretJson({{"tls.key", "KEY"}}), SecretLayout::kAuto);
  ASSERT_FALSE(no_cert.ok());
  EXPECT_NE(no_cert.status().message().find("data.tls.crt"), std::string::npos) << no_cert.status();
  auto no_root = MaterialFromSecret(SecretJson({{"ca-cert.pem", "C"}, {"ca-key.pem", "K"}}),
                                    SecretLayout::kAuto);
  ASSERT_FALSE(no_root.ok());
  EXPECT_NE(no_root.status().message().find("data.root-cert.pem"), std::string::npos);
  EXPECT_FALSE(MaterialFromSecret("not json {", SecretLayout::kAuto).ok());
  EXPECT_FALSE(ParseSecretLayout("pem").ok());
  EXPECT_TRUE(ParseSecretRef("meshlet-system/meshlet-ca").ok());
  EXPECT_FALSE(ParseSecretRef("meshlet-ca").ok());
  EXPECT_FALSE(ParseSecretRef("a/b/c").ok());
}

// Writes `content` to `path` as a new file renamed over the old one (what kubectl cp, an
// atomic writer and a mounted Secret's symlink swap look like to a reader).
void WriteByRename(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << content;
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
}

class FileSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::getenv("TEST_TMPDIR");
    chain_ = dir_ + "/ca-chain.pem";
    key_ = dir_ + "/ca-key.pem";
    roots_ = dir_ + "/roots.pem";
    WriteByRename(chain_, first_.cert_pem());
    WriteByRename(key_, first_.key_pem());
    WriteByRename(roots_, root_.cert_pem());
    source_ = std::make_unique<CaSource>(
        loop_, RealClock::Get(), nullptr,
        CaSourceOptions{.chain_file = chain_,
                        .key_file = key_,
                        .trust_bundle_file = roots_,
                        .interval = std::chrono::milliseconds(20)},
        [this](std::shared_ptr<const CertificateAuthority> authority, const std::string&) {
          switched_.push_back(tls::SubjectName(authority->signing_certificate()));
        },
        [this](bool unreadable, const absl::Status& reason) {
          refused_.push_back(
              absl::StrCat(unreadable ? "unreadable: " : "invalid: ", reason.message()));
        });
  }

  // Runs the loop for `polls` poll intervals.
  void RunPolls(int polls) {
    loop_.RunUntil([] { return false; }, std::chrono::milliseconds(20 * polls));
  }
  // Runs the loop until `done` (a loaded machine may delay the polls), at most 10 s.
  bool RunUntil(const std::function<bool()>& done) {
    return loop_.RunUntil(done, std::chrono::seconds(10));
  }

  event::Loop loop_;
  TestCa root_ = ValueOrDie(TestCa::Create("root"));
  TestCa first_ = ValueOrDie(root_.CreateIntermediate("first"));
  TestCa second_ = ValueOrDie(root_.CreateIntermediate("second"));
  std::string dir_, chain_, key_, roots_;
  std::unique_ptr<CaSource> source_;
  std::vector<std::string> switched_;
  std::vector<std::string> refused_;
};

TEST_F(FileSourceTest, SwitchesOnlyToAWholeValidPair) {
  std::string description;
  auto initial = source_->LoadInitial(&description);
  ASSERT_TRUE(initial.ok()) << initial.status();
  EXPECT_EQ(tls::SubjectName((*initial)->signing_certificate()), "CN=first,O=meshlet test");
  source_->Start();
  RunPolls(5);
  EXPECT_TRUE(switched_.empty());  // nothing changed
  EXPECT_TRUE(refused_.empty());

  // The certificate alone, replaced: its key does not match the old key, so it is refused and
  // "first" stays in use.
  WriteByRename(chain_, second_.cert_pem());
  ASSERT_TRUE(RunUntil([&] { return !refused_.empty(); }));
  RunPolls(3);
  EXPECT_TRUE(switched_.empty());
  ASSERT_EQ(refused_.size(), 1u) << ::testing::PrintToString(refused_);
  EXPECT_NE(refused_[0].find("invalid: "), std::string::npos) << refused_[0];
  EXPECT_NE(refused_[0].find("CA key"), std::string::npos) << refused_[0];

  // Then its key: the pair is taken.
  WriteByRename(key_, second_.key_pem());
  ASSERT_TRUE(RunUntil([&] { return !switched_.empty(); })) << ::testing::PrintToString(refused_);
  ASSERT_EQ(switched_.size(), 1u);
  EXPECT_EQ(switched_[0], "CN=second,O=meshlet test");

  // Both files replaced within one poll: taken at once, with no refusal in between.
  refused_.clear();
  WriteByRename(chain_, first_.cert_pem());
  WriteByRename(key_, first_.key_pem());
  ASSERT_TRUE(RunUntil([&] { return switched_.size() == 2; }));
  EXPECT_EQ(switched_[1], "CN=first,O=meshlet test");
  EXPECT_TRUE(refused_.empty()) << ::testing::PrintToString(refused_);

  // A chain under a root the bundle does not list: refused once, not at every poll.
  TestCa stranger = ValueOrDie(ValueOrDie(TestCa::Create("stranger")).CreateIntermediate("s"));
  WriteByRename(chain_, stranger.cert_pem());
  WriteByRename(key_, stranger.key_pem());
  ASSERT_TRUE(RunUntil([&] { return !refused_.empty(); }));
  RunPolls(10);
  ASSERT_EQ(refused_.size(), 1u) << ::testing::PrintToString(refused_);
  EXPECT_NE(refused_[0].find("does not verify up to a root"), std::string::npos) << refused_[0];
  EXPECT_EQ(switched_.size(), 2u);

  // A missing file is unreadable, and the CA in use stays.
  ASSERT_EQ(std::remove(key_.c_str()), 0);
  ASSERT_TRUE(RunUntil([&] { return refused_.size() >= 2; }));
  EXPECT_NE(refused_.back().find("unreadable: "), std::string::npos) << refused_.back();
  EXPECT_EQ(switched_.size(), 2u);
}

}  // namespace
}  // namespace meshlet::controlplane::ca
