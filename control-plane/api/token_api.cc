#include "control-plane/api/token_api.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/json.h"
#include "control-plane/api/status.h"
#include "control-plane/identity/json_fields.h"

namespace meshlet::controlplane::api {
namespace {

using http::ServerRequest;
using http::ServerResponse;
using identity::CreatedJoinToken;
using identity::JoinTokens;
using identity::JoinTokenSpec;
using identity::JsonObject;

// The API's Status object; with a field, its cause.
ServerResponse Error(int status, absl::string_view reason, absl::string_view message,
                     absl::string_view field = "") {
  return api::FieldStatusResponse(status, reason, message, "JoinToken", field);
}

ServerResponse Create(JoinTokens& tokens, const ServerRequest& request) {
  absl::StatusOr<JsonObject> body = JsonObject::Parse(request.body);
  if (!body.ok()) return Error(400, "BadRequest", body.status().message());
  JoinTokenSpec spec;
  struct Field {
    const char* name;
    std::string* out;
  };
  for (Field field :
       {Field{"namespace", &spec.namespace_}, Field{"serviceAccount", &spec.service_account}}) {
    absl::StatusOr<std::string> value = body->String(field.name);
    if (!value.ok()) {
      return Error(422, "Invalid",
                   absl::IsNotFound(value.status()) ? "required" : "must be a string", field.name);
    }
    *field.out = *value;
  }
  if (body->Has("ttl")) {
    absl::StatusOr<std::string> ttl = body->String("ttl");
    if (!ttl.ok() || !absl::ParseDuration(*ttl, &spec.ttl)) {
      return Error(422, "Invalid", "must be a duration such as \"1h\" or \"30m\"", "ttl");
    }
  }
  if (body->Has("singleUse")) {
    absl::StatusOr<bool> single_use = body->Bool("singleUse");
    if (!single_use.ok()) return Error(422, "Invalid", "must be true or false", "singleUse");
    spec.single_use = *single_use;
  }
  absl::StatusOr<CreatedJoinToken> created = tokens.Create(spec);
  if (absl::IsInvalidArgument(created.status())) {
    // The message starts with the field it is about ("namespace \"X\": ...", "ttl: ...").
    const absl::string_view message = created.status().message();
    const char* field = absl::StartsWith(message, "namespace")        ? "namespace"
                        : absl::StartsWith(message, "serviceAccount") ? "serviceAccount"
                                                                      : "ttl";
    return Error(422, "Invalid", message, field);
  }
  if (!created.ok()) return Error(500, "InternalError", created.status().message());
  return ServerResponse::Json(
      201,
      absl::StrCat(R"({"kind":"JoinToken","token":)", JsonQuote(created->token), R"(,"id":)",
                   JsonQuote(created->id), R"(,"namespace":)", JsonQuote(spec.namespace_),
                   R"(,"serviceAccount":)", JsonQuote(spec.service_account), R"(,"expiresAt":)",
                   JsonQuote(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", created->expires_at,
                                              absl::UTCTimeZone())),
                   R"(,"singleUse":)", created->single_use ? "true" : "false", "}\n"));
}

}  // namespace

ServerResponse HandleTokenRequest(JoinTokens& tokens, const ServerRequest& request) {
  absl::string_view rest = request.path();
  if (!absl::ConsumePrefix(&rest, kTokensPath) || (!rest.empty() && rest[0] != '/')) {
    return Error(404, "NotFound", absl::StrCat("no such path: ", request.path()));
  }
  rest = absl::StripSuffix(rest, "/");
  if (rest.empty()) {
    if (request.method() != "POST") {
      return api::MethodNotAllowed("POST");
    }
    return Create(tokens, request);
  }
  const absl::string_view id = rest.substr(1);
  if (request.method() != "DELETE") {
    return api::MethodNotAllowed("DELETE");
  }
  absl::Status revoked = tokens.Revoke(id);
  if (absl::IsInvalidArgument(revoked)) return Error(400, "BadRequest", revoked.message());
  // The revocation is recorded; the message says there was no token record left.
  if (absl::IsNotFound(revoked)) return Error(404, "NotFound", revoked.message());
  if (!revoked.ok()) return Error(500, "InternalError", revoked.message());
  ServerResponse response;
  response.status = 204;
  return response;
}

}  // namespace meshlet::controlplane::api
