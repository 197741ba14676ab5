// Fuzz target for the policy API's request handling (PolicyApi::Handle): paths and query strings,
// YAML/JSON bodies of every kind, validation, resourceVersion preconditions, dry runs and address
// allocation, against a fresh FileStore per input (in /dev/shm when there is one).
//
// Input layout: up to 8 requests separated by "\n%%\n". Each is "METHOD PATH\n" then the body;
// every request is an admin's (the access gate, which lets requests in, is not under test here);
// each also asks PolicyApi::RequiredRole, which must not crash. Invariants: a status is 2xx, 4xx or
// 503 (a 500 means bad input reached the store or an internal path: a bug); every JSON answer
// parses as JSON; a created or updated resource reads back (GET 200) until something deletes it.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/base/fake_clock.h"
#include "common/fuzz/fuzz_target.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "control-plane/api/api_server.h"
#include "control-plane/registry/registry.h"
#include "control-plane/store/file_store.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace meshlet::controlplane::api {
namespace {

constexpr size_t kMaxRequests = 8;

[[noreturn]] void Die(const char* what, const http::ServerResponse& response,
                      absl::string_view request) {
  std::fprintf(stderr, "api_request_fuzz invariant broken: %s\nrequest: %.*s\nanswer %d: %s\n",
               what, static_cast<int>(request.size()), request.data(), response.status,
               response.body.c_str());
  std::abort();
}

const std::string& StoreDir() {
  static const std::string* dir = [] {
    std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    static std::string d = base + "/meshlet-api-fuzz-XXXXXX";
    if (mkdtemp(d.data()) == nullptr) std::abort();
    // Removed when the process exits normally (a crash leaves it, with the input that caused it).
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(d, ignored);
    });
    return new std::string(d + "/store");
  }();
  return *dir;
}

http::ServerResponse Call(PolicyApi& api, absl::string_view method, absl::string_view path,
                          absl::string_view body) {
  http::ServerRequest request;
  request.headers.Add(":method", method);
  request.headers.Add(":path", path);
  request.body = std::string(body);
  (void)PolicyApi::RequiredRole(request);
  static const access::Principal kAdmin{
      .name = "api-token", .credential = "api-token", .role = access::Role::kAdmin};
  return api.Handle(request, &kAdmin);
}

