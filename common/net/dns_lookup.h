#pragma once

// DnsLookup: a name's IPv4 and IPv6 addresses and how long they may be kept (the answers' TTL),
// without blocking the event loop: the A and AAAA queries run on libuv's thread pool through the
// C library's resolver (res_nsearch: /etc/resolv.conf's servers, search list and ndots), or ask
// one given server. For what must follow a name's changes (the sidecar's DNS clusters);
// HostLookup (getaddrinfo) is for a one-off connect.
//
// Ownership and callback timing: the caller owns the DnsLookup; the Loop must outlive it. `done`
// runs exactly once, on the loop thread, never from inside Start(), and never after the
// DnsLookup was destroyed. Destroying it (from anywhere, inside `done` too) cancels the lookup:
// a query already running on the pool finishes there and its answer is dropped. Loop thread
// only.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/event/loop.h"
#include "common/net/address.h"
#include "common/net/ip_prefix.h"

namespace meshlet::net {

struct DnsAnswer {
  std::vector<IpAddress> addresses;  // A then AAAA records, each family in the answer's order
  Duration ttl = Duration::zero();   // the smallest TTL of the records used (CNAMEs included)
};

struct DnsLookupOptions {
  // Ask only this server (UDP, then TCP for a truncated answer); unset: the C library's
  // configuration. IPv4 servers only.
  std::optional<Address> server;
  Duration timeout = std::chrono::seconds(2);  // per query attempt
  int attempts = 2;
};

// The addresses of type `qtype` (1: A, 28: AAAA) in the DNS response `message`, with the
// smallest TTL of the answer records read (those of the CNAMEs leading to them included).
// InvalidArgument when the message is malformed; an empty answer is not an error.
absl::StatusOr<DnsAnswer> ParseDnsAnswer(absl::string_view message, uint16_t qtype);

class DnsLookup {
 public:
  // NotFound ("NAME: no such name") for NXDOMAIN; Unavailable ("NAME: ...") when no answer came
  // or the name has no address of either family.
  using Done = absl::AnyInvocable<void(absl::StatusOr<DnsAnswer>)>;

  static std::unique_ptr<DnsLookup> Start(event::Loop& loop, std::string name,
                                          const DnsLookupOptions& options, Done done);
  ~DnsLookup();
  DnsLookup(const DnsLookup&) = delete;
  DnsLookup& operator=(const DnsLookup&) = delete;

  struct Request;  // internal: owned by libuv from uv_queue_work until its callback

 private:
  friend void DnsLookupAnswered(DnsLookup* owner, absl::StatusOr<DnsAnswer> result);
  explicit DnsLookup(Done done) : done_(std::move(done)) {}
  void Finish(absl::StatusOr<DnsAnswer> result);

  Done done_;
  Request* request_ = nullptr;
};

}  // namespace meshlet::net
