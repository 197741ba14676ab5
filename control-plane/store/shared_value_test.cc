#include "control-plane/store/shared_value.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "control-plane/store/file_store.h"

namespace meshlet::controlplane {
namespace {

class SharedValueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") +
           "/shared_value_test";
    std::filesystem::remove_all(dir_);
    auto store = FileStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
  std::unique_ptr<FileStore> store_;
};

TEST_F(SharedValueTest, TheFirstValueWinsAndEveryoneGetsIt) {
  int created = 0;
  auto make = [&](std::string v) {
    return [&created, v]() -> absl::StatusOr<std::string> {
      ++created;
      return v;
    };
  };
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, "api-token", make("first")), "first");
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, "api-token", make("second")), "first");
  EXPECT_EQ(created, 1);  // the second replica found it and created nothing
  // Another name is another value.
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, "ca-root", make("root")), "root");
  // A replica that lost the race (created, then found it taken) returns the winner's.
  ASSERT_TRUE(store_->Delete({kSharedValueKind, "", "ca-root"}, kAnyRevision).ok());
  auto racing = [&]() -> absl::StatusOr<std::string> {
    // The other replica stores its value while this one is creating.
    EXPECT_TRUE(store_->Put({kSharedValueKind, "", "ca-root"}, "winner", kMustNotExist).ok());
    return std::string("loser");
  };
  EXPECT_EQ(*LoadOrCreateSharedValue(*store_, "ca-root", racing), "winner");
}

TEST_F(SharedValueTest, ACreationErrorIsReturnedAndNothingStored) {
  absl::StatusOr<std::string> failed =
      LoadOrCreateSharedValue(*store_, "ca-root", [] { return absl::InternalError("no entropy"); });
  EXPECT_EQ(failed.status().message(), "no entropy");
  EXPECT_TRUE(absl::IsNotFound(store_->Get({kSharedValueKind, "", "ca-root"}).status()));
}

}  // namespace
}  // namespace meshlet::controlplane
