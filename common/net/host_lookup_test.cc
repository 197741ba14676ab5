#include "common/net/host_lookup.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "common/event/loop.h"

namespace meshlet::net {
namespace {

using Result = absl::StatusOr<std::vector<Address>>;

TEST(HostLookupTest, IpLiteralAnsweredOnALaterTurn) {
  event::Loop loop;
  std::optional<Result> got;
  auto lookup = HostLookup::Start(loop, "127.0.0.7", 8443, [&](Result r) { got = std::move(r); });
  EXPECT_FALSE(got.has_value());  // never from inside Start()
  ASSERT_TRUE(loop.RunUntil([&] { return got.has_value(); }, std::chrono::seconds(5)));
  ASSERT_TRUE(got->ok()) << got->status();
  ASSERT_EQ((*got)->size(), 1u);
  EXPECT_EQ((*got)->front().ToString(), "127.0.0.7:8443");
}

TEST(HostLookupTest, NameFromTheHostsFile) {
  // localhost is in /etc/hosts: no query leaves the machine.
  event::Loop loop;
  std::optional<Result> got;
  auto lookup = HostLookup::Start(loop, "localhost", 443, [&](Result r) { got = std::move(r); });
  ASSERT_TRUE(loop.RunUntil([&] { return got.has_value(); }, std::chrono::seconds(10)));
  ASSERT_TRUE(got->ok()) << got->status();
  bool loopback = false;
  for (const Address& a : **got) {
    EXPECT_EQ(a.port(), 443);
    loopback |= a.ip() == "127.0.0.1" || a.ip() == "::1";
  }
  EXPECT_TRUE(loopback);
}

TEST(HostLookupTest, NoAddressIsAnError) {
  event::Loop loop;
  std::optional<Result> got;
  // An empty name fails in the resolver itself.
  auto lookup = HostLookup::Start(loop, "", 443, [&](Result r) { got = std::move(r); });
  ASSERT_TRUE(loop.RunUntil([&] { return got.has_value(); }, std::chrono::seconds(10)));
  ASSERT_FALSE(got->ok());
  EXPECT_EQ(got->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(got->status().message().find("cannot resolve \"\""), std::string::npos)
      << got->status();
}

TEST(HostLookupTest, DestroyedLookupNeverAnswers) {
  event::Loop loop;
  int calls = 0;
  for (int i = 0; i < 8; ++i) {
    auto lookup = HostLookup::Start(loop, "localhost", 80, [&](Result) { ++calls; });
    lookup.reset();
  }
  auto literal = HostLookup::Start(loop, "::1", 80, [&](Result) { ++calls; });
  literal.reset();
  // The pool's work (finished or cancelled) comes back and is dropped.
  loop.RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_EQ(calls, 0);
}

TEST(HostLookupTest, DestroyedFromItsOwnCallback) {
  event::Loop loop;
  std::unique_ptr<HostLookup> lookup;
  bool called = false;
  lookup = HostLookup::Start(loop, "localhost", 80, [&](Result) {
    called = true;
    lookup.reset();
  });
  ASSERT_TRUE(loop.RunUntil([&] { return called; }, std::chrono::seconds(10)));
  EXPECT_EQ(lookup, nullptr);
}

}  // namespace
}  // namespace meshlet::net
