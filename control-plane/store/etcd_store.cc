// EtcdStore (etcd_store.h): connecting and authenticating, the resources (Get, List, Put, Delete)
// and the one watch that keeps revisions and the leased keys current; the lease and this
// replica's leased keys are in etcd_store_leases.cc.

#include "control-plane/store/etcd_store.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/base/thread_name.h"
#include "common/event/timer.h"
#include "common/http/grpc/client.h"
#include "common/tls/tls_transport.h"
#include "control-plane/store/etcd.pb.h"
#include "control-plane/store/etcd_store_internal.h"
#include "control-plane/store/etcd_url.h"

namespace meshlet::controlplane {
namespace {

using http::grpc::StatusCode;

using etcd_internal::kAuthenticate;
using etcd_internal::kLeasedSpace;
using etcd_internal::kLeaseRevoke;
using etcd_internal::kRange;
using etcd_internal::kTxn;
using etcd_internal::kWatch;
using etcd_internal::LeaseOwner;

constexpr char kClusterScope[] = "_cluster";

// The first key after every key starting with `prefix` (etcd's range_end for a prefix).
std::string PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

absl::Status FromGrpc(StatusCode code, absl::string_view message, absl::string_view where) {
  std::string text = absl::StrCat("etcd ", where, ": ", message);
  switch (code) {
    case StatusCode::kOk:
      return absl::OkStatus();
    // Transient, another member may answer: DEADLINE_EXCEEDED when the call timed out or etcd
    // has no leader (no quorum); UNKNOWN is how a member without a leader ends linearizable
    // calls ("context deadline exceeded", "etcdserver: request timed out").
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
    case StatusCode::kUnknown:
      return absl::UnavailableError(text);
    case StatusCode::kUnauthenticated:
      return absl::UnauthenticatedError(text);
    case StatusCode::kPermissionDenied:
      return absl::PermissionDeniedError(text);
    case StatusCode::kInvalidArgument:
      return absl::InvalidArgumentError(text);
    case StatusCode::kResourceExhausted:
      return absl::ResourceExhaustedError(text);
    default:
      return absl::InternalError(absl::StrCat(text, " (gRPC status ", static_cast<int>(code), ")"));
  }
}

StoredResource Resource(const ResourceKey& key, const etcd::KeyValue& kv) {
  return StoredResource{.key = key,
                        .body = kv.value(),
                        .revision = kv.mod_revision(),
                        .create_revision = kv.create_revision()};
}

// Why a write's comparison failed, from its failure branch (a range of the key): `absent` when
// the key is gone, else a stale revision naming the current one.
absl::Status CompareFailed(const ResourceKey& key, int64_t expected_revision,
                           const etcd::TxnResponse& done, absl::Status absent) {
  const etcd::RangeResponse* current =
      done.responses_size() > 0 ? &done.responses(0).response_range() : nullptr;
  if (current == nullptr || current->kvs_size() == 0) return absent;
  return absl::FailedPreconditionError(absl::StrCat(key.ToString(), ": resourceVersion ",
                                                    expected_revision, " is stale; current is ",
                                                    current->kvs(0).mod_revision()));
}

}  // namespace

absl::StatusOr<EtcdUrl> ParseEtcdUrl(absl::string_view url) {
  absl::StatusOr<EtcdUrlParts> parts = SplitEtcdUrl(url);
  if (!parts.ok()) return parts.status();
  EtcdUrl out{.tls = parts->tls};
  for (net::HostPort& endpoint : parts->endpoints) {
    absl::StatusOr<std::vector<net::Address>> resolved =
        net::ResolveAll(endpoint.host, endpoint.port);
    if (!resolved.ok() || resolved->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("store \"", url, "\": endpoint \"", endpoint.host, "\" does not resolve",
                       resolved.ok() ? "" : absl::StrCat(": ", resolved.status().message())));
    }
    out.endpoints.push_back({std::move(endpoint.host), resolved->front()});
  }
  return out;
}

class EtcdStore::Watcher final : public Store::WatchHandle {
 public:
  Watcher(EtcdStore* store, uint64_t id) : store_(store), id_(id) {}
  ~Watcher() override {
    MutexLock lock(&store_->mu_);
    store_->watchers_.erase(id_);
  }

 private:
  EtcdStore* store_;
  uint64_t id_;
};

EtcdStore::EtcdStore(EtcdStoreOptions options)
    : options_(std::move(options)), leased_prefix_(absl::StrCat(options_.prefix, kLeasedSpace)) {}

