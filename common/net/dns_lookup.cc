#include "common/net/dns_lookup.h"

#include <arpa/nameser.h>
#include <netinet/in.h>
#include <resolv.h>
#include <uv.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/byte_reader.h"

namespace meshlet::net {

namespace {

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeCname = 5;
constexpr uint16_t kTypeAaaa = 28;
constexpr uint16_t kClassIn = 1;

// Past a (possibly compressed) name; its labels are not needed.
bool SkipName(ByteReader& r) {
  while (true) {
    std::optional<uint32_t> length = r.Int(1);
    if (!length.has_value()) return false;
    if ((*length & 0xC0) == 0xC0) return r.Int(1).has_value();  // a pointer ends the name
    if ((*length & 0xC0) != 0) return false;                    // reserved label types
    if (*length == 0) return true;
    if (!r.Bytes(*length).has_value()) return false;
  }
}

}  // namespace

absl::StatusOr<DnsAnswer> ParseDnsAnswer(absl::string_view message, uint16_t qtype) {
  ByteReader r(message);
  std::optional<uint32_t> header[6];
  for (auto& field : header) field = r.Int(2);  // id, flags, and the four section counts
  if (!header[5].has_value())
    return absl::InvalidArgumentError("DNS message shorter than its header");
  const uint32_t questions = *header[2], answers = *header[3];
  for (uint32_t i = 0; i < questions; ++i) {
    if (!SkipName(r) || !r.Bytes(4).has_value()) {  // type and class
      return absl::InvalidArgumentError("DNS message: question section cut short");
    }
  }
  DnsAnswer out;
  bool any_ttl = false;
  uint32_t ttl_seconds = 0;
  for (uint32_t i = 0; i < answers; ++i) {
    std::optional<uint32_t> type, klass, ttl;
    std::optional<absl::string_view> data;
    if (SkipName(r)) {
      type = r.Int(2);
      klass = r.Int(2);
      ttl = r.Int(4);
      data = r.Vector(2);
    }
    if (!type || !klass || !ttl || !data) {
      return absl::InvalidArgumentError(absl::StrCat("DNS message: answer ", i + 1, " cut short"));
    }
    if (*klass != kClassIn || (*type != qtype && *type != kTypeCname)) continue;
    const uint32_t seconds = *ttl > 0x7FFFFFFFu ? 0 : *ttl;  // RFC 2181 8: top bit set is 0
    if (*type == qtype) {
      const size_t want = qtype == kTypeA ? 4 : 16;
      if (data->size() != want) {
        return absl::InvalidArgumentError(absl::StrCat("DNS message: answer ", i + 1, " has ",
                                                       data->size(), " bytes of address"));
      }
      out.addresses.push_back(qtype == kTypeA ? IpAddress::FromV4Bytes(data->data())
                                              : IpAddress::FromV6Bytes(data->data()));
    }
    ttl_seconds = any_ttl ? std::min(ttl_seconds, seconds) : seconds;
    any_ttl = true;
  }
  out.ttl = std::chrono::seconds(ttl_seconds);
  return out;
}

struct DnsLookup::Request {
  uv_work_t work;
  std::string name;
  DnsLookupOptions options;
  absl::StatusOr<DnsAnswer> result = DnsAnswer();
  DnsLookup* owner;  // null once the DnsLookup is gone: the answer is dropped
  bool queued = true;
};

void DnsLookupAnswered(DnsLookup* owner, absl::StatusOr<DnsAnswer> result) {
  owner->request_ = nullptr;
  owner->Finish(std::move(result));
}

namespace {

// On a pool thread: both queries through a resolver state of this call's own.
absl::StatusOr<DnsAnswer> ResolveBlocking(const std::string& name,
                                          const DnsLookupOptions& options) {
  struct __res_state state;
  std::memset(&state, 0, sizeof state);
  if (res_ninit(&state) != 0) {
    return absl::UnavailableError(
        absl::StrCat(name, ": the resolver's configuration (/etc/resolv.conf) is unusable"));
  }
  if (options.server.has_value() && options.server->in4() != nullptr) {
    state.nscount = 1;
    state.nsaddr_list[0] = *options.server->in4();
  }
  state.retrans = std::max<int>(
      1,
      static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(options.timeout).count()));
  state.retry = std::max(1, options.attempts);
  DnsAnswer out;
  bool any_ttl = false, no_such_name = false;
  std::string failure;
  std::vector<unsigned char> buffer(65535);
  for (uint16_t qtype : {kTypeA, kTypeAaaa}) {
    const int n = res_nsearch(&state, name.c_str(), kClassIn, qtype, buffer.data(),
                              static_cast<int>(buffer.size()));
    if (n < 0) {
      switch (state.res_h_errno) {
        case HOST_NOT_FOUND:
          no_such_name = true;
          break;
        case NO_DATA:
          break;  // no record of this family
        case TRY_AGAIN:
          failure = "no answer from the DNS server (a timeout or a server failure)";
          break;
        default:
          failure = "the DNS server refused the query";
      }
      continue;
    }
    absl::StatusOr<DnsAnswer> part = ParseDnsAnswer(
        absl::string_view(reinterpret_cast<const char*>(buffer.data()), static_cast<size_t>(n)),
        qtype);
    if (!part.ok()) {
      failure = std::string(part.status().message());
      continue;
    }
    if (part->addresses.empty()) continue;
    out.addresses.insert(out.addresses.end(), part->addresses.begin(), part->addresses.end());
    out.ttl = any_ttl ? std::min(out.ttl, part->ttl) : part->ttl;
    any_ttl = true;
  }
  res_nclose(&state);
  if (!out.addresses.empty()) return out;
  if (no_such_name) return absl::NotFoundError(absl::StrCat(name, ": no such name"));
  return absl::UnavailableError(
      absl::StrCat(name, ": ", failure.empty() ? "no IPv4 or IPv6 address" : failure));
}

void Work(uv_work_t* work) {
  auto* request = static_cast<DnsLookup::Request*>(work->data);
  request->result = ResolveBlocking(request->name, request->options);
}

void AfterWork(uv_work_t* work, int status) {
  auto* request = static_cast<DnsLookup::Request*>(work->data);
  absl::StatusOr<DnsAnswer> result = std::move(request->result);
  if (status == UV_ECANCELED) result = absl::CancelledError("cancelled");
  DnsLookup* owner = request->owner;
  delete request;
  if (owner != nullptr) DnsLookupAnswered(owner, std::move(result));
}

}  // namespace

