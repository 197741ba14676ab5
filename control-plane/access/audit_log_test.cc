#include "control-plane/access/audit_log.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/fake_clock.h"
#include "common/stats/stats.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::access {
namespace {

// The value of the counter `name` in `stats` (0 when absent).
uint64_t Counted(const StatsRegistry& stats, absl::string_view name) {
  const StatsSnapshot snapshot = stats.Snapshot();
  const SeriesSnapshot* series = snapshot.Find(name);
  return series == nullptr ? 0 : series->counter;
}

std::string TempPath(absl::string_view name) {
  return absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return absl::StrSplit(text.str(), '\n', absl::SkipEmpty());
}

http::ServerRequest Request(absl::string_view method, absl::string_view path) {
  http::ServerRequest request;
  request.headers.Add(":method", method);
  request.headers.Add(":path", path);
  request.peer = *net::Address::Parse("10.0.0.7:51234");
  return request;
}

TEST(AuditLogTest, AWriteIsOneJsonLineSayingWhoWhatWhenAndHowItEnded) {
  const std::string path = TempPath("audit-one.log");
  FakeClock clock;
  StatsRegistry stats;
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(path, clock, &stats);
  ASSERT_TRUE(log.ok()) << log.status();
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const Principal alice{.name = "alice", .credential = "operator-token", .role = Role::kEditor};
  http::ServerResponse updated =
      http::ServerResponse::Json(200, R"({"kind":"HTTPRoute","metadata":{"name":"r"}})");
  updated.headers.Add("x-meshlet-result", "updated");
  (*log)->Record(Request("PUT", "/apis/meshlet.io/v1/namespaces/shop/httproutes/r?dryRun=All"),
                 &alice, updated);
  http::ServerResponse created = http::ServerResponse::Json(
      201, R"({"kind":"JoinToken","token":"mjt1.abc.SECRET","id":"abc"})");
  (*log)->Record(Request("POST", "/api/v1/tokens"), &alice, created);
  http::ServerResponse refused = http::ServerResponse::Json(
      401, R"({"kind":"Status","code":401,"message":"wrong bearer token"})");
  (*log)->Record(Request("DELETE", "/api/v1/operator-tokens/bob"), nullptr, refused);

  std::vector<std::string> lines = Lines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0],
            R"({"time":"2026-01-01T00:16:40.000000Z","principal":"alice",)"
            R"("credential":"operator-token","role":"editor","method":"PUT",)"
            R"("path":"/apis/meshlet.io/v1/namespaces/shop/httproutes/r",)"
            R"("object":{"resource":"httproutes","namespace":"shop","name":"r"},"dryRun":true,)"
            R"("status":200,"result":"updated","peer":"10.0.0.7:51234"})");
  // A create is named from the answer; the secret in it is not written.
  EXPECT_TRUE(
      absl::StrContains(lines[1], R"("object":{"resource":"tokens","namespace":"","name":"abc"})"))
      << lines[1];
  EXPECT_FALSE(absl::StrContains(lines[1], "SECRET")) << lines[1];
  EXPECT_TRUE(
      absl::StrContains(lines[2], R"("principal":"","credential":"","role":"","method":"DELETE")"))
      << lines[2];
  EXPECT_TRUE(
      absl::StrContains(lines[2], R"("status":401,"result":"error","error":"wrong bearer token")"))
      << lines[2];
  EXPECT_TRUE(AuditLog::Records(Request("POST", "/x")));
  EXPECT_FALSE(AuditLog::Records(Request("GET", "/x")));
  EXPECT_FALSE(AuditLog::Records(Request("HEAD", "/x")));
  EXPECT_EQ(Counted(stats, "meshlet_cp_api_audit_records_total"), 3u);
}

TEST(AuditLogTest, AnExistingFileIsAppendedToAndMadePrivate) {
  const std::string path = TempPath("audit-existing.log");
  { std::ofstream(path) << "{\"earlier\":true}\n"; }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  FakeClock clock;
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(path, clock, nullptr);
  ASSERT_TRUE(log.ok()) << log.status();
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  (*log)->Record(Request("POST", "/api/v1/operator-tokens"), nullptr,
                 http::ServerResponse::Text(403, "no"));
  std::vector<std::string> lines = Lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "{\"earlier\":true}");
  EXPECT_TRUE(absl::StrContains(lines[1], R"("status":403,"result":"error","error":"no")"))
      << lines[1];
  EXPECT_FALSE(AuditLog::Open(TempPath("no/such/dir/audit.log"), clock, nullptr).ok());
}

TEST(AuditLogTest, LinesFromSeveralThreadsStayWhole) {
  const std::string path = TempPath("audit-threads.log");
  FakeClock clock;
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(path, clock, nullptr);
  ASSERT_TRUE(log.ok()) << log.status();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        (*log)->Record(Request("PUT", "/apis/meshlet.io/v1/meshconfigs/mesh"), nullptr,
                       http::ServerResponse::Json(200, "{}"));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<std::string> lines = Lines(path);
  ASSERT_EQ(lines.size(), 800u);
  for (const std::string& line : lines) {
    ASSERT_TRUE(absl::StartsWith(line, "{\"time\":") && absl::EndsWith(line, "}")) << line;
  }
}

}  // namespace
}  // namespace meshlet::controlplane::access