absl::StatusOr<std::unique_ptr<EtcdStore>> EtcdStore::Open(EtcdStoreOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("etcd store: no endpoints");
  if (options.prefix.empty()) return absl::InvalidArgumentError("etcd store: empty key prefix");
  if (options.tls == nullptr && !options.allow_plaintext) {
    return absl::InvalidArgumentError("etcd store: no TLS, and plaintext was not allowed");
  }
  std::unique_ptr<EtcdStore> store(new EtcdStore(std::move(options)));
  EtcdStore* s = store.get();
  Notification started;
  s->thread_ = std::thread([s, &started] {
    SetThreadName("etcd");
    for (const EtcdEndpoint& endpoint : s->options_.endpoints) {
      http::grpc::ChannelOptions channel;
      if (s->options_.tls != nullptr) {
        channel.transport_factory = tls::TlsTransport::Factory(
            s->options_.tls, {.server_name = endpoint.host, .verify_peer_name = endpoint.host});
      }
      channel.connect_timeout = s->options_.request_timeout;
      channel.keepalive_interval = std::chrono::seconds(10);
      channel.keepalive_timeout = std::chrono::seconds(5);
      s->channels_.push_back(
          std::make_unique<http::grpc::Channel>(s->loop_, endpoint.address, channel));
    }
    s->watch_retry_timer_ = std::make_unique<event::Timer>(s->loop_, [s] {
      if (s->relist_pending_) {
        s->Relist();
      } else {
        s->StartWatch();
      }
    });
    s->leased_retry_timer_ = std::make_unique<event::Timer>(s->loop_, [s] { s->WriteLeased(); });
    s->keepalive_timer_ = std::make_unique<event::Timer>(s->loop_, [s] { s->KeepAlive(); });
    // Notified from inside Run(), once the loop knows its thread (IsInLoopThread).
    s->loop_.Post([&started] { started.Notify(); });
    s->loop_.Run();
    s->watch_.reset();
    s->keepalive_.reset();
    s->watch_retry_timer_.reset();
    s->leased_retry_timer_.reset();
    s->keepalive_timer_.reset();
    s->channels_.clear();
    s->loop_.RunUntilIdle();
  });
  started.WaitForNotification();

  if (!store->options_.username.empty()) {
    etcd::AuthenticateRequest auth;
    auth.set_name(store->options_.username);
    auth.set_password(store->options_.password);
    absl::StatusOr<etcd::AuthenticateResponse> token =
        store->CallProto<etcd::AuthenticateResponse>(kAuthenticate, auth);
    if (!token.ok()) return token.status();
    store->token_ = token->token();  // before any other call: no lock needed
  }
  etcd::RangeRequest list;
  list.set_key(store->options_.prefix);
  list.set_range_end(PrefixEnd(store->options_.prefix));
  list.set_keys_only(true);
  absl::StatusOr<etcd::RangeResponse> listed = store->CallProto<etcd::RangeResponse>(kRange, list);
  if (!listed.ok()) return listed.status();
  store->SeenRevision(listed->header().revision());
  // Other replicas' leased keys with their values, as of the same revision.
  etcd::RangeRequest leased;
  leased.set_key(store->leased_prefix_);
  leased.set_range_end(PrefixEnd(leased.key()));
  leased.set_revision(listed->header().revision());
  absl::StatusOr<etcd::RangeResponse> others =
      store->CallProto<etcd::RangeResponse>(kRange, leased);
  if (!others.ok()) return others.status();
  store->loop_.Post([s, listed = std::move(*listed), others = std::move(*others)] {
    for (const etcd::KeyValue& kv : listed.kvs()) s->known_[kv.key()] = kv.mod_revision();
    std::vector<LeasedKeyEvent> unused;
    for (const etcd::KeyValue& kv : others.kvs()) s->NoteLeased(kv.key(), kv.value(), unused);
    s->next_watch_revision_ = listed.header().revision() + 1;
    s->StartWatch();
  });
  return store;
}

