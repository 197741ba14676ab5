// EtcdStore against a real etcd (Debian's etcd-server) started on loopback by the test. Without
// the etcd binary every test prints SKIP.

#include "control-plane/store/etcd_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/sync.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"

extern char** environ;

namespace meshlet::controlplane {
namespace {

constexpr char kEtcd[] = "/usr/bin/etcd";
constexpr char kEtcdctl[] = "/usr/bin/etcdctl";

uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Runs `args` with stdout and stderr appended to `log`. The child is killed when this process
// dies, so a crashed test leaves no etcd behind.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
  }
  ::execve(argv[0], argv.data(), environ);
  ::_exit(127);
}

// One etcd member on loopback, in a directory of its own; killed by the destructor.
class EtcdProcess {
 public:
  // `tls_flags` (--cert-file ...) make the client URL https.
  explicit EtcdProcess(std::string dir, std::vector<std::string> tls_flags = {})
      : dir_(std::move(dir)),
        tls_flags_(std::move(tls_flags)),
        client_port_(FreePort()),
        peer_port_(FreePort()) {}
  ~EtcdProcess() { Kill(); }

  bool Start() {
    const std::string peer = absl::StrCat("http://127.0.0.1:", peer_port_);
    const std::string client =
        absl::StrCat(tls_flags_.empty() ? "http" : "https", "://127.0.0.1:", client_port_);
    std::vector<std::string> args = {kEtcd,
                                     "--name",
                                     "m0",
                                     "--data-dir",
                                     dir_ + "/data",
                                     "--listen-client-urls",
                                     client,
                                     "--advertise-client-urls",
                                     client,
                                     "--listen-peer-urls",
                                     peer,
                                     "--initial-advertise-peer-urls",
                                     peer,
                                     "--initial-cluster",
                                     absl::StrCat("m0=", peer),
                                     "--log-level",
                                     "warn"};
    args.insert(args.end(), tls_flags_.begin(), tls_flags_.end());
    pid_ = Spawn(args, dir_ + "/etcd.log");
    return pid_ > 0;
  }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::string endpoint() const { return absl::StrCat("127.0.0.1:", client_port_); }
  // etcdctl (v3 API) against this member; its exit code.
  int Etcdctl(const std::vector<std::string>& args) const {
    std::vector<std::string> all = {kEtcdctl, "--endpoints", endpoint()};
    all.insert(all.end(), args.begin(), args.end());
    pid_t pid = Spawn(all, dir_ + "/etcdctl.log");
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  std::string dir_;
  std::vector<std::string> tls_flags_;
  uint16_t client_port_;
  uint16_t peer_port_;
  pid_t pid_ = -1;
};

// What a watch delivered, from the store's thread.
class Recorder {
 public:
  Store::WatchCallback Callback() {
    return [this](const WatchEvent& event) {
      MutexLock lock(&mu_);
      events_.push_back(absl::StrCat(event.type == WatchEvent::Type::kPut ? "put " : "delete ",
                                     event.resource.key.ToString(), " ", event.resource.body));
    };
  }
  // For leased keys: "put OWNER NAME VALUE" / "delete OWNER NAME".
  LeasedKeys::WatchCallback LeasedCallback() {
    return [this](const std::vector<LeasedKeyEvent>& events) {
      MutexLock lock(&mu_);
      for (const LeasedKeyEvent& e : events) {
        events_.push_back(e.type == LeasedKeyEvent::Type::kPut
                              ? absl::StrCat("put ", e.owner, " ", e.name, " ", e.value)
                              : absl::StrCat("delete ", e.owner, " ", e.name));
      }
    };
  }
  // Waits (up to `patience`) until `n` events arrived; returns them.
  std::vector<std::string> WaitFor(size_t n, Duration patience = std::chrono::seconds(10)) {
    for (auto end = std::chrono::steady_clock::now() + patience;
         std::chrono::steady_clock::now() < end;) {
      {
        MutexLock lock(&mu_);
        if (events_.size() >= n) return events_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    MutexLock lock(&mu_);
    return events_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> events_;
};

std::string Hex(int64_t lease) {
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(lease));
  return out;
}

class EtcdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // As the binaries do (control-plane/main.cc): a write to a connection etcd closed is an
    // error, not a signal that ends the process.
    ::signal(SIGPIPE, SIG_IGN);
    if (::access(kEtcd, X_OK) != 0) {
      std::printf("SKIP: %s is not installed (Debian package etcd-server)\n", kEtcd);
      GTEST_SKIP() << kEtcd << " is not installed";
    }
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/etcd_store_test_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    etcd_ = std::make_unique<EtcdProcess>(dir_);
    ASSERT_TRUE(etcd_->Start());
    // The first successful open says etcd is up.
    for (int i = 0; i < 100; ++i) {
      absl::StatusOr<std::unique_ptr<EtcdStore>> store = Open();
      if (store.ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "etcd did not come up; see " << dir_ << "/etcd.log";
  }

  void TearDown() override {
    etcd_.reset();  // kills the member
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  absl::StatusOr<std::unique_ptr<EtcdStore>> Open(
      Duration watch_retry = std::chrono::milliseconds(100),
      Duration lease_ttl = std::chrono::seconds(2)) {
    EtcdStoreOptions options;
    absl::StatusOr<std::vector<EtcdEndpoint>> endpoints =
        ParseEtcdUrl(absl::StrCat("etcd://", etcd_->endpoint()));
    if (!endpoints.ok()) return endpoints.status();
    options.endpoints = *endpoints;
    options.prefix = "/test/";
    options.request_timeout = std::chrono::seconds(2);
    options.watch_retry = watch_retry;
    options.lease_ttl = lease_ttl;
    return EtcdStore::Open(std::move(options));
  }

  std::string dir_;
  std::unique_ptr<EtcdProcess> etcd_;
};

const ResourceKey kReviews{"TrafficPolicy", "default", "reviews"};

TEST(EtcdUrlTest, ParsesEndpointsAndSaysWhatIsWrong) {
  absl::StatusOr<std::vector<EtcdEndpoint>> two =
      ParseEtcdUrl("etcd://127.0.0.1:2379,[::1]:2380,localhost:2381");
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(two->size(), 3u);
  EXPECT_EQ((*two)[0].address.ToString(), "127.0.0.1:2379");
  EXPECT_EQ((*two)[1].host, "::1");
  EXPECT_EQ((*two)[1].address.port(), 2380);
  EXPECT_EQ((*two)[2].host, "localhost");
  EXPECT_NE(ParseEtcdUrl("http://127.0.0.1:2379").status().message().find("etcd://host:port"),
            std::string::npos);
  EXPECT_NE(ParseEtcdUrl("etcd://127.0.0.1:2379,nope").status().message().find("\"nope\""),
            std::string::npos);
  EXPECT_FALSE(ParseEtcdUrl("etcd://127.0.0.1:0").ok());
  EXPECT_FALSE(ParseEtcdUrl("etcd://").ok());
}

TEST_F(EtcdStoreTest, CreateReadReplaceDeleteWithRevisions) {
  auto store = Open();
  ASSERT_TRUE(store.ok()) << store.status();
  EtcdStore& s = **store;
  EXPECT_TRUE(absl::IsNotFound(s.Get(kReviews).status()));

  absl::StatusOr<int64_t> created = s.Put(kReviews, R"({"a":1})", kMustNotExist);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_GE(s.Revision(), *created);
  absl::StatusOr<StoredResource> read = s.Get(kReviews);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->body, R"({"a":1})");
  EXPECT_EQ(read->revision, *created);
  EXPECT_EQ(read->create_revision, *created);

  EXPECT_TRUE(absl::IsAlreadyExists(s.Put(kReviews, "{}", kMustNotExist).status()));
  absl::StatusOr<int64_t> replaced = s.Put(kReviews, R"({"a":2})", *created);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_GT(*replaced, *created);
  absl::Status stale = s.Put(kReviews, "{}", *created).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(stale));
  EXPECT_NE(stale.message().find(absl::StrCat("is stale; current is ", *replaced)),
            std::string::npos)
      << stale;
  read = s.Get(kReviews);
  EXPECT_EQ(read->create_revision, *created);
  EXPECT_EQ(read->revision, *replaced);

  EXPECT_TRUE(absl::IsFailedPrecondition(s.Delete(kReviews, *created).status()));
  absl::StatusOr<int64_t> deleted = s.Delete(kReviews, *replaced);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_GT(*deleted, *replaced);
  EXPECT_TRUE(absl::IsNotFound(s.Delete(kReviews, kAnyRevision).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(s.Put(kReviews, "{}", *replaced).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(s.Put({"Bad Kind", "x", "y"}, "{}", kAnyRevision).status()));
}

TEST_F(EtcdStoreTest, ListFiltersByKindAndNamespaceInKeyOrder) {
  auto store = Open();
  ASSERT_TRUE(store.ok()) << store.status();
  EtcdStore& s = **store;
  for (const ResourceKey& key : std::vector<ResourceKey>{{"Service", "shop-a", "x"},
                                                         {"Service", "shop", "y"},
                                                         {"Service", "shop", "a"},
                                                         {"HTTPRoute", "shop", "r"},
                                                         {"MeshConfig", "", "mesh"}}) {
    ASSERT_TRUE(s.Put(key, "{}", kAnyRevision).ok());
  }
  auto names = [&](absl::string_view kind, absl::string_view ns) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<StoredResource>> listed = s.List(kind, ns);
    EXPECT_TRUE(listed.ok()) << listed.status();
    for (const StoredResource& r : *listed) out.push_back(r.key.ToString());
    return out;
  };
  // Key order, not etcd's byte order ("shop-a/" sorts before "shop/" as bytes).
  EXPECT_EQ(names("Service", ""),
            (std::vector<std::string>{"Service/shop/a", "Service/shop/y", "Service/shop-a/x"}));
  EXPECT_EQ(names("Service", "shop"),
            (std::vector<std::string>{"Service/shop/a", "Service/shop/y"}));
  EXPECT_EQ(names("", "shop").size(), 3u);
  EXPECT_EQ(names("MeshConfig", ""), (std::vector<std::string>{"MeshConfig/-/mesh"}));
  EXPECT_EQ(names("", "").size(), 5u);
}

TEST_F(EtcdStoreTest, TwoReplicasRacingOnOneResourceExactlyOneWins) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<int64_t> revision = (*a)->Put(kReviews, "{}", kMustNotExist);
  ASSERT_TRUE(revision.ok());
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> wins{0}, conflicts{0};
    std::atomic<int64_t> winner{0};
    auto write = [&](EtcdStore& store, const char* body) {
      absl::StatusOr<int64_t> r = store.Put(kReviews, body, *revision);
      if (r.ok()) {
        ++wins;
        winner = *r;
      } else if (absl::IsFailedPrecondition(r.status())) {
        ++conflicts;
      }
    };
    std::thread ta([&] { write(**a, R"({"by":"a"})"); });
    std::thread tb([&] { write(**b, R"({"by":"b"})"); });
    ta.join();
    tb.join();
    ASSERT_EQ(wins.load(), 1) << "round " << round;
    ASSERT_EQ(conflicts.load(), 1) << "round " << round;
    revision = winner.load();
  }
  // Two creates: one AlreadyExists.
  const ResourceKey fresh{"Service", "default", "fresh"};
  absl::Status first = (*a)->Put(fresh, "{}", kMustNotExist).status();
  absl::Status second = (*b)->Put(fresh, "{}", kMustNotExist).status();
  EXPECT_TRUE(first.ok());
  EXPECT_TRUE(absl::IsAlreadyExists(second));
}

TEST_F(EtcdStoreTest, AReplicaWatchSeesAnothersWritesInOrderUntilTheHandleGoes) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  Recorder seen;
  std::unique_ptr<Store::WatchHandle> handle = (*b)->Watch(seen.Callback());
  ASSERT_TRUE((*a)->Put(kReviews, "1", kAnyRevision).ok());
  ASSERT_TRUE((*a)->Put(kReviews, "2", kAnyRevision).ok());
  ASSERT_TRUE((*a)->Delete(kReviews, kAnyRevision).ok());
  EXPECT_EQ(seen.WaitFor(3), (std::vector<std::string>{"put TrafficPolicy/default/reviews 1",
                                                       "put TrafficPolicy/default/reviews 2",
                                                       "delete TrafficPolicy/default/reviews "}));
  // Keys outside the prefix, or not shaped like a resource, are not reported.
  EXPECT_EQ(etcd_->Etcdctl({"put", "/other/Service/default/x", "{}"}), 0);
  EXPECT_EQ(etcd_->Etcdctl({"put", "/test/garbage", "{}"}), 0);
  handle.reset();
  ASSERT_TRUE((*a)->Put(kReviews, "3", kAnyRevision).ok());
  EXPECT_EQ(seen.WaitFor(4, std::chrono::milliseconds(500)).size(), 3u);
}

