#include "control-plane/access/kubernetes_users.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "common/config/yaml_proto.h"
#include "common/tls/digest.h"

namespace meshlet::controlplane::access {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

absl::StatusOr<Struct> ParseObject(absl::string_view json, absl::string_view what) {
  Struct root;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(std::string(json), &root, options).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the API server's answer is not a ", what));
  }
  return root;
}

// The value at `path` ("status/user/username"), or null.
const Value* Find(const Struct& root, absl::string_view path) {
  const Struct* object = &root;
  const Value* value = nullptr;
  for (absl::string_view key : absl::StrSplit(path, '/')) {
    if (object == nullptr) return nullptr;
    auto it = object->fields().find(std::string(key));
    if (it == object->fields().end()) return nullptr;
    value = &it->second;
    object = value->has_struct_value() ? &value->struct_value() : nullptr;
  }
  return value;
}

std::string StringAt(const Struct& root, absl::string_view path) {
  const Value* v = Find(root, path);
  return v != nullptr && v->has_string_value() ? v->string_value() : "";
}

bool BoolAt(const Struct& root, absl::string_view path) {
  const Value* v = Find(root, path);
  return v != nullptr && v->has_bool_value() && v->bool_value();
}

std::vector<std::string> StringsAt(const Struct& root, absl::string_view path) {
  std::vector<std::string> out;
  const Value* v = Find(root, path);
  if (v == nullptr || !v->has_list_value()) return out;
  for (const Value& item : v->list_value().values()) {
    if (item.has_string_value()) out.push_back(item.string_value());
  }
  return out;
}

bool IsKind(const Struct& root, absl::string_view kind) { return StringAt(root, "kind") == kind; }

std::string JsonList(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const std::string& item : items) quoted.push_back(JsonQuote(item));
  return absl::StrCat("[", absl::StrJoin(quoted, ","), "]");
}

}  // namespace

std::vector<flags::Flag> KubernetesUsersFlags(KubernetesUsersOptions& options) {
  return {
      {.name = "--api-kubernetes-users",
       .value = "on|off",
       .help = "with a Kubernetes API server: accept its users' bearer tokens on the API, "
               "authorized by SubjectAccessReview against the meshlet-viewer, -editor and -admin "
               "ClusterRoles (default on)",
       .set =
           [&options](absl::string_view v) {
             if (v != "on" && v != "off") return absl::InvalidArgumentError("on or off");
             options.enabled = v == "on";
             return absl::OkStatus();
           }},
      {.name = "--api-kubernetes-audiences",
       .value = "LIST",
       .help = "the audiences a Kubernetes user's token must be valid for, comma-separated "
               "(default: the API server's own, those of kubectl's tokens)",
       .set =
           [&options](absl::string_view v) {
             options.audiences = absl::StrSplit(v, ',', absl::SkipEmpty());
             return absl::OkStatus();
           }},
      {.name = "--api-kubernetes-cache-ttl",
       .value = "DURATION",
       .help = "how long the API server's TokenReview and SubjectAccessReview answers are kept "
               "(default 10s; 0: not kept)",
       .set =
           [&options](absl::string_view v) {
             absl::StatusOr<absl::Duration> d = config::ParseDurationText(v);
             if (!d.ok()) return d.status();
             if (*d < absl::ZeroDuration())
               return absl::InvalidArgumentError("must not be negative");
             options.cache_ttl = *d;
             return absl::OkStatus();
           }},
      {.name = "--api-kubernetes-cache-size",
       .value = "N",
       .help = "answers of each kind kept at most (default 1024)",
       .set =
           [&options](absl::string_view v) {
             size_t n = 0;
             if (!absl::SimpleAtoi(v, &n) || n == 0 || n > 1000000) {
               return absl::InvalidArgumentError("must be a whole number from 1 to 1000000");
             }
             options.cache_size = n;
             return absl::OkStatus();
           }},
  };
}

std::string BuildUserTokenReview(absl::string_view token,
                                 const std::vector<std::string>& audiences) {
  std::string spec = absl::StrCat(R"({"token":)", JsonQuote(token));
  if (!audiences.empty()) absl::StrAppend(&spec, R"(,"audiences":)", JsonList(audiences));
  return absl::StrCat(R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":)",
                      spec, "}}");
}

