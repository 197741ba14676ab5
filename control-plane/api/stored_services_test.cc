#include "control-plane/api/stored_services.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "control-plane/store/file_store.h"

namespace meshlet::controlplane::api {
namespace {

std::string ServiceJson(absl::string_view name, int port) {
  return absl::StrCat(R"({"apiVersion":"meshlet.io/v1","kind":"Service","metadata":{"name":")",
                      name, R"(","namespace":"default"},"spec":{"ports":[{"name":"http","port":)",
                      port, "}]}}");
}

class StoredServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("stored_services_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto store = FileStore::Open(dir_.string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  int64_t Put(absl::string_view name, const std::string& body, int64_t expected) {
    absl::StatusOr<int64_t> revision =
        store_->Put(ResourceKey{"Service", "default", std::string(name)}, body, expected);
    EXPECT_TRUE(revision.ok()) << revision.status();
    return revision.value_or(0);
  }

  // name:port of each Service Current() gives.
  std::vector<std::string> Current() {
    std::vector<std::string> out;
    for (const auto& s : services_.Current(*store_).services) {
      out.push_back(absl::StrCat(s.metadata().name(), ":",
                                 s.spec().ports_size() > 0 ? s.spec().ports(0).port() : 0));
    }
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<FileStore> store_;
  StoredServices services_;
};

TEST_F(StoredServicesTest, FollowsWritesAndDeletesBetweenCalls) {
  EXPECT_TRUE(Current().empty());
  const int64_t a = Put("a", ServiceJson("a", 80), kMustNotExist);
  Put("b", ServiceJson("b", 81), kMustNotExist);
  EXPECT_EQ(Current(), (std::vector<std::string>{"a:80", "b:81"}));
  EXPECT_EQ(Current(), (std::vector<std::string>{"a:80", "b:81"}));  // unchanged: as it was

  // A rewrite of one Service (a new revision) is read again; the other is kept.
  Put("a", ServiceJson("a", 8080), a);
  EXPECT_EQ(Current(), (std::vector<std::string>{"a:8080", "b:81"}));

  const int64_t c = Put("c", ServiceJson("c", 82), kMustNotExist);
  EXPECT_EQ(Current(), (std::vector<std::string>{"a:8080", "b:81", "c:82"}));
  ASSERT_TRUE(store_->Delete(ResourceKey{"Service", "default", "b"}, kAnyRevision).ok());
  EXPECT_EQ(Current(), (std::vector<std::string>{"a:8080", "c:82"}));
  Put("c", ServiceJson("c", 9000), c);
  EXPECT_EQ(Current(), (std::vector<std::string>{"a:8080", "c:9000"}));
}

TEST_F(StoredServicesTest, AServiceThatDoesNotParseIsLeftOutUntilRewritten) {
  Put("a", ServiceJson("a", 80), kMustNotExist);
  const int64_t bad = Put("bad", R"({"spec":{"ports":"not a list"}})", kMustNotExist);
  EXPECT_EQ(Current(), (std::vector<std::string>{"a:80"}));
  EXPECT_EQ(Current(), (std::vector<std::string>{"a:80"}));
  Put("bad", ServiceJson("bad", 81), bad);
  EXPECT_EQ(Current(), (std::vector<std::string>{"a:80", "bad:81"}));
}

}  // namespace
}  // namespace meshlet::controlplane::api