TEST_F(EtcdStoreTest, WatchResumesAfterEtcdRestartsWithoutMissingOrRepeating) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  Recorder seen;
  auto handle = (*b)->Watch(seen.Callback());
  ASSERT_TRUE((*a)->Put(kReviews, "1", kAnyRevision).ok());
  ASSERT_EQ(seen.WaitFor(1).size(), 1u);

  etcd_->Kill();
  absl::Status down = (*a)->Put(kReviews, "lost", kAnyRevision).status();
  EXPECT_TRUE(absl::IsUnavailable(down)) << down;
  ASSERT_TRUE(etcd_->Start());
  absl::Status up;
  for (int i = 0; i < 100; ++i) {
    up = (*a)->Put(kReviews, "2", kAnyRevision).status();
    if (up.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(up.ok()) << up;
  ASSERT_TRUE((*a)->Put(kReviews, "3", kAnyRevision).ok());
  seen.WaitFor(3);
  // Nothing more (a repeat) arrives.
  std::vector<std::string> events = seen.WaitFor(4, std::chrono::milliseconds(500));
  EXPECT_EQ(events, (std::vector<std::string>{"put TrafficPolicy/default/reviews 1",
                                              "put TrafficPolicy/default/reviews 2",
                                              "put TrafficPolicy/default/reviews 3"}));
  EXPECT_GE((*b)->watches_started(), 2u);
}

TEST_F(EtcdStoreTest, AWatchBehindACompactionListsAgainAndReportsTheDifference) {
  auto a = Open();
  // b waits 3 s before re-opening a broken watch: time to change and compact meanwhile.
  auto b = Open(std::chrono::seconds(3));
  ASSERT_TRUE(a.ok() && b.ok());
  const ResourceKey gone{"Service", "default", "gone"};
  const ResourceKey kept{"Service", "default", "kept"};
  ASSERT_TRUE((*a)->Put(gone, "g", kAnyRevision).ok());
  ASSERT_TRUE((*a)->Put(kept, "k", kAnyRevision).ok());
  Recorder seen;
  auto handle = (*b)->Watch(seen.Callback());
  ASSERT_TRUE((*a)->Put(kReviews, "1", kAnyRevision).ok());
  ASSERT_EQ(seen.WaitFor(1).size(), 1u);

  etcd_->Kill();
  ASSERT_TRUE(etcd_->Start());
  absl::Status up;
  for (int i = 0; i < 100 && !(up = (*a)->Put(kReviews, "2", kAnyRevision).status()).ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(up.ok()) << up;
  ASSERT_TRUE((*a)->Put(kReviews, "3", kAnyRevision).ok());
  ASSERT_TRUE((*a)->Delete(gone, kAnyRevision).ok());
  const int64_t latest = (*a)->Revision();
  ASSERT_EQ(etcd_->Etcdctl({"compact", std::to_string(latest)}), 0);

  // The watch comes back at a compacted revision, lists, and reports only the difference: the
  // latest TrafficPolicy (not each step) and the deletion.
  seen.WaitFor(3);
  // Nothing more (a repeat) arrives.
  std::vector<std::string> events = seen.WaitFor(4, std::chrono::milliseconds(500));
  EXPECT_EQ(events, (std::vector<std::string>{"put TrafficPolicy/default/reviews 1",
                                              "put TrafficPolicy/default/reviews 3",
                                              "delete Service/default/gone "}));
  EXPECT_EQ((*b)->relists(), 1u);
  // And it watches on from there.
  ASSERT_TRUE((*a)->Put(kept, "k2", kAnyRevision).ok());
  EXPECT_EQ(seen.WaitFor(4).back(), "put Service/default/kept k2");
}

TEST_F(EtcdStoreTest, TlsWithClientCertificatesAndAuthentication) {
  // A member of its own, served over TLS and asking for client certificates.
  absl::StatusOr<tls::testing::TestCa> ca = tls::testing::TestCa::Create("etcd test CA");
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<tls::testing::TestCertificate> server =
      ca->Issue({.ip_addresses = {"127.0.0.1"}, .common_name = "etcd"});
  absl::StatusOr<tls::testing::TestCertificate> client = ca->Issue({.common_name = "root"});
  ASSERT_TRUE(server.ok() && client.ok());
  const std::string dir = dir_ + "/tls";
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir + "/" + name) << content;
    return dir + "/" + name;
  };
  EtcdProcess secure(dir, {"--cert-file", write("server.pem", server->chain_pem), "--key-file",
                           write("server-key.pem", server->key_pem), "--trusted-ca-file",
                           write("ca.pem", ca->cert_pem()), "--client-cert-auth"});
  ASSERT_TRUE(secure.Start());

  auto open = [&](const std::string& chain, const std::string& key, const std::string& trust,
                  const std::string& user = "", const std::string& password = "") {
    EtcdStoreOptions options;
    options.endpoints = *ParseEtcdUrl(absl::StrCat("etcd://", secure.endpoint()));
    options.prefix = "/test/";
    options.request_timeout = std::chrono::seconds(2);
    auto context = tls::TlsContext::CreateClient({.certificate_chain_pem = chain,
                                                  .private_key_pem = key,
                                                  .trust_bundle_pem = trust,
                                                  .alpn_protocols = {"h2"}});
    EXPECT_TRUE(context.ok()) << context.status();
    options.tls = std::make_shared<tls::TlsContextProvider>(*context);
    options.username = user;
    options.password = password;
    return EtcdStore::Open(std::move(options));
  };
  absl::StatusOr<std::unique_ptr<EtcdStore>> store;
  for (int i = 0; i < 100; ++i) {
    store = open(client->chain_pem, client->key_pem, ca->cert_pem());
    if (store.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Put(kReviews, "{}", kMustNotExist).ok());
  EXPECT_EQ((*store)->Get(kReviews)->body, "{}");

  // No client certificate, or a server this CA did not sign: refused, saying so.
  absl::Status anonymous = open("", "", ca->cert_pem()).status();
  EXPECT_TRUE(absl::IsUnavailable(anonymous)) << anonymous;
  absl::StatusOr<tls::testing::TestCa> other = tls::testing::TestCa::Create("another CA");
  absl::Status untrusted = open(client->chain_pem, client->key_pem, other->cert_pem()).status();
  EXPECT_TRUE(absl::IsUnavailable(untrusted)) << untrusted;

  // Users: with authentication on, the right password works and a wrong one is refused.
  const std::vector<std::string> tls_flags = {"--cacert", dir + "/ca.pem",
                                              "--cert",   write("client.pem", client->chain_pem),
                                              "--key",    write("client-key.pem", client->key_pem)};
  auto etcdctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), tls_flags.begin(), tls_flags.end());
    return secure.Etcdctl(args);
  };
  ASSERT_EQ(etcdctl({"user", "add", "root:secret"}), 0);
  ASSERT_EQ(etcdctl({"user", "add", "meshlet:pw"}), 0);
  ASSERT_EQ(etcdctl({"role", "add", "mesh"}), 0);
  ASSERT_EQ(etcdctl({"role", "grant-permission", "mesh", "--prefix=true", "readwrite", "/test/"}),
            0);
  ASSERT_EQ(etcdctl({"user", "grant-role", "meshlet", "mesh"}), 0);
  ASSERT_EQ(etcdctl({"auth", "enable"}), 0);
  absl::StatusOr<std::unique_ptr<EtcdStore>> user =
      open(client->chain_pem, client->key_pem, ca->cert_pem(), "meshlet", "pw");
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_TRUE((*user)->Get(kReviews).ok());
  absl::Status wrong =
      open(client->chain_pem, client->key_pem, ca->cert_pem(), "meshlet", "nope").status();
  EXPECT_FALSE(wrong.ok());
  EXPECT_NE(wrong.message().find("Authenticate"), std::string::npos) << wrong;
}

