#pragma once

// FakeDnsServer: a DNS server on 127.0.0.1 (UDP, a port of its own) for tests: it answers A and
// AAAA queries from records the test sets, and can change them while it runs. Unknown names get
// NXDOMAIN; a known name without records of the asked type gets an empty answer (NODATA). It
// serves on a thread of its own until destroyed. Thread-safe.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/net/address.h"

namespace meshlet::net {

class FakeDnsServer {
 public:
  struct Records {
    std::vector<std::string> addresses;  // IPv4 and IPv6 texts
    uint32_t ttl = 30;
  };

  FakeDnsServer();
  ~FakeDnsServer();
  FakeDnsServer(const FakeDnsServer&) = delete;
  FakeDnsServer& operator=(const FakeDnsServer&) = delete;

  const Address& address() const { return address_; }
  // Replaces `name`'s records (lower case, no trailing dot).
  void Set(const std::string& name, Records records);
  void Remove(const std::string& name);
  // Queries answered so far, and those asking for `name`.
  int queries() const { return queries_.load(); }
  int queries_for(const std::string& name) const;

 private:
  void Serve();
  std::string Answer(const std::string& query);

  int fd_ = -1;
  Address address_;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  mutable std::mutex mu_;
  std::map<std::string, Records> records_;
  std::map<std::string, int> asked_;
  std::thread thread_;
};

}  // namespace meshlet::net
