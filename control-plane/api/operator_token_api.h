#pragma once

// The HTTP face of operator tokens (control-plane/access/operator_tokens.h), mounted by the control
// plane's API under /api/v1/operator-tokens for admins (meshctl operator-token):
//
//   POST   /api/v1/operator-tokens         {"name": "alice", "role": "editor", "ttl": "720h"}
//          201 {"kind": "OperatorToken", "token": "mot1.alice....", "name", "role", "createdAt",
//               "createdBy", "expiresAt" (absent: never)}
//   GET    /api/v1/operator-tokens         200 {"kind": "OperatorTokenList", "items": [...]}
//                                          (each as above without "token"; "expired": true once
//                                          past expiresAt)
//   DELETE /api/v1/operator-tokens/{name}  204, or 404 when there is none
//
// `role` is peer, viewer, editor or admin; `ttl` a duration ("720h"; absent or "0s": never
// expires). Errors use the API's Status object: 400 for a body that is not a JSON object, 422 with
// details.causes[].field for an invalid field, 409 for a name in use, 405 for other methods. The
// token appears only in the 201 body; it is never logged.
//
// Threading: as OperatorTokens (POST and DELETE call the store: the API runs them on its store
// worker).

#include "common/http/server.h"
#include "control-plane/access/operator_tokens.h"
#include "control-plane/access/roles.h"

namespace meshlet::controlplane::api {

inline constexpr char kOperatorTokensPath[] = "/api/v1/operator-tokens";

// Handles a request whose path is kOperatorTokensPath or below it, made by `caller` (recorded as
// the creator).
http::ServerResponse HandleOperatorTokenRequest(access::OperatorTokens& tokens,
                                                const http::ServerRequest& request,
                                                const access::Principal& caller);

}  // namespace meshlet::controlplane::api