TEST_F(EtcdStoreTest, UnavailableEtcdIsAClearErrorNotAHang) {
  auto store = Open();
  ASSERT_TRUE(store.ok());
  etcd_->Kill();
  auto start = std::chrono::steady_clock::now();
  absl::Status status = (*store)->Get(kReviews).status();
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_NE(status.message().find(etcd_->endpoint()), std::string::npos) << status;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
}

}  // namespace
}  // namespace meshlet::controlplane

namespace meshlet::controlplane {
namespace {

// Waits until `store` holds a lease; returns it (0: none within 10 s).
int64_t WaitForLease(const EtcdStore& store, uint64_t granted = 1) {
  for (int i = 0; i < 1000; ++i) {
    if (store.leases_granted() >= granted && store.lease() != 0) return store.lease();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return 0;
}

TEST_F(EtcdStoreTest, LeasedKeysReachTheOtherStoresAndGoWhenTheWriterSaysGoodbye) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  Recorder at_b, at_a;
  auto watch_b = (*b)->WatchLeased("workload/", at_b.LeasedCallback());
  auto watch_a = (*a)->WatchLeased("workload/", at_a.LeasedCallback());
  (*a)->SetLeased("workload/x", "1");
  (*a)->SetLeased("workload/y", "2");
  (*a)->SetLeased("replica/a", "r");  // not under the watched prefix: never reported
  const std::string owner = Hex(WaitForLease(**a));
  ASSERT_NE(owner, Hex(0));
  ASSERT_EQ(at_b.WaitFor(2).size(), 2u);
  (*a)->SetLeased("workload/x", "1b");
  (*a)->DeleteLeased("workload/y");
  (*a)->DeleteLeased("workload/never-written");
  std::vector<std::string> seen = at_b.WaitFor(4);
  std::sort(seen.begin(), seen.begin() + 2);  // one transaction: etcd's order within it
  EXPECT_EQ(seen, (std::vector<std::string>{
                      absl::StrCat("put ", owner, " workload/x 1"),
                      absl::StrCat("put ", owner, " workload/y 2"),
                      absl::StrCat("put ", owner, " workload/x 1b"),
                      absl::StrCat("delete ", owner, " workload/y"),
                  }));
  // In etcd under the prefix, bound to the lease.
  EXPECT_EQ(etcd_->Etcdctl({"get", absl::StrCat("/test/_leased/", owner, "/workload/x")}), 0);
  // A store never hears its own keys; one opened later first gets what exists; policy watchers
  // and lists never see leased keys.
  EXPECT_EQ(at_a.WaitFor(1, std::chrono::milliseconds(300)).size(), 0u);
  auto c = Open();
  ASSERT_TRUE(c.ok());
  Recorder at_c;
  auto watch_c = (*c)->WatchLeased("workload/", at_c.LeasedCallback());
  EXPECT_EQ(at_c.WaitFor(1),
            std::vector<std::string>{absl::StrCat("put ", owner, " workload/x 1b")});
  absl::StatusOr<std::vector<StoredResource>> all = (*c)->List("", "");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());