absl::StatusOr<KubernetesUser> ParseUserTokenReview(absl::string_view response_json,
                                                    const std::vector<std::string>& audiences) {
  absl::StatusOr<Struct> review = ParseObject(response_json, "TokenReview");
  if (!review.ok()) return review.status();
  if (!IsKind(*review, "TokenReview")) {
    return absl::InvalidArgumentError("the API server's answer is not a TokenReview");
  }
  if (std::string error = StringAt(*review, "status/error"); !error.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("the Kubernetes API server refused the token: ", error));
  }
  if (!BoolAt(*review, "status/authenticated")) {
    return absl::UnauthenticatedError("the Kubernetes API server did not authenticate the token");
  }
  if (!audiences.empty()) {
    const std::vector<std::string> valid = StringsAt(*review, "status/audiences");
    bool any = false;
    for (const std::string& audience : audiences) {
      any = any || std::find(valid.begin(), valid.end(), audience) != valid.end();
    }
    if (!any) {
      return absl::UnauthenticatedError(absl::StrCat("the token is not valid for the audiences ",
                                                     absl::StrJoin(audiences, ", ")));
    }
  }
  KubernetesUser user{.username = StringAt(*review, "status/user/username"),
                      .uid = StringAt(*review, "status/user/uid"),
                      .groups = StringsAt(*review, "status/user/groups"),
                      .extra_json = "{}"};
  if (user.username.empty()) {
    return absl::UnauthenticatedError("the Kubernetes API server named no user for the token");
  }
  if (const Value* extra = Find(*review, "status/user/extra");
      extra != nullptr && extra->has_struct_value()) {
    std::string json;
    if (google::protobuf::util::MessageToJsonString(extra->struct_value(), &json).ok()) {
      user.extra_json = std::move(json);
    }
  }
  return user;
}

std::string BuildAccessReview(const KubernetesUser& user, Role role) {
  return absl::StrCat(
      R"({"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":)",
      JsonQuote(user.username), R"(,"uid":)", JsonQuote(user.uid), R"(,"groups":)",
      JsonList(user.groups), R"(,"extra":)", user.extra_json, R"(,"resourceAttributes":{"group":)",
      JsonQuote(kKubernetesGroup), R"(,"resource":)", JsonQuote(kKubernetesResource), R"(,"verb":)",
      JsonQuote(KubernetesVerb(role)), "}}}");
}

absl::Status ParseAccessReview(absl::string_view response_json, const KubernetesUser& user,
                               Role role) {
  absl::StatusOr<Struct> review = ParseObject(response_json, "SubjectAccessReview");
  if (!review.ok()) return review.status();
  if (!IsKind(*review, "SubjectAccessReview")) {
    return absl::InvalidArgumentError("the API server's answer is not a SubjectAccessReview");
  }
  if (BoolAt(*review, "status/allowed") && !BoolAt(*review, "status/denied")) {
    return absl::OkStatus();
  }
  std::string why = StringAt(*review, "status/reason");
  if (std::string error = StringAt(*review, "status/evaluationError"); !error.empty()) {
    absl::StrAppend(&why, why.empty() ? "" : "; ", error);
  }
  return absl::PermissionDeniedError(
      absl::StrCat("Kubernetes user \"", user.username, "\" may not ", KubernetesVerb(role), " ",
                   kKubernetesResource, ".", kKubernetesGroup, " (the ", RoleName(role),
                   " role: a ClusterRoleBinding to meshlet-", RoleName(role), " grants it)",
                   why.empty() ? "" : ": ", why));
}

KubernetesApiUsers::KubernetesApiUsers(event::Loop& loop,
                                       std::unique_ptr<kubernetes::KubernetesApi> api,
                                       KubernetesUsersOptions options, const Clock& clock,
                                       StatsRegistry& stats)
    : loop_(loop),
      api_(std::move(api)),
      options_(std::move(options)),
      clock_(clock),
      stats_(stats) {}

KubernetesApiUsers::~KubernetesApiUsers() { api_.reset(); }  // drops answers still to come

absl::StatusOr<std::unique_ptr<KubernetesApiUsers>> KubernetesApiUsers::Create(
    event::Loop& loop, const kubernetes::KubernetesApiOptions& api, KubernetesUsersOptions options,
    const Clock& clock, StatsRegistry& stats) {
  absl::StatusOr<std::unique_ptr<kubernetes::KubernetesApi>> client =
      kubernetes::KubernetesApi::Create(loop, api);
  if (!client.ok()) return client.status();
  return std::unique_ptr<KubernetesApiUsers>(
      new KubernetesApiUsers(loop, *std::move(client), std::move(options), clock, stats));
}

void KubernetesApiUsers::Count(absl::string_view review, absl::string_view result) {
  absl::StatusOr<Counter> counter = stats_.shared_shard().RegisterCounter(
      "meshlet_cp_api_kubernetes_reviews_total",
      "TokenReviews (review=token) and SubjectAccessReviews (review=access) the API asked the "
      "Kubernetes API server for, by the call's result.",
      {{"review", std::string(review)}, {"result", std::string(result)}});
  if (counter.ok()) counter->Inc();
}