EtcdStore::~EtcdStore() {
  if (thread_.joinable()) {
    loop_.Post([this] {
      stopping_ = true;
      if (watch_ != nullptr) watch_->Cancel();
      if (keepalive_ != nullptr) keepalive_->Cancel();
      if (lease_id_ == 0) {
        loop_.Stop();
        return;
      }
      // Goodbye: the leased keys vanish now rather than when the lease runs out.
      etcd::LeaseRevokeRequest revoke;
      revoke.set_id(lease_id_);
      http::grpc::CallOptions call;
      call.timeout = std::min<Duration>(options_.request_timeout, std::chrono::seconds(2));
      if (!token_.empty()) call.metadata.Add("token", token_);
      channels_[current_]->Unary(kLeaseRevoke, revoke.SerializeAsString(), std::move(call),
                                 [this](StatusCode code, const std::string& message, std::string) {
                                   if (code != StatusCode::kOk) {
                                     LOG(WARN)
                                         << "etcd store: revoking lease " << LeaseOwner(lease_id_)
                                         << ": " << message << " (its keys go when it expires)";
                                   }
                                   loop_.Stop();
                                 });
    });
    thread_.join();
  }
}

absl::StatusOr<std::string> EtcdStore::Call(absl::string_view method, std::string request) const {
  if (loop_.IsInLoopThread()) {
    return absl::FailedPreconditionError(
        "etcd store: called from its own thread (a watch callback must not call the store)");
  }
  struct State {
    Notification done;
    absl::StatusOr<std::string> result = absl::UnavailableError("no endpoint tried");
  };
  auto state = std::make_shared<State>();
  // Tries the current endpoint, and on UNAVAILABLE each of the others once, on the store thread.
  auto attempt = std::make_shared<std::function<void(size_t)>>();
  *attempt = [this, state, attempt, method_name = std::string(method),
              request = std::move(request)](size_t tried) {
    const size_t index = current_;
    http::grpc::CallOptions call;
    call.timeout = options_.request_timeout;
    if (!token_.empty()) call.metadata.Add("token", token_);
    channels_[index]->Unary(
        method_name, request, std::move(call),
        [this, state, attempt, index, tried, method_name](
            StatusCode code, const std::string& message, std::string response) {
          absl::Status status = FromGrpc(
              code, message,
              absl::StrCat(options_.endpoints[index].address.ToString(), " ", method_name));
          if (absl::IsUnavailable(status) && tried + 1 < channels_.size()) {
            if (current_ == index) current_ = (index + 1) % channels_.size();
            (*attempt)(tried + 1);
            return;
          }
          if (status.ok()) {
            state->result = std::move(response);
          } else {
            state->result = status;
          }
          state->done.Notify();
          *attempt = nullptr;  // the closure holds `attempt`: break the cycle
        });
  };
  loop_.Post([attempt] { (*attempt)(0); });
  // Each endpoint gets its timeout; a little more for the store thread to answer.
  const Duration wait = options_.request_timeout * static_cast<int64_t>(options_.endpoints.size()) +
                        std::chrono::seconds(1);
  if (!state->done.WaitForNotificationWithTimeout(wait)) {
    absl::Status timeout =
        absl::UnavailableError(absl::StrCat("etcd ", method, ": no answer within the timeout"));
    NoteOutcome(timeout);
    return timeout;
  }
  NoteOutcome(state->result.status());
  return std::move(state->result);
}