  // a stops: it revokes its lease, and the keys vanish at once, not after the time to live.
  const auto stopped = std::chrono::steady_clock::now();
  watch_a.reset();  // handles go before their store
  a->reset();
  EXPECT_EQ(at_c.WaitFor(2).back(), absl::StrCat("delete ", owner, " workload/x"));
  EXPECT_LT(std::chrono::steady_clock::now() - stopped, std::chrono::seconds(1));
  EXPECT_EQ(at_b.WaitFor(5).back(), absl::StrCat("delete ", owner, " workload/x"));
}

TEST_F(EtcdStoreTest, ALostLeaseIsReplacedAndItsKeysWrittenAgain) {
  auto a = Open();
  auto b = Open();
  ASSERT_TRUE(a.ok() && b.ok());
  Recorder at_b;
  auto watch = (*b)->WatchLeased("workload/", at_b.LeasedCallback());
  (*a)->SetLeased("workload/x", "1");
  const int64_t first = WaitForLease(**a);
  ASSERT_EQ(at_b.WaitFor(1).size(), 1u);
  // The lease goes behind a's back (as when etcd expired it while a could not reach etcd).
  ASSERT_EQ(etcd_->Etcdctl({"lease", "revoke", Hex(first)}), 0);
  const int64_t second = WaitForLease(**a, 2);
  ASSERT_NE(second, 0);
  EXPECT_NE(second, first);
  EXPECT_EQ(at_b.WaitFor(3), (std::vector<std::string>{
                                 absl::StrCat("put ", Hex(first), " workload/x 1"),
                                 absl::StrCat("delete ", Hex(first), " workload/x"),
                                 absl::StrCat("put ", Hex(second), " workload/x 1"),
                             }));
}

TEST_F(EtcdStoreTest, ADeadWritersKeysVanishWhenItsLeaseRunsOut) {
  // The writer is another process, killed without a goodbye.
  const std::string endpoint = etcd_->endpoint();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    EtcdStoreOptions options;
    options.endpoints = *ParseEtcdUrl(absl::StrCat("etcd://", endpoint));
    options.prefix = "/test/";
    options.lease_ttl = std::chrono::seconds(2);
    absl::StatusOr<std::unique_ptr<EtcdStore>> writer = EtcdStore::Open(std::move(options));
    if (!writer.ok()) ::_exit(1);
    (*writer)->SetLeased("workload/x", "1");
    while ((*writer)->lease() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    (void)!::write(ready[1], "x", 1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  const bool started = ::read(ready[0], &byte, 1) == 1;
  ::close(ready[0]);
  auto b = Open();
  if (!started || !b.ok()) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    FAIL() << "the writer did not start";
  }
  Recorder at_b;
  auto watch = (*b)->WatchLeased("workload/", at_b.LeasedCallback());
  ASSERT_EQ(at_b.WaitFor(1).size(), 1u);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  const auto killed = std::chrono::steady_clock::now();
  // Gone within the time to live (2 s; etcd checks expiry every 500 ms).
  std::vector<std::string> seen = at_b.WaitFor(2, std::chrono::seconds(6));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(absl::StartsWith(seen[1], "delete ")) << seen[1];
  EXPECT_LT(std::chrono::steady_clock::now() - killed, std::chrono::seconds(4));
}

}  // namespace
}  // namespace meshlet::controlplane
