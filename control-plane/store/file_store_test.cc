#include "control-plane/store/file_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshlet::controlplane {
namespace {

namespace fs = std::filesystem;

class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshlet-store-XXXXXX";
    const char* base = std::getenv("TEST_TMPDIR");
    std::string pattern = base ? absl::StrCat(base, "/store-XXXXXX") : tmpl;
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    ASSERT_NE(mkdtemp(buf.data()), nullptr);
    dir_ = buf.data();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<FileStore> OpenStore() {
    auto store = FileStore::Open(dir_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::string dir_;
};

const ResourceKey kRoute{"HTTPRoute", "default", "reviews"};

TEST_F(FileStoreTest, CreateGetReplaceDelete) {
  auto store = OpenStore();
  EXPECT_EQ(store->Revision(), 0);
  EXPECT_EQ(store->Get(kRoute).status().code(), absl::StatusCode::kNotFound);

  auto r1 = store->Put(kRoute, R"({"v":1})", kMustNotExist);
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(*r1, 1);
  EXPECT_EQ(store->Put(kRoute, "{}", kMustNotExist).status().code(),
            absl::StatusCode::kAlreadyExists);

  auto r2 = store->Put(kRoute, R"({"v":2})", *r1);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(*r2, 2);
  auto got = store->Get(kRoute);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->body, R"({"v":2})");
  EXPECT_EQ(got->revision, 2);
  EXPECT_EQ(got->create_revision, 1);

  auto d = store->Delete(kRoute, 2);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, 3);
  EXPECT_EQ(store->Get(kRoute).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Delete(kRoute, kAnyRevision).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(FileStoreTest, OneReplicaOnlySoNoLeasedKeys) {
  auto store = OpenStore();
  Store& as_store = *store;
  EXPECT_EQ(as_store.leased_keys(), nullptr);
}

TEST_F(FileStoreTest, StaleResourceVersionIsRefusedAndNamesBothVersions) {
  auto store = OpenStore();
  ASSERT_TRUE(store->Put(kRoute, "a", kMustNotExist).ok());
  ASSERT_TRUE(store->Put(kRoute, "b", kAnyRevision).ok());
  auto stale = store->Put(kRoute, "c", 1);
  ASSERT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.status().message().find("resourceVersion 1 is stale; current is 2"),
            std::string::npos);
  EXPECT_EQ(store->Delete(kRoute, 1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Get(kRoute)->body, "b");
}

TEST_F(FileStoreTest, ListFiltersByKindAndNamespaceInKeyOrder) {
  auto store = OpenStore();
  ASSERT_TRUE(store->Put({"Service", "shop", "cart"}, "1", kAnyRevision).ok());
  ASSERT_TRUE(store->Put({"Service", "default", "b"}, "2", kAnyRevision).ok());
  ASSERT_TRUE(store->Put({"Service", "default", "a"}, "3", kAnyRevision).ok());
  ASSERT_TRUE(store->Put({"MeshConfig", "", "mesh"}, "4", kAnyRevision).ok());
  auto services = store->List("Service", "");
  ASSERT_TRUE(services.ok());
  ASSERT_EQ(services->size(), 3u);
  EXPECT_EQ((*services)[0].key.name, "a");
  EXPECT_EQ((*services)[2].key.namespace_, "shop");
  EXPECT_EQ(store->List("Service", "default")->size(), 2u);
  EXPECT_EQ(store->List("", "")->size(), 4u);
}

TEST_F(FileStoreTest, InvalidKeysAreRefusedWithTheReason) {
  auto store = OpenStore();
  auto bad = store->Put({"HTTPRoute", "default", "../etc"}, "x", kAnyRevision);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("metadata.name \"../etc\""), std::string::npos);
  EXPECT_FALSE(store->Put({"HTTPRoute", "Default", "a"}, "x", kAnyRevision).ok());
  EXPECT_FALSE(store->Put({"HTTP-Route", "default", "a"}, "x", kAnyRevision).ok());
  EXPECT_FALSE(store->Put({"HTTPRoute", "default", ""}, "x", kAnyRevision).ok());
  EXPECT_FALSE(store->Put({"HTTPRoute", "default", "a/b"}, "x", kAnyRevision).ok());
  EXPECT_TRUE(store->Put({"HTTPRoute", "default", "v1.reviews-2"}, "x", kAnyRevision).ok());
}

TEST_F(FileStoreTest, SurvivesReopenAndNeverReusesRevisions) {
  {
    auto store = OpenStore();
    ASSERT_TRUE(store->Put(kRoute, "one", kAnyRevision).ok());
    ASSERT_TRUE(store->Put({"Service", "default", "x"}, "two", kAnyRevision).ok());
    ASSERT_TRUE(store->Delete({"Service", "default", "x"}, kAnyRevision).ok());  // revision 3
  }
  auto store = OpenStore();
  EXPECT_EQ(store->Revision(), 3);
  EXPECT_EQ(store->Get(kRoute)->body, "one");
  EXPECT_EQ(store->Get(kRoute)->revision, 1);
  EXPECT_EQ(*store->Put(kRoute, "three", kAnyRevision), 4);
}

// A put makes one file durable (two syncs), not also <dir>/revision: the file's header carries the
// revision, and a reopened store continues after the highest one.
TEST_F(FileStoreTest, APutWritesOnlyItsOwnFile) {
  const std::string revision_file = absl::StrCat(dir_, "/revision");
  {
    auto store = OpenStore();
    ASSERT_TRUE(store->Put(kRoute, "one", kMustNotExist).ok());
    ASSERT_TRUE(store->Put({"Service", "default", "x"}, "two", kAnyRevision).ok());
    ASSERT_TRUE(store->Put(kRoute, "three", kAnyRevision).ok());  // revision 3
    EXPECT_FALSE(fs::exists(revision_file));
  }
  {
    auto store = OpenStore();
    EXPECT_EQ(store->Revision(), 3);
    EXPECT_EQ(*store->Put({"Service", "default", "x"}, "four", kAnyRevision), 4);
    // A delete leaves no file to carry its revision: it is recorded.
    ASSERT_TRUE(store->Delete({"Service", "default", "x"}, kAnyRevision).ok());  // revision 5
    EXPECT_TRUE(fs::exists(revision_file));
  }
  auto store = OpenStore();
  EXPECT_EQ(store->Revision(), 5);
  EXPECT_EQ(*store->Put(kRoute, "six", kAnyRevision), 6);
}

TEST_F(FileStoreTest, WatchSeesPutsAndDeletesUntilHandleDropped) {
  auto store = OpenStore();
  std::vector<WatchEvent> events;
  auto handle = store->Watch([&](const WatchEvent& e) { events.push_back(e); });
  ASSERT_TRUE(store->Put(kRoute, "a", kAnyRevision).ok());
  ASSERT_TRUE(store->Delete(kRoute, kAnyRevision).ok());
  handle.reset();
  ASSERT_TRUE(store->Put(kRoute, "b", kAnyRevision).ok());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(events[0].resource.body, "a");
  EXPECT_EQ(events[1].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(events[1].resource.revision, 2);
}

TEST_F(FileStoreTest, LeftoverTempFilesAreIgnoredAndDamagedFilesReported) {
  {
    auto store = OpenStore();
    ASSERT_TRUE(store->Put(kRoute, "good", kAnyRevision).ok());
  }
  const std::string file = dir_ + "/resources/HTTPRoute/default/reviews";
  std::ofstream(file + ".tmp") << "half-writ";
  {
    auto store = OpenStore();
    EXPECT_EQ(store->Get(kRoute)->body, "good");
    EXPECT_FALSE(fs::exists(file + ".tmp"));
  }
  std::ofstream(file) << "garbage";
  auto damaged = FileStore::Open(dir_);
  ASSERT_EQ(damaged.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(damaged.status().message().find(file), std::string::npos);
}

// A writer process is killed with SIGKILL at arbitrary points, many times. After each kill the
// store opens, every resource is whole (its body names its own revision), and revisions only grow.
TEST_F(FileStoreTest, KillNineAtAnyMomentNeverCorrupts) {
  int64_t last_revision = 0;
  for (int round = 0; round < 20; ++round) {
    // The writer reports each finished write on a pipe, so every round kills it only after it
    // made progress however slow the disk or the machine is, then at an arbitrary moment.
    int progress[2];
    ASSERT_EQ(pipe(progress), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(progress[0]);
      auto store = FileStore::Open(dir_);
      if (!store.ok()) _exit(2);
      for (int i = 0;; ++i) {
        ResourceKey key{"Service", "default", absl::StrCat("svc-", i % 7)};
        int64_t next = (*store)->Revision() + 1;
        std::string body =
            absl::StrCat(next, ":", std::string(static_cast<size_t>(100 + i % 5000), 'x'));
        if (i % 11 == 10) {
          (void)(*store)->Delete(key, kAnyRevision);
        } else if (!(*store)->Put(key, body, kAnyRevision).ok()) {
          _exit(3);
        }
        const char done = 1;
        (void)!write(progress[1], &done, 1);
      }
    }
    close(progress[1]);
    for (int writes = 0; writes < 2;) {
      char done;
      ASSERT_EQ(read(progress[0], &done, 1), 1) << "writer died";
      ++writes;
    }
    usleep(static_cast<useconds_t>(2000 + (round * 7919) % 20000));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(progress[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited early with " << WEXITSTATUS(status);

    auto store = FileStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_GE((*store)->Revision(), last_revision);
    last_revision = (*store)->Revision();
    auto all = (*store)->List("", "");
    ASSERT_TRUE(all.ok());
    for (const StoredResource& r : *all) {
      size_t colon = r.body.find(':');
      ASSERT_NE(colon, std::string::npos) << r.key.ToString();
      int64_t body_revision = 0;
      ASSERT_TRUE(absl::SimpleAtoi(r.body.substr(0, colon), &body_revision));
      EXPECT_EQ(body_revision, r.revision) << r.key.ToString();
      EXPECT_LE(r.revision, last_revision);
      EXPECT_EQ(r.body.find_first_not_of('x', colon + 1), std::string::npos);
    }
  }
  EXPECT_GT(last_revision, 20);
}

}  // namespace
}  // namespace meshlet::controlplane