void FuzzOne(absl::string_view input) {
  std::error_code ignored;
  std::filesystem::remove_all(StoreDir(), ignored);
  absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::Open(StoreDir());
  if (!store.ok()) std::abort();
  FakeClock clock;
  StatsRegistry stats;
  registry::Registry registry(clock);
  PolicyApi api(**store, &registry, clock, ApiOptions{}, &stats);

  std::vector<absl::string_view> requests = absl::StrSplit(input, "\n%%\n");
  if (requests.size() > kMaxRequests) requests.resize(kMaxRequests);
  for (absl::string_view request : requests) {
    size_t line_end = request.find('\n');
    absl::string_view line = request.substr(0, line_end);
    absl::string_view body =
        line_end == absl::string_view::npos ? "" : request.substr(line_end + 1);
    size_t space = line.find(' ');
    if (space == absl::string_view::npos) continue;
    absl::string_view method = line.substr(0, space);
    absl::string_view path = line.substr(space + 1);
    http::ServerResponse response = Call(api, method, path, body);

    if (response.status < 200 || response.status > 599 || response.status == 500 ||
        (response.status >= 300 && response.status < 400)) {
      Die("unexpected status", response, request);
    }
    std::optional<absl::string_view> type = response.headers.Get("content-type");
    if (type.has_value() && absl::StartsWith(*type, "application/json")) {
      google::protobuf::Value value;
      if (!google::protobuf::util::JsonStringToMessage(response.body, &value).ok()) {
        Die("a JSON answer that is not JSON", response, request);
      }
    }
    // A write that succeeded (not a dry run) reads back.
    if ((method == "PUT" || method == "POST") &&
        (response.status == 200 || response.status == 201) && !absl::StrContains(path, "dryRun") &&
        absl::StartsWith(path, "/apis/")) {
      absl::string_view read_path = path.substr(0, path.find('?'));
      std::string from_body;
      if (method == "POST") {
        // POST names the collection; the body's metadata.name completes the path.
        google::protobuf::Value value;
        if (!google::protobuf::util::JsonStringToMessage(response.body, &value).ok()) continue;
        const auto& fields = value.struct_value().fields();
        auto metadata = fields.find("metadata");
        if (metadata == fields.end()) continue;
        const auto& meta = metadata->second.struct_value().fields();
        auto name = meta.find("name");
        if (name == meta.end()) continue;
        from_body = std::string(read_path) + "/" + name->second.string_value();
        read_path = from_body;
      }
      http::ServerResponse read = Call(api, "GET", read_path, "");
      if (read.status != 200) Die("a written resource does not read back", read, request);
    }
  }
}

}  // namespace
}  // namespace meshlet::controlplane::api

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  const std::string ns = "/apis/meshlet.io/v1/namespaces/default";
  const std::string service =
      "apiVersion: meshlet.io/v1\nkind: Service\nmetadata:\n  name: reviews\nspec:\n  ports:\n"
      "  - name: http\n    port: 9080\n";
  const std::string policy =
      "apiVersion: meshlet.io/v1\nkind: TrafficPolicy\nmetadata:\n  name: reviews\nspec:\n"
      "  target: reviews\n  loadBalancer: LEAST_REQUEST\n  timeouts:\n    connect: 1s\n"
      "    request: 2s\n    perTry: 500ms\n  retries:\n    attempts: 3\n"
      "    retryOn: [connect-failure, refused-stream, reset, retriable-status-codes]\n"
      "    retriableStatusCodes: [503]\n    backoffBase: 25ms\n    backoffMax: 250ms\n"
      "    budgetPercent: 20\n  outlierDetection:\n    consecutive5xx: 5\n"
      "    baseEjectionTime: 30s\n    maxEjectionPercent: 50\n";
  const std::string route =
      R"({"apiVersion":"meshlet.io/v1","kind":"HTTPRoute","metadata":{"name":"reviews"},)"
      R"("spec":{"target":"reviews","rules":[{"name":"canary","matches":[{"headers":[{"name":)"
      R"("x-canary","value":"always"}]}],"backends":[{"service":"reviews","subset":)"
      R"({"version":"v2"}}]},{"name":"split","backends":[{"service":"reviews","subset":)"
      R"({"version":"v1"},"weight":90},{"service":"reviews","subset":{"version":"v2"},)"
      R"("weight":10}],"responseHeaders":{"set":{"x-meshlet-route":"split"}}}]}})";
  const std::string mesh = "kind: MeshConfig\nmetadata: {name: mesh}\nspec: {}\n";
  return {
      "PUT " + ns + "/services/reviews\n" + service,
      "POST " + ns + "/services\n" + service + "\n%%\nGET " + ns + "/services/reviews\n",
      "PUT " + ns + "/trafficpolicies/reviews?dryRun=All\n" + policy,
      "PUT " + ns + "/trafficpolicies/reviews\n" + policy + "\n%%\nPUT " + ns +
          "/trafficpolicies/reviews\n" + policy + "\n%%\nDELETE " + ns +
          "/trafficpolicies/reviews\n",
      "POST " + ns + "/httproutes\n" + route + "\n%%\nGET /apis/meshlet.io/v1/httproutes\n",
      "PUT /apis/meshlet.io/v1/meshconfigs/mesh\n" + mesh,
      "GET /apis/meshlet.io/v1\n%%\nGET /api/v1/workloads\n%%\nGET /healthz\n",
      "PUT " + ns + "/services/reviews\n" + service + "\n%%\nPUT " + ns +
          "/services/reviews\nkind: Service\nmetadata: {name: reviews, resourceVersion: \"7\"}\n"
          "spec: {ports: [{port: 80}]}\n",
  };
}

std::vector<std::string> Dictionary() {
  return {"\n%%\n",
          "GET ",
          "PUT ",
          "POST ",
          "DELETE ",
          "/apis/meshlet.io/v1/namespaces/",
          "/services/",
          "/trafficpolicies/",
          "/httproutes/",
          "/meshconfigs/mesh",
          "?dryRun=All",
          "kind: ",
          "metadata:",
          "resourceVersion",
          "spec:",
          "\"addresses\"",
          "240.240.0.1",
          "weight: ",
          "subset:",
          "{",
          "}",
          "[",
          "]",
          ": ",
          "\n  ",
          "name: ",
          "%2F",
          "..",
          "namespace: "};
}

}  // namespace meshlet::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::controlplane::api::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