namespace {
int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void EtcdStore::NoteOutcome(const absl::Status& status) const {
  const bool unanswered = absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
  (unanswered ? last_unanswered_ns_ : last_answer_ns_)
      .store(SteadyNanos(), std::memory_order_relaxed);
}

bool EtcdStore::Up() const {
  const int64_t answer = last_answer_ns_.load(std::memory_order_relaxed);
  const int64_t unanswered = last_unanswered_ns_.load(std::memory_order_relaxed);
  return answer != 0 && answer >= unanswered &&
         SteadyNanos() - answer <=
             std::chrono::duration_cast<std::chrono::nanoseconds>(options_.up_window).count();
}

template <typename Response, typename Request>
absl::StatusOr<Response> EtcdStore::CallProto(absl::string_view method,
                                              const Request& request) const {
  absl::StatusOr<std::string> bytes = Call(method, request.SerializeAsString());
  if (!bytes.ok()) return bytes.status();
  Response response;
  if (!response.ParseFromString(*bytes)) {
    return absl::InternalError(absl::StrCat("etcd ", method, ": the answer does not parse"));
  }
  return response;
}

std::string EtcdStore::KeyFor(const ResourceKey& key) const {
  return absl::StrCat(options_.prefix, key.kind, "/",
                      key.namespace_.empty() ? kClusterScope : key.namespace_, "/", key.name);
}

std::optional<ResourceKey> EtcdStore::KeyFrom(absl::string_view etcd_key) const {
  if (!absl::StartsWith(etcd_key, options_.prefix)) return std::nullopt;
  std::vector<std::string> parts =
      absl::StrSplit(etcd_key.substr(options_.prefix.size()), absl::MaxSplits('/', 2));
  if (parts.size() != 3) return std::nullopt;
  ResourceKey key{std::move(parts[0]), parts[1] == kClusterScope ? "" : std::move(parts[1]),
                  std::move(parts[2])};
  if (!ValidateResourceKey(key).ok()) return std::nullopt;
  return key;
}

void EtcdStore::SeenRevision(int64_t revision) const {
  MutexLock lock(&mu_);
  revision_ = std::max(revision_, revision);
}

absl::StatusOr<StoredResource> EtcdStore::Get(const ResourceKey& key) const {
  if (absl::Status valid = ValidateResourceKey(key); !valid.ok()) return valid;
  etcd::RangeRequest get;
  get.set_key(KeyFor(key));
  absl::StatusOr<etcd::RangeResponse> got = CallProto<etcd::RangeResponse>(kRange, get);
  if (!got.ok()) return got.status();
  SeenRevision(got->header().revision());
  if (got->kvs_size() == 0) return absl::NotFoundError(absl::StrCat(key.ToString(), " not found"));
  return Resource(key, got->kvs(0));
}

absl::StatusOr<std::vector<StoredResource>> EtcdStore::List(absl::string_view kind,
                                                            absl::string_view namespace_) const {
  std::string from = options_.prefix;
  if (!kind.empty()) {
    absl::StrAppend(&from, kind, "/");
    if (!namespace_.empty()) absl::StrAppend(&from, namespace_, "/");
  }
  etcd::RangeRequest list;
  list.set_key(from);
  list.set_range_end(PrefixEnd(from));
  absl::StatusOr<etcd::RangeResponse> listed = CallProto<etcd::RangeResponse>(kRange, list);
  if (!listed.ok()) return listed.status();
  SeenRevision(listed->header().revision());
  std::vector<StoredResource> out;
  for (const etcd::KeyValue& kv : listed->kvs()) {
    std::optional<ResourceKey> key = KeyFrom(kv.key());
    if (!key.has_value()) continue;  // not a resource of ours
    if (kind.empty() && !namespace_.empty() && key->namespace_ != namespace_) continue;
    out.push_back(Resource(*key, kv));
  }
  // etcd orders by bytes ("ns-a/" before "ns/"); the Store contract orders by key.
  std::sort(out.begin(), out.end(),
            [](const StoredResource& a, const StoredResource& b) { return a.key < b.key; });
  return out;
}

absl::StatusOr<int64_t> EtcdStore::Put(const ResourceKey& key, absl::string_view body,
                                       int64_t expected_revision) {
  if (absl::Status valid = ValidateResourceKey(key); !valid.ok()) return valid;
  const std::string etcd_key = KeyFor(key);
  etcd::TxnRequest txn;
  if (expected_revision == kMustNotExist) {
    etcd::Compare* absent = txn.add_compare();
    absent->set_key(etcd_key);
    absent->set_target(etcd::Compare::CREATE);
    absent->set_result(etcd::Compare::EQUAL);
    absent->set_create_revision(0);
  } else if (expected_revision > 0) {
    etcd::Compare* same = txn.add_compare();
    same->set_key(etcd_key);
    same->set_target(etcd::Compare::MOD);
    same->set_result(etcd::Compare::EQUAL);
    same->set_mod_revision(expected_revision);
  }
  etcd::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(etcd_key);
  put->set_value(std::string(body));
  txn.add_failure()->mutable_request_range()->set_key(etcd_key);
  absl::StatusOr<etcd::TxnResponse> done = CallProto<etcd::TxnResponse>(kTxn, txn);
  if (!done.ok()) return done.status();
  SeenRevision(done->header().revision());
  if (done->succeeded()) return done->header().revision();
  if (expected_revision == kMustNotExist) {
    return absl::AlreadyExistsError(absl::StrCat(key.ToString(), " already exists"));
  }
  return CompareFailed(key, expected_revision, *done,
                       absl::FailedPreconditionError(
                           absl::StrCat(key.ToString(), ": resourceVersion ", expected_revision,
                                        " given, but it does not exist")));
}

absl::StatusOr<int64_t> EtcdStore::Delete(const ResourceKey& key, int64_t expected_revision) {
  if (absl::Status valid = ValidateResourceKey(key); !valid.ok()) return valid;
  const std::string etcd_key = KeyFor(key);
  etcd::TxnRequest txn;
  etcd::Compare* exists = txn.add_compare();
  exists->set_key(etcd_key);
  if (expected_revision == kAnyRevision) {
    exists->set_target(etcd::Compare::CREATE);
    exists->set_result(etcd::Compare::GREATER);
    exists->set_create_revision(0);
  } else {
    exists->set_target(etcd::Compare::MOD);
    exists->set_result(etcd::Compare::EQUAL);
    exists->set_mod_revision(expected_revision);
  }
  txn.add_success()->mutable_request_delete_range()->set_key(etcd_key);
  txn.add_failure()->mutable_request_range()->set_key(etcd_key);
  absl::StatusOr<etcd::TxnResponse> done = CallProto<etcd::TxnResponse>(kTxn, txn);
  if (!done.ok()) return done.status();
  SeenRevision(done->header().revision());
  if (done->succeeded()) return done->header().revision();
  return CompareFailed(key, expected_revision, *done,
                       absl::NotFoundError(absl::StrCat(key.ToString(), " not found")));
}

int64_t EtcdStore::Revision() const {
  MutexLock lock(&mu_);
  return revision_;
}

std::unique_ptr<Store::WatchHandle> EtcdStore::Watch(Store::WatchCallback callback) {
  // "Every change after this call": changes up to etcd's current revision may still be on their
  // way through the watch stream, so this watcher skips those.
  int64_t after = Revision();
  etcd::RangeRequest now;
  now.set_key(options_.prefix);
  now.set_count_only(true);
  if (absl::StatusOr<etcd::RangeResponse> r = CallProto<etcd::RangeResponse>(kRange, now); r.ok()) {
    after = std::max(after, r->header().revision());
  }
  MutexLock lock(&mu_);
  uint64_t id = next_watch_id_++;
  watchers_.emplace(id, std::make_shared<Registered>(Registered{std::move(callback), after}));
  return std::make_unique<Watcher>(this, id);
}

uint64_t EtcdStore::watches_started() const {
  MutexLock lock(&mu_);
  return watches_started_;
}

uint64_t EtcdStore::relists() const {
  MutexLock lock(&mu_);
  return relists_;
}

void EtcdStore::StartWatch() {
  if (stopping_) return;
  {
    MutexLock lock(&mu_);
    ++watches_started_;
  }
  http::grpc::CallOptions call;
  if (!token_.empty()) call.metadata.Add("token", token_);
  watch_ = channels_[current_]->StartCall(kWatch, std::move(call));
  auto compacted = std::make_shared<bool>(false);
  watch_->OnProtoMessage<etcd::WatchResponse>([this, compacted](etcd::WatchResponse response) {
    if (response.compact_revision() > 0 || response.canceled()) {
      // etcd cancels the watch but keeps the stream: end it (OnFinish goes on from there). A
      // compacted start revision means listing again.
      *compacted = response.compact_revision() > 0;
      watch_->Cancel();
      return;
    }
    watch_backoff_ = Duration::zero();
    std::vector<WatchEvent> events;
    std::vector<LeasedKeyEvent> leased;
    for (const etcd::Event& event : response.events()) {
      const etcd::KeyValue& kv = event.kv();
      next_watch_revision_ = std::max(next_watch_revision_, kv.mod_revision() + 1);
      if (absl::StartsWith(kv.key(), leased_prefix_)) {
        NoteLeased(kv.key(),
                   event.type() == etcd::Event::DELETE ? std::nullopt
                                                       : std::optional<std::string>(kv.value()),
                   leased);
        continue;
      }
      std::optional<ResourceKey> key = KeyFrom(kv.key());
      if (!key.has_value()) continue;
      if (event.type() == etcd::Event::DELETE) {
        known_.erase(kv.key());
        events.push_back({WatchEvent::Type::kDelete,
                          StoredResource{.key = *key, .revision = kv.mod_revision()}});
      } else {
        known_[kv.key()] = kv.mod_revision();
        events.push_back({WatchEvent::Type::kPut, Resource(*key, kv)});
      }
    }
    if (response.header().revision() > 0) SeenRevision(response.header().revision());
    Deliver(events);
    DeliverLeased(leased);
  });
  watch_->OnFinish(
      [this, compacted](StatusCode code, const std::string& message, const http::HeaderMap&) {
        if (stopping_) return;
        LOG(WARN) << "etcd store: watch on " << options_.endpoints[current_].address.ToString()
                  << " ended (" << static_cast<int>(code) << " " << message << ")"
                  << (*compacted ? "; its revision was compacted, listing again" : "");
        OnWatchEnded(*compacted);
      });
  etcd::WatchRequest create;
  etcd::WatchCreateRequest* request = create.mutable_create_request();
  request->set_key(options_.prefix);
  request->set_range_end(PrefixEnd(options_.prefix));
  request->set_start_revision(next_watch_revision_);
  watch_->SendProto(create);
}

void EtcdStore::OnWatchEnded(bool compacted) {
  watch_.reset();
  if (compacted) {
    Relist();
    return;
  }
  // Another endpoint next time, after a growing pause.
  current_ = (current_ + 1) % channels_.size();
  watch_backoff_ = std::min<Duration>(
      watch_backoff_ == Duration::zero() ? options_.watch_retry : watch_backoff_ * 2,
      options_.watch_retry_cap);
  watch_retry_timer_->Enable(watch_backoff_);
}

void EtcdStore::Relist() {
  {
    MutexLock lock(&mu_);
    ++relists_;
  }
  etcd::RangeRequest list;
  list.set_key(options_.prefix);
  list.set_range_end(PrefixEnd(options_.prefix));
  http::grpc::CallOptions call;
  call.timeout = options_.request_timeout;
  if (!token_.empty()) call.metadata.Add("token", token_);
  channels_[current_]->Unary(
      kRange, list.SerializeAsString(), std::move(call),
      [this](StatusCode code, const std::string& message, std::string bytes) {
        etcd::RangeResponse listed;
        if (stopping_) return;
        if (code != StatusCode::kOk || !listed.ParseFromString(bytes)) {
          LOG(WARN) << "etcd store: listing after a compaction failed (" << message
                    << "); trying again";
          current_ = (current_ + 1) % channels_.size();
          relist_pending_ = true;
          watch_retry_timer_->Enable(options_.watch_retry);
          return;
        }
        const int64_t revision = listed.header().revision();
        std::vector<WatchEvent> events;
        std::vector<LeasedKeyEvent> leased;
        std::map<std::string, int64_t> now;
        std::set<std::string> leased_now;
        for (const etcd::KeyValue& kv : listed.kvs()) {
          if (absl::StartsWith(kv.key(), leased_prefix_)) {
            leased_now.insert(kv.key());
            NoteLeased(kv.key(), kv.value(), leased);
            continue;
          }
          now[kv.key()] = kv.mod_revision();
          auto it = known_.find(kv.key());
          if (it != known_.end() && it->second == kv.mod_revision()) continue;
          if (std::optional<ResourceKey> key = KeyFrom(kv.key())) {
            events.push_back({WatchEvent::Type::kPut, Resource(*key, kv)});
          }
        }
        for (const auto& [etcd_key, mod] : known_) {
          if (now.count(etcd_key) > 0) continue;
          if (std::optional<ResourceKey> key = KeyFrom(etcd_key)) {
            // The deleting revision is unknown (compacted): the list's revision bounds it.
            events.push_back(
                {WatchEvent::Type::kDelete, StoredResource{.key = *key, .revision = revision}});
          }
        }
        std::vector<std::string> vanished;
        for (const auto& [etcd_key, other] : leased_others_) {
          if (leased_now.count(etcd_key) == 0) vanished.push_back(etcd_key);
        }
        for (const std::string& etcd_key : vanished) NoteLeased(etcd_key, std::nullopt, leased);
        known_ = std::move(now);
        next_watch_revision_ = revision + 1;
        SeenRevision(revision);
        relist_pending_ = false;
        Deliver(events);
        DeliverLeased(leased);
        StartWatch();
      });
}

void EtcdStore::Deliver(const std::vector<WatchEvent>& events) {
  if (events.empty()) return;
  std::vector<std::shared_ptr<Registered>> watchers;
  {
    MutexLock lock(&mu_);
    for (const auto& [id, watcher] : watchers_) watchers.push_back(watcher);
  }
  for (const WatchEvent& event : events) {
    for (const auto& watcher : watchers) {
      if (event.resource.revision > watcher->after) watcher->callback(event);
    }
  }
}

}  // namespace meshlet::controlplane
