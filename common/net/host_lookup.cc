#include "common/net/host_lookup.h"

#include <netdb.h>
#include <uv.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace meshlet::net {

struct HostLookup::Request {
  uv_getaddrinfo_t req;
  std::string host;
  HostLookup* owner;  // null once the HostLookup is gone: the answer is dropped
};

void HostLookupResolved(HostLookup* owner, absl::StatusOr<std::vector<Address>> result) {
  owner->request_ = nullptr;
  owner->Finish(std::move(result));
}

namespace {

void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
  auto* request = static_cast<HostLookup::Request*>(req->data);
  absl::StatusOr<std::vector<Address>> found = std::vector<Address>();
  if (status != 0) {
    found = absl::UnavailableError(
        absl::StrCat("cannot resolve \"", request->host, "\": ", uv_strerror(status)));
  } else {
    for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
      absl::StatusOr<Address> address = Address::FromSockaddr(ai->ai_addr, ai->ai_addrlen);
      if (address.ok()) found->push_back(*address);
    }
    if (found->empty()) {
      found = absl::UnavailableError(
          absl::StrCat("cannot resolve \"", request->host, "\": no IP address"));
    }
  }
  uv_freeaddrinfo(result);
  HostLookup* owner = request->owner;
  delete request;
  if (owner != nullptr) HostLookupResolved(owner, std::move(found));
}

}  // namespace

HostLookup::HostLookup(event::Loop& loop, Done done)
    : done_(std::move(done)), literal_timer_(loop, [this] { Finish(std::move(literal_)); }) {}

std::unique_ptr<HostLookup> HostLookup::Start(event::Loop& loop, std::string host, uint16_t port,
                                              Done done) {
  std::unique_ptr<HostLookup> lookup(new HostLookup(loop, std::move(done)));
  // An IP literal (brackets already removed) needs no resolver.
  if (absl::StatusOr<Address> literal = Address::FromIp(host, port); literal.ok()) {
    lookup->literal_ = std::vector<Address>{*literal};
    lookup->literal_timer_.Enable(std::chrono::milliseconds(0));
    return lookup;
  }
  auto* request = new Request{.req = {}, .host = host, .owner = lookup.get()};
  request->req.data = request;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string service = absl::StrCat(port);
  if (int rc = uv_getaddrinfo(loop.uv_loop(), &request->req, OnResolved, request->host.c_str(),
                              service.c_str(), &hints);
      rc != 0) {
    lookup->literal_ =
        absl::UnavailableError(absl::StrCat("cannot resolve \"", host, "\": ", uv_strerror(rc)));
    delete request;
    lookup->literal_timer_.Enable(std::chrono::milliseconds(0));
    return lookup;
  }
  lookup->request_ = request;
  return lookup;
}

HostLookup::~HostLookup() {
  if (request_ != nullptr) {
    request_->owner = nullptr;
    // Not started yet: the pool drops it and the callback runs with UV_ECANCELED; running: it
    // finishes and the callback frees it. Either way the answer goes nowhere.
    uv_cancel(reinterpret_cast<uv_req_t*>(&request_->req));
  }
}

void HostLookup::Finish(absl::StatusOr<std::vector<Address>> result) {
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(std::move(result));  // may destroy this
}

}  // namespace meshlet::net
