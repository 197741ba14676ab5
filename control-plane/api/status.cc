#include "control-plane/api/status.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/json.h"

namespace meshlet::controlplane::api {

http::ServerResponse StatusResponse(int code, absl::string_view reason, absl::string_view message,
                                    absl::string_view kind, absl::string_view name,
                                    const std::vector<StatusCause>& causes) {
  std::string body =
      absl::StrCat(R"({"kind":"Status","apiVersion":"v1","status":"Failure",)", R"("code":)", code,
                   R"(,"reason":)", JsonQuote(reason), R"(,"message":)", JsonQuote(message));
  if (!causes.empty() || !kind.empty()) {
    std::vector<std::string> parts;
    if (!kind.empty()) parts.push_back(absl::StrCat(R"("kind":)", JsonQuote(kind)));
    if (!name.empty()) parts.push_back(absl::StrCat(R"("name":)", JsonQuote(name)));
    if (!causes.empty()) {
      parts.push_back(absl::StrCat(R"("causes":[)",
                                   absl::StrJoin(causes, ",",
                                                 [](std::string* out, const StatusCause& c) {
                                                   absl::StrAppend(
                                                       out, R"({"field":)", JsonQuote(c.field),
                                                       R"(,"message":)", JsonQuote(c.message), "}");
                                                 }),
                                   "]"));
    }
    absl::StrAppend(&body, R"(,"details":{)", absl::StrJoin(parts, ","), "}");
  }
  body += "}\n";
  http::ServerResponse response = http::ServerResponse::Json(code, std::move(body));
  if (code == 401) response.headers.Add("www-authenticate", "Bearer realm=\"meshlet\"");
  return response;
}

http::ServerResponse FieldStatusResponse(int code, absl::string_view reason,
                                         absl::string_view message, absl::string_view kind,
                                         absl::string_view field) {
  if (field.empty()) return StatusResponse(code, reason, message);
  return StatusResponse(code, reason, message, kind, "",
                        {{std::string(field), std::string(message)}});
}

http::ServerResponse MethodNotAllowed(absl::string_view allowed) {
  http::ServerResponse r =
      StatusResponse(405, "MethodNotAllowed", absl::StrCat("only ", allowed, " is allowed here"));
  r.headers.Add("allow", allowed);
  return r;
}

}  // namespace meshlet::controlplane::api