std::unique_ptr<DnsLookup> DnsLookup::Start(event::Loop& loop, std::string name,
                                            const DnsLookupOptions& options, Done done) {
  std::unique_ptr<DnsLookup> lookup(new DnsLookup(std::move(done)));
  auto* request =
      new Request{.work = {}, .name = std::move(name), .options = options, .owner = lookup.get()};
  request->work.data = request;
  if (int rc = uv_queue_work(loop.uv_loop(), &request->work, Work, AfterWork); rc != 0) {
    // Not queued: answered on a later turn all the same.
    request->result = absl::UnavailableError(
        absl::StrCat(request->name, ": cannot start the lookup: ", uv_strerror(rc)));
    request->queued = false;
    loop.Post([request] { AfterWork(&request->work, 0); });
  }
  lookup->request_ = request;
  return lookup;
}

DnsLookup::~DnsLookup() {
  if (request_ != nullptr) {
    request_->owner = nullptr;
    if (!request_->queued) return;  // the posted answer frees it
    // Not started yet: the pool drops it and AfterWork runs with UV_ECANCELED; running: it
    // finishes and AfterWork frees it. Either way the answer goes nowhere.
    uv_cancel(reinterpret_cast<uv_req_t*>(&request_->work));
  }
}

void DnsLookup::Finish(absl::StatusOr<DnsAnswer> result) {
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(std::move(result));  // may destroy this
}

}  // namespace meshlet::net