template <typename Map>
void KubernetesApiUsers::MakeRoom(Map& cache) {
  if (cache.size() < options_.cache_size) return;
  const absl::Time now = clock_.WallNow();
  absl::erase_if(cache, [now](const auto& entry) { return entry.second.expires <= now; });
  if (cache.size() >= options_.cache_size) cache.clear();
}

void KubernetesApiUsers::Later(std::function<void(absl::StatusOr<Principal>)> done,
                               absl::StatusOr<Principal> answer) {
  loop_.Post(
      [done = std::move(done), answer = std::move(answer)]() mutable { done(std::move(answer)); });
}

void KubernetesApiUsers::Authorize(const std::string& bearer, Role needed,
                                   std::function<void(absl::StatusOr<Principal>)> done) {
  const std::string key = tls::Sha256(bearer);
  if (auto it = tokens_.find(key); it != tokens_.end() && it->second.expires > clock_.WallNow()) {
    if (!it->second.user.ok()) return Later(std::move(done), it->second.user.status());
    const KubernetesUser user = *it->second.user;
    return Review(key, user, needed, std::move(done));
  }
  api_->Call(
      {.method = "POST",
       .path = "/apis/authentication.k8s.io/v1/tokenreviews",
       .content_type = "application/json",
       .body = BuildUserTokenReview(bearer, options_.audiences),
       .forbidden_hint = "the control plane's own service-account token was refused, or it may "
                         "not create tokenreviews (k8s/base/rbac.yaml grants it)"},
      [this, key, needed, done = std::move(done)](kubernetes::ApiResult result) mutable {
        if (!result.body.ok()) {
          Count("token", result.result);
          return done(absl::UnavailableError(
              absl::StrCat("asking the Kubernetes API server whose token this is: ",
                           result.body.status().message())));
        }
        absl::StatusOr<KubernetesUser> user =
            ParseUserTokenReview(*result.body, options_.audiences);
        if (absl::IsInvalidArgument(user.status())) {
          Count("token", "malformed");
          return done(absl::UnavailableError(user.status().message()));
        }
        Count("token", "ok");
        if (options_.cache_ttl > absl::ZeroDuration()) {
          MakeRoom(tokens_);
          tokens_[key] =
              TokenVerdict{.user = user, .expires = clock_.WallNow() + options_.cache_ttl};
        }
        if (!user.ok()) return done(user.status());
        Review(key, *user, needed, std::move(done));
      });
}

void KubernetesApiUsers::Review(const std::string& key, const KubernetesUser& user, Role needed,
                                std::function<void(absl::StatusOr<Principal>)> done) {
  const std::string access_key = absl::StrCat(key, "/", KubernetesVerb(needed));
  const Principal principal{.name = user.username, .credential = "kubernetes", .role = needed};
  if (auto it = access_.find(access_key);
      it != access_.end() && it->second.expires > clock_.WallNow()) {
    if (!it->second.allowed.ok()) return Later(std::move(done), it->second.allowed);
    return Later(std::move(done), principal);
  }
  api_->Call(
      {.method = "POST",
       .path = "/apis/authorization.k8s.io/v1/subjectaccessreviews",
       .content_type = "application/json",
       .body = BuildAccessReview(user, needed),
       .forbidden_hint = "the control plane's own service-account token was refused, or it may "
                         "not create subjectaccessreviews (k8s/base/rbac.yaml grants it)"},
      [this, access_key, user, needed, principal,
       done = std::move(done)](kubernetes::ApiResult result) mutable {
        if (!result.body.ok()) {
          Count("access", result.result);
          return done(absl::UnavailableError(
              absl::StrCat("asking the Kubernetes API server what user \"", user.username,
                           "\" may do: ", result.body.status().message())));
        }
        absl::Status allowed = ParseAccessReview(*result.body, user, needed);
        if (absl::IsInvalidArgument(allowed)) {
          Count("access", "malformed");
          return done(absl::UnavailableError(allowed.message()));
        }
        Count("access", "ok");
        if (options_.cache_ttl > absl::ZeroDuration()) {
          MakeRoom(access_);
          access_[access_key] =
              AccessVerdict{.allowed = allowed, .expires = clock_.WallNow() + options_.cache_ttl};
        }
        if (!allowed.ok()) return done(allowed);
        done(principal);
      });
}

}  // namespace meshlet::controlplane::access
