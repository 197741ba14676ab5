#pragma once

// A control plane for meshctl's tests: answers each request from a table set up by the test
// (method and path to status, body and headers), or fails every request as an unreachable
// server would, and keeps every request it was sent. Unknown requests get a 404 Status body.
// Single-threaded.

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "control-plane/cli/api_client.h"

namespace meshlet::controlplane::cli {

class FakeApiTransport final : public ApiTransport {
 public:
  // `method` `path` (with its query) is answered with `status` and `body`.
  void Answer(const std::string& method, const std::string& path, int status, std::string body,
              std::vector<std::pair<std::string, std::string>> headers = {}) {
    answers_[absl::StrCat(method, " ", path)] =
        HttpResponse{.status = status, .headers = std::move(headers), .body = std::move(body)};
  }

  // Every request fails with `error` from now on, as when no server listens.
  void FailWith(absl::Status error) { error_ = std::move(error); }
  // Requests to `server` fail as if nothing listened there.
  void Unreachable(std::string server) { unreachable_.insert(std::move(server)); }
  // The next `count` requests of `method` fail as if nothing listened (a server restarting).
  void UnreachableFor(std::string method, int count) {
    unreachable_method_ = std::move(method);
    unreachable_for_ = count;
  }

  const std::vector<ApiRequest>& requests() const { return requests_; }

  absl::StatusOr<HttpResponse> Send(const ApiRequest& request) override {
    requests_.push_back(request);
    if (!error_.ok()) return error_;
    const bool restarting = unreachable_for_ > 0 && request.method == unreachable_method_;
    if (restarting || unreachable_.count(request.server) > 0) {
      if (restarting) --unreachable_for_;
      return absl::UnavailableError(absl::StrCat("connect: connection refused"));
    }
    auto it = answers_.find(absl::StrCat(request.method, " ", request.path));
    if (it == answers_.end()) {
      return HttpResponse{.status = 404,
                          .body = absl::StrCat(R"({"message":"no answer for )", request.method, " ",
                                               request.path, R"("})")};
    }
    return it->second;
  }

 private:
  std::map<std::string, HttpResponse> answers_;
  absl::Status error_;
  std::set<std::string> unreachable_;
  std::string unreachable_method_;
  int unreachable_for_ = 0;
  std::vector<ApiRequest> requests_;
};

}  // namespace meshlet::controlplane::cli
