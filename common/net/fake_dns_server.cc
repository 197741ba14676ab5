#include "common/net/fake_dns_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "common/base/logging.h"
#include "common/net/ip_prefix.h"

namespace meshlet::net {

FakeDnsServer::FakeDnsServer() {
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  CHECK(fd_ >= 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
  socklen_t len = sizeof sin;
  CHECK(::getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len) == 0);
  address_ = *Address::FromSockaddr(reinterpret_cast<sockaddr*>(&sin), len);
  thread_ = std::thread([this] { Serve(); });
}

FakeDnsServer::~FakeDnsServer() {
  stop_ = true;
  thread_.join();
  ::close(fd_);
}

void FakeDnsServer::Set(const std::string& name, Records records) {
  std::lock_guard<std::mutex> lock(mu_);
  records_[name] = std::move(records);
}

void FakeDnsServer::Remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  records_.erase(name);
}

int FakeDnsServer::queries_for(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = asked_.find(name);
  return it == asked_.end() ? 0 : it->second;
}

void FakeDnsServer::Serve() {
  char buffer[1500];
  while (!stop_) {
    pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    sockaddr_storage from{};
    socklen_t from_len = sizeof from;
    ssize_t n =
        ::recvfrom(fd_, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n <= 0) continue;
    std::string reply = Answer(std::string(buffer, static_cast<size_t>(n)));
    if (reply.empty()) continue;
    ++queries_;
    ::sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
  }
}

std::string FakeDnsServer::Answer(const std::string& query) {
  if (query.size() < 12) return "";
  // The question: labels, then type and class.
  size_t pos = 12;
  std::string name;
  while (pos < query.size() && query[pos] != 0) {
    const size_t length = static_cast<uint8_t>(query[pos]);
    if (pos + 1 + length > query.size()) return "";
    if (!name.empty()) name += ".";
    name += query.substr(pos + 1, length);
    pos += 1 + length;
  }
  if (pos + 5 > query.size()) return "";
  const size_t question_end = pos + 5;
  const uint16_t qtype = static_cast<uint16_t>(static_cast<uint8_t>(query[pos + 1]) << 8 |
                                               static_cast<uint8_t>(query[pos + 2]));
  name = absl::AsciiStrToLower(name);
  std::vector<std::string> rdata;
  uint32_t ttl = 0;
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++asked_[name];
    auto it = records_.find(name);
    if (it != records_.end()) {
      known = true;
      ttl = it->second.ttl;
      for (const std::string& text : it->second.addresses) {
        absl::StatusOr<IpAddress> ip = IpAddress::Parse(text);
        if (!ip.ok() || (ip->is_v4() ? 1 : 28) != qtype) continue;
        rdata.emplace_back(reinterpret_cast<const char*>(ip->bytes().data()), ip->is_v4() ? 4 : 16);
      }
    }
  }
  std::string out = query.substr(0, 2);                                    // id
  out += known ? std::string("\x81\x80", 2) : std::string("\x81\x83", 2);  // NXDOMAIN: rcode 3
  out += std::string("\x00\x01", 2);                                       // one question
  out += static_cast<char>(rdata.size() >> 8);
  out += static_cast<char>(rdata.size() & 0xFF);
  out += std::string(4, '\0');  // no authority, no additional
  out += query.substr(12, question_end - 12);
  for (const std::string& r : rdata) {
    out += std::string("\xC0\x0C", 2);  // the question's name
    out += static_cast<char>(0);
    out += static_cast<char>(qtype);
    out += std::string("\x00\x01", 2);  // IN
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((ttl >> shift) & 0xFF);
    out += static_cast<char>(0);
    out += static_cast<char>(r.size());
    out += r;
  }
  return out;
}

}  // namespace meshlet::net
