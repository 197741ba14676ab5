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

// Files of one test's etcd, made at test time: a CA, the member's certificate (127.0.0.1, for
// clients and peers alike) and a client certificate.
struct EtcdCertificates {
  std::string ca_file, member_file, member_key_file, client_file, client_key_file;
  std::string ca_pem, client_pem, client_key_pem;

  static EtcdCertificates Create(const std::string& dir) {
    tls::testing::TestCa ca = tls::testing::ValueOrDie(tls::testing::TestCa::Create("etcd CA"));
    tls::testing::TestCertificate member = tls::testing::ValueOrDie(
        ca.Issue({.ip_addresses = {"127.0.0.1"}, .common_name = "etcd member"}));
    tls::testing::TestCertificate client =
        tls::testing::ValueOrDie(ca.Issue({.common_name = "meshlet-control-plane"}));
    std::filesystem::create_directories(dir);
    auto write = [&](const std::string& name, const std::string& content) {
      std::ofstream(dir + "/" + name) << content;
      return dir + "/" + name;
    };
    return {.ca_file = write("ca.pem", ca.cert_pem()),
            .member_file = write("member.pem", member.chain_pem),
            .member_key_file = write("member-key.pem", member.key_pem),
            .client_file = write("client.pem", client.chain_pem),
            .client_key_file = write("client-key.pem", client.key_pem),
            .ca_pem = ca.cert_pem(),
            .client_pem = client.chain_pem,
            .client_key_pem = client.key_pem};
  }
};

// One etcd member on loopback, in a directory of its own; killed by the destructor. With
// `certificates` it serves clients and peers over TLS and requires client certificates of both
// (as k8s/etcd runs it); without, plaintext.
class EtcdProcess {
 public:
  explicit EtcdProcess(std::string dir, const EtcdCertificates* certificates = nullptr)
      : dir_(std::move(dir)),
        certificates_(certificates),
        client_port_(FreePort()),
        peer_port_(FreePort()) {}
  ~EtcdProcess() { Kill(); }

