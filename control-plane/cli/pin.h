#pragma once

// Pinning the control plane's CA (meshctl context set --ca-fingerprint): the one request meshctl
// sends without verifying the server. It fetches the public trust bundle (GET
// /api/v1/trust-bundle: no token is sent) so that the caller can keep the root whose SHA-256
// fingerprint the operator got from a trusted place (the control plane's log, the CA file), and
// then verify the server against that root before trusting it with anything. A server that lies
// here gains nothing: its roots do not match the fingerprint, or it cannot prove itself with the
// matching one.
//
// Blocking, on the calling thread; the process must ignore SIGPIPE.

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::cli {

// The body of GET https://`server`/api/v1/trust-bundle (server: "HOST:PORT", optionally
// "https://HOST:PORT"), the server's certificate NOT verified. Unavailable when nothing answers
// or the handshake fails, FailedPrecondition for an answer other than 200, DeadlineExceeded after
// `timeout` (connect and each read), ResourceExhausted past 1 MiB.
absl::StatusOr<std::string> FetchTrustBundleUnverified(absl::string_view server,
                                                       std::chrono::milliseconds timeout);

}  // namespace meshlet::controlplane::cli
