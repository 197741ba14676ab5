#include "control-plane/api/operator_token_api.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/config/yaml_proto.h"
#include "control-plane/api/status.h"
#include "control-plane/identity/json_fields.h"

namespace meshlet::controlplane::api {
namespace {

using access::CreatedOperatorToken;
using access::OperatorTokenInfo;
using access::OperatorTokens;
using access::OperatorTokenSpec;
using access::ParseRole;
using access::Principal;
using access::Role;
using access::RoleName;
using http::ServerRequest;
using http::ServerResponse;

// The API's Status object; with a field, its cause.
ServerResponse Error(int status, absl::string_view reason, absl::string_view message,
                     absl::string_view field = "") {
  return api::FieldStatusResponse(status, reason, message, "OperatorToken", field);
}

using api::MethodNotAllowed;

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// The fields every view of a token shares, without braces.
std::string InfoFields(const OperatorTokenInfo& info, absl::Time now) {
  std::string out = absl::StrCat(R"("name":)", JsonQuote(info.name), R"(,"role":)",
                                 JsonQuote(RoleName(info.role)), R"(,"createdAt":)",
                                 JsonQuote(Rfc3339(info.created_at)), R"(,"createdBy":)",
                                 JsonQuote(info.created_by));
  if (info.expires_at.has_value()) {
    absl::StrAppend(&out, R"(,"expiresAt":)", JsonQuote(Rfc3339(*info.expires_at)),
                    R"(,"expired":)", now >= *info.expires_at ? "true" : "false");
  }
  return out;
}

ServerResponse Create(OperatorTokens& tokens, const ServerRequest& request,
                      const Principal& caller) {
  absl::StatusOr<identity::JsonObject> body = identity::JsonObject::Parse(request.body);
  if (!body.ok()) return Error(400, "BadRequest", body.status().message());
  OperatorTokenSpec spec{.created_by =
                             caller.credential == caller.name
                                 ? caller.name
                                 : absl::StrCat(caller.name, " (", caller.credential, ")")};
  absl::StatusOr<std::string> name = body->String("name");
  if (!name.ok()) {
    return Error(422, "Invalid", absl::IsNotFound(name.status()) ? "required" : "must be a string",
                 "name");
  }
  spec.name = *name;
  absl::StatusOr<std::string> role = body->String("role");
  std::optional<Role> parsed = role.ok() ? ParseRole(*role) : std::nullopt;
  if (!parsed.has_value()) {
    return Error(422, "Invalid",
                 absl::IsNotFound(role.status()) ? "required: peer, viewer, editor or admin"
                                                 : "must be peer, viewer, editor or admin",
                 "role");
  }
  spec.role = *parsed;
  if (body->Has("ttl")) {
    absl::StatusOr<std::string> ttl = body->String("ttl");
    absl::StatusOr<absl::Duration> duration =
        ttl.ok() ? config::ParseDurationText(*ttl) : absl::StatusOr<absl::Duration>(ttl.status());
    if (!duration.ok() || *duration < absl::ZeroDuration()) {
      return Error(422, "Invalid", "must be a duration such as \"720h\" (\"0s\": never expires)",
                   "ttl");
    }
    spec.ttl = *duration;
  }
  absl::StatusOr<CreatedOperatorToken> created = tokens.Create(spec);
  if (absl::IsInvalidArgument(created.status()) || absl::IsAlreadyExists(created.status())) {
    // The message starts with the field it is about ("name: ...", "ttl: ...").
    const absl::string_view message = created.status().message();
    const bool conflict = absl::IsAlreadyExists(created.status());
    return Error(conflict ? 409 : 422, conflict ? "AlreadyExists" : "Invalid", message,
                 absl::StartsWith(message, "ttl") ? "ttl" : "name");
  }
  if (absl::IsUnavailable(created.status())) {
    return Error(503, "ServiceUnavailable", created.status().message());
  }
  if (!created.ok()) return Error(500, "InternalError", created.status().message());
  return ServerResponse::Json(
      201, absl::StrCat(R"({"kind":"OperatorToken","token":)", JsonQuote(created->token), ",",
                        InfoFields(created->info, tokens.WallNow()), "}\n"));
}

ServerResponse List(OperatorTokens& tokens) {
  const absl::Time now = tokens.WallNow();
  std::vector<std::string> items;
  for (const OperatorTokenInfo& info : tokens.List()) {
    items.push_back(absl::StrCat("{", InfoFields(info, now), "}"));
  }
  return ServerResponse::Json(200, absl::StrCat(R"({"kind":"OperatorTokenList","items":[)",
                                                absl::StrJoin(items, ","), "]}\n"));
}

}  // namespace

ServerResponse HandleOperatorTokenRequest(OperatorTokens& tokens, const ServerRequest& request,
                                          const Principal& caller) {
  absl::string_view rest = request.path();
  if (!absl::ConsumePrefix(&rest, kOperatorTokensPath) || (!rest.empty() && rest[0] != '/')) {
    return Error(404, "NotFound", absl::StrCat("no such path: ", request.path()));
  }
  rest = absl::StripSuffix(rest, "/");
  if (rest.empty()) {
    if (request.method() == "GET") return List(tokens);
    if (request.method() == "POST") return Create(tokens, request, caller);
    return MethodNotAllowed("GET, POST");
  }
  const absl::string_view name = rest.substr(1);
  if (request.method() != "DELETE") return MethodNotAllowed("DELETE");
  absl::Status revoked = tokens.Revoke(name);
  if (absl::IsNotFound(revoked)) return Error(404, "NotFound", revoked.message());
  if (absl::IsUnavailable(revoked)) return Error(503, "ServiceUnavailable", revoked.message());
  if (!revoked.ok()) return Error(500, "InternalError", revoked.message());
  ServerResponse response;
  response.status = 204;
  return response;
}

}  // namespace meshlet::controlplane::api
