#pragma once

// The HTTP face of join tokens, for the control plane's REST API to mount under /api/v1/tokens
// (behind its bearer-token check) and for `meshctl token create` to call. Times are UTC:
//
//   POST   /api/v1/tokens        {"namespace": "default", "serviceAccount": "frontend",
//                                 "ttl": "1h", "singleUse": true}
//          201 {"kind": "JoinToken", "token": "mjt1....", "id": "...", "namespace": ...,
//               "serviceAccount": ..., "expiresAt": "2026-01-01T01:00:00Z", "singleUse": true}
//   DELETE /api/v1/tokens/{id}   204, or 404 when there is no such token
//
// `ttl` is a Go-style duration ("90m", "1h", "24h"; default 1h); `singleUse` defaults to false.
// Errors use the API's Status object: 400 for a body that is not a JSON object, 422 with
// details.causes[].field for invalid fields, 405 for other methods. The token appears only in
// the 201 body; it is never logged.
//
// Threading: as JoinTokens (any thread; the API calls it on its loop thread).

#include "common/http/server.h"
#include "control-plane/identity/join_tokens.h"

namespace meshlet::controlplane::api {

inline constexpr char kTokensPath[] = "/api/v1/tokens";

// Handles a request whose path is kTokensPath or below it.
http::ServerResponse HandleTokenRequest(identity::JoinTokens& tokens,
                                        const http::ServerRequest& request);

}  // namespace meshlet::controlplane::api
