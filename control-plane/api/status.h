#pragma once

// The answer of every control-plane API error: a Status object in the shape Kubernetes' API
// uses, so that meshctl (and kubectl-minded tools) read one format:
//
//   {"kind":"Status","apiVersion":"v1","status":"Failure","code":422,"reason":"Invalid",
//    "message":"...","details":{"kind":"TrafficPolicy","name":"r",
//                               "causes":[{"field":"spec.retries.attempts","message":"..."}]}}
//
// `details` appears when a kind or causes are given. A 401 also carries
// `WWW-Authenticate: Bearer realm="meshlet"`. Value functions, any thread.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/http/server.h"

namespace meshlet::controlplane::api {

struct StatusCause {
  std::string field;  // the field path the cause is about
  std::string message;
};

http::ServerResponse StatusResponse(int code, absl::string_view reason, absl::string_view message,
                                    absl::string_view kind = "", absl::string_view name = "",
                                    const std::vector<StatusCause>& causes = {});

// A Status about one field of a `kind` request body (the cause repeats the message); without a
// field, a plain Status.
http::ServerResponse FieldStatusResponse(int code, absl::string_view reason,
                                         absl::string_view message, absl::string_view kind,
                                         absl::string_view field);

// 405 "only `allowed` is allowed here", with the Allow header (`allowed`: "GET" or "GET, POST").
http::ServerResponse MethodNotAllowed(absl::string_view allowed);

}  // namespace meshlet::controlplane::api