  bool Start() {
    const char* scheme = certificates_ != nullptr ? "https" : "http";
    const std::string peer = absl::StrCat(scheme, "://127.0.0.1:", peer_port_);
    const std::string client = absl::StrCat(scheme, "://127.0.0.1:", client_port_);
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
    if (certificates_ != nullptr) {
      const EtcdCertificates& c = *certificates_;
      args.insert(
          args.end(),
          {"--cert-file", c.member_file, "--key-file", c.member_key_file, "--trusted-ca-file",
           c.ca_file, "--client-cert-auth", "--peer-cert-file", c.member_file, "--peer-key-file",
           c.member_key_file, "--peer-trusted-ca-file", c.ca_file, "--peer-client-cert-auth"});
    }
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
  // The --store URL of this member.
  std::string url() const {
    return absl::StrCat(certificates_ != nullptr ? "https://" : "http://", endpoint());
  }
  // etcdctl (v3 API) against this member, with the client certificate unless `anonymous`; its
  // exit code.
  int Etcdctl(const std::vector<std::string>& args, bool anonymous = false) const {
    std::vector<std::string> all = {kEtcdctl, "--endpoints", url(), "--dial-timeout", "2s"};
    if (certificates_ != nullptr) {
      all.insert(all.end(), {"--cacert", certificates_->ca_file});
      if (!anonymous) {
        all.insert(all.end(),
                   {"--cert", certificates_->client_file, "--key", certificates_->client_key_file});
      }
    }
    all.insert(all.end(), args.begin(), args.end());
    pid_t pid = Spawn(all, dir_ + "/etcdctl.log");
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  std::string dir_;
  const EtcdCertificates* certificates_;
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
    certificates_ = EtcdCertificates::Create(dir_ + "/tls");
    etcd_ = std::make_unique<EtcdProcess>(dir_, &certificates_);
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

  // TLS to the test's etcd with `chain` and `key` (none: no client certificate), trusting
  // `trust`.
  static std::shared_ptr<const tls::TlsContextProvider> Tls(const std::string& chain,
                                                            const std::string& key,
                                                            const std::string& trust) {
    auto context = tls::TlsContext::CreateClient({.certificate_chain_pem = chain,
                                                  .private_key_pem = key,
                                                  .trust_bundle_pem = trust,
                                                  .alpn_protocols = {"h2"}});
    EXPECT_TRUE(context.ok()) << context.status();
    return context.ok() ? std::make_shared<tls::TlsContextProvider>(*context) : nullptr;
  }

  // Options for the test's etcd, over TLS with the client certificate.
  EtcdStoreOptions Options() const {
    EtcdStoreOptions options;
    absl::StatusOr<EtcdUrl> url = ParseEtcdUrl(etcd_->url());
    EXPECT_TRUE(url.ok()) << url.status();
    if (url.ok()) options.endpoints = url->endpoints;
    options.prefix = "/test/";
    options.request_timeout = std::chrono::seconds(2);
    options.tls = Tls(certificates_.client_pem, certificates_.client_key_pem, certificates_.ca_pem);
    return options;
  }

  absl::StatusOr<std::unique_ptr<EtcdStore>> Open(
      Duration watch_retry = std::chrono::milliseconds(100),
      Duration lease_ttl = std::chrono::seconds(2)) {
    EtcdStoreOptions options = Options();
    options.watch_retry = watch_retry;
    options.lease_ttl = lease_ttl;
    return EtcdStore::Open(std::move(options));
  }

  std::string dir_;
  EtcdCertificates certificates_;
  std::unique_ptr<EtcdProcess> etcd_;
};

const ResourceKey kReviews{"TrafficPolicy", "default", "reviews"};

TEST(EtcdUrlTest, ResolvesEachEndpoint) {
  absl::StatusOr<EtcdUrl> three =
      ParseEtcdUrl("https://127.0.0.1:2379,[::1]:2380,https://localhost:2381");
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_TRUE(three->tls);
  ASSERT_EQ(three->endpoints.size(), 3u);
  EXPECT_EQ(three->endpoints[0].address.ToString(), "127.0.0.1:2379");
  EXPECT_EQ(three->endpoints[1].host, "::1");
  EXPECT_EQ(three->endpoints[1].address.port(), 2380);
  EXPECT_EQ(three->endpoints[2].host, "localhost");
  EXPECT_FALSE(ParseEtcdUrl("http://127.0.0.1:2379")->tls);
  EXPECT_NE(ParseEtcdUrl("etcd://127.0.0.1:2379").status().message().find("https://HOST:PORT"),
            std::string::npos);
  EXPECT_NE(ParseEtcdUrl("https://127.0.0.1:2379,nope.invalid:1")
                .status()
                .message()
                .find("\"nope.invalid\" does not resolve"),
            std::string::npos);
}

TEST_F(EtcdStoreTest, CreateReadReplaceDeleteWithRevisions) {
  auto store = Open();
  ASSERT_TRUE(store.ok()) << store.status();
  EtcdStore& s = **store;
  // Shared by replicas: the store offers its leased keys through the Store interface.
  EXPECT_EQ(static_cast<Store&>(s).leased_keys(), static_cast<LeasedKeys*>(&s));
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

TEST_F(EtcdStoreTest, OnlyClientsWithACertificateOfTheEtcdCaGetIn) {
  // The fixture's member serves TLS and requires client certificates (--client-cert-auth).
  auto open = [&](std::shared_ptr<const tls::TlsContextProvider> tls) {
    EtcdStoreOptions options = Options();
    options.tls = std::move(tls);
    return EtcdStore::Open(std::move(options));
  };
  absl::StatusOr<std::unique_ptr<EtcdStore>> store = Open();
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Put(kReviews, "{}", kMustNotExist).ok());
  EXPECT_EQ((*store)->Get(kReviews)->body, "{}");

  // No client certificate; one from another CA; a server this CA did not sign: refused.
  absl::Status anonymous = open(Tls("", "", certificates_.ca_pem)).status();
  EXPECT_TRUE(absl::IsUnavailable(anonymous)) << anonymous;
  absl::StatusOr<tls::testing::TestCa> other = tls::testing::TestCa::Create("another CA");
  ASSERT_TRUE(other.ok());
  absl::StatusOr<tls::testing::TestCertificate> stranger = other->Issue({.common_name = "root"});
  ASSERT_TRUE(stranger.ok());
  absl::Status foreign =
      open(Tls(stranger->chain_pem, stranger->key_pem, certificates_.ca_pem)).status();
  EXPECT_TRUE(absl::IsUnavailable(foreign)) << foreign;
  absl::Status untrusted =
      open(Tls(certificates_.client_pem, certificates_.client_key_pem, other->cert_pem())).status();
  EXPECT_TRUE(absl::IsUnavailable(untrusted)) << untrusted;
  // etcd's own client without a certificate, and without TLS at all.
  EXPECT_NE(etcd_->Etcdctl({"get", "/test/", "--prefix"}, /*anonymous=*/true), 0);
  EtcdStoreOptions plaintext = Options();
  plaintext.tls = nullptr;
  plaintext.allow_plaintext = true;
  absl::Status cleartext = EtcdStore::Open(std::move(plaintext)).status();
  EXPECT_TRUE(absl::IsUnavailable(cleartext)) << cleartext;
  // The one with the certificate still reads.
  EXPECT_EQ(etcd_->Etcdctl({"get", "/test/", "--prefix"}), 0);
}

TEST_F(EtcdStoreTest, PlaintextOnlyWhenAllowed) {
  EtcdProcess plain(dir_ + "/plain");
  std::filesystem::create_directories(dir_ + "/plain");
  ASSERT_TRUE(plain.Start());
  EtcdStoreOptions options = Options();
  options.endpoints = ParseEtcdUrl(plain.url())->endpoints;
  options.tls = nullptr;
  absl::Status refused = EtcdStore::Open(options).status();
  EXPECT_TRUE(absl::IsInvalidArgument(refused)) << refused;
  EXPECT_NE(refused.message().find("plaintext was not allowed"), std::string::npos) << refused;
  options.allow_plaintext = true;
  absl::StatusOr<std::unique_ptr<EtcdStore>> store;
  for (int i = 0; i < 100 && !(store = EtcdStore::Open(options)).ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->Put(kReviews, "{}", kMustNotExist).ok());
}

TEST_F(EtcdStoreTest, UsersWithAuthenticationOn) {
  auto open = [&](const std::string& user, const std::string& password) {
    EtcdStoreOptions options = Options();
    options.username = user;
    options.password = password;
    return EtcdStore::Open(std::move(options));
  };
  // With authentication on, the right password works and a wrong one is refused.
  ASSERT_EQ(etcd_->Etcdctl({"user", "add", "root:secret"}), 0);
  ASSERT_EQ(etcd_->Etcdctl({"user", "add", "meshlet:pw"}), 0);
  ASSERT_EQ(etcd_->Etcdctl({"role", "add", "mesh"}), 0);
  ASSERT_EQ(
      etcd_->Etcdctl({"role", "grant-permission", "mesh", "--prefix=true", "readwrite", "/test/"}),
      0);
  ASSERT_EQ(etcd_->Etcdctl({"user", "grant-role", "meshlet", "mesh"}), 0);
  ASSERT_EQ(etcd_->Etcdctl({"auth", "enable"}), 0);
  absl::StatusOr<std::unique_ptr<EtcdStore>> user = open("meshlet", "pw");
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_TRUE(absl::IsNotFound((*user)->Get(kReviews).status()));
  absl::Status wrong = open("meshlet", "nope").status();
  EXPECT_FALSE(wrong.ok());
  EXPECT_NE(wrong.message().find("Authenticate"), std::string::npos) << wrong;
}

TEST_F(EtcdStoreTest, ManyThreadsCallingAtOnceWhileTheWatchAndALeaseRun) {
  // As a control plane uses its store: API requests, policy reloads and registrations at once,
  // on one TLS connection that also carries the watch and the lease's keep-alives.
  auto store = Open();
  ASSERT_TRUE(store.ok()) << store.status();
  EtcdStore& s = **store;
  Recorder seen;
  auto handle = s.Watch(seen.Callback());
  Recorder leased;
  auto leased_handle = s.WatchLeased("workload/", leased.LeasedCallback());
  constexpr int kThreads = 8;
  constexpr int kRounds = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const ResourceKey key{"Service", "default", absl::StrCat("s", t, "-", i)};
        s.SetLeased(absl::StrCat("workload/", t), absl::StrCat(i));
        if (!s.Put(key, std::string(100 + 50 * i, 'x'), kMustNotExist).ok()) ++failures;
        if (!s.Get(key).ok()) ++failures;
        if (!s.List("Service", "default").ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(seen.WaitFor(kThreads * kRounds).size(), static_cast<size_t>(kThreads * kRounds));
}

TEST_F(EtcdStoreTest, UpWhileEtcdAnswersRecently) {
  EtcdStoreOptions options = Options();
  options.up_window = std::chrono::milliseconds(500);
  absl::StatusOr<std::unique_ptr<EtcdStore>> store = EtcdStore::Open(std::move(options));
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->Up());  // Open's list was answered
  // An answer that is an error (not found) is still an answer.
  EXPECT_TRUE(absl::IsNotFound((*store)->Get(kReviews).status()));
  EXPECT_TRUE((*store)->Up());
  // No call for longer than the window: nothing says etcd still answers.
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_FALSE((*store)->Up());
  ASSERT_TRUE((*store)->List("", "").ok());
  EXPECT_TRUE((*store)->Up());

  etcd_->Kill();
  EXPECT_TRUE(absl::IsUnavailable((*store)->Get(kReviews).status()));
  EXPECT_FALSE((*store)->Up());
  ASSERT_TRUE(etcd_->Start());
  bool answered = false;
  for (int i = 0; i < 100 && !answered; ++i) {
    answered = (*store)->List("", "").ok();
    if (!answered) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(answered);
  EXPECT_TRUE((*store)->Up());
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
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    EtcdStoreOptions options = Options();
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
