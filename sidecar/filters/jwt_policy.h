#pragma once

// JwtPolicy: a listener's RequestAuthentication, compiled once per configuration (the verifier
// with its issuers' keys, where tokens are read from, what a valid token's claims become) and
// shared read-only by every worker's JwtFilter (jwt_filter.h). Plain data; no I/O.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/jwt/jwt_verifier.h"

namespace meshlet::sidecar::filters {

// The verifier is common code (//common/jwt): the control plane parses key sets with it too.
using ::meshlet::jwt::Base64UrlDecode;
using ::meshlet::jwt::JwksParse;
using ::meshlet::jwt::JwtFailure;
using ::meshlet::jwt::JwtFailureMessage;
using ::meshlet::jwt::JwtFailureName;
using ::meshlet::jwt::JwtIssuerConfig;
using ::meshlet::jwt::JwtOutcomeName;
using ::meshlet::jwt::JwtVerifier;
using ::meshlet::jwt::JwtVerifierConfig;
using ::meshlet::jwt::kJwtFailureCount;
using ::meshlet::jwt::kJwtMissing;
using ::meshlet::jwt::kJwtOutcomeCount;
using ::meshlet::jwt::ParseJwks;

// Where a token is read from: a header (with a prefix stripped, "Bearer " for authorization) or a
// query parameter.
struct JwtTokenLocation {
  bool query_parameter = false;
  std::string name;    // lower-case header name, or the parameter's name
  std::string prefix;  // headers only: must start the value; stripped
};

// What to do with a valid token of one issuer (index as JwtVerifierConfig::issuers).
struct JwtIssuerOutput {
  bool forward_original_token = false;
  std::vector<std::pair<std::string, std::string>> claim_to_headers;  // claim, lower-case header
  std::string payload_header;                                         // empty: none
  std::string source;  // "RequestAuthentication/ns/name", for decision records
};

struct JwtPolicy {
  std::shared_ptr<const JwtVerifier> verifier;  // null: no RequestAuthentication
  std::vector<JwtTokenLocation> locations;      // tried in order; the first token found is used
  std::vector<JwtIssuerOutput> outputs;         // one per issuer of the verifier
  std::vector<std::string> output_headers;      // every header any output writes
};

// Authorization: Bearer and the access_token query parameter (Istio's defaults).
std::vector<JwtTokenLocation> DefaultJwtTokenLocations();

}  // namespace meshlet::sidecar::filters
