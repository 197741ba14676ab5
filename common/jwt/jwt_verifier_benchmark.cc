// The cost of one JWT verification per algorithm, and of refusing a forged token, with a warm
// per-thread scratch as the sidecar's workers use it. bazel run -c opt
// //common/jwt:jwt_verifier_benchmark

#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/jwt/jwt_testing.h"
#include "common/jwt/jwt_verifier.h"

namespace meshlet::jwt {
namespace {

constexpr int64_t kNow = 1'800'000'000;

void Verify(benchmark::State& state, const char* alg, const char* kid, JwtFailure expected) {
  static jwt_testing::Keys* keys = jwt_testing::NewKeys();
  auto verifier = JwtVerifier::Create(
      {.issuers = {
           {.issuer = "https://idp", .audiences = {"shop"}, .jwks = jwt_testing::Jwks(*keys)}}});
  const std::string token = jwt_testing::Sign(
      *keys, alg, kid,
      absl::StrCat(R"({"iss":"https://idp","sub":"alice","aud":"shop","exp":)", kNow + 600, "}"));
  JwtVerifier::Scratch scratch;
  for (auto _ : state) {
    const JwtVerifier::Result result = (*verifier)->Verify(token, kNow, scratch);
    if (result.failure != expected) state.SkipWithError("unexpected outcome");
    benchmark::DoNotOptimize(result);
  }
}

BENCHMARK_CAPTURE(Verify, RS256, "RS256", "rsa", JwtFailure::kNone);
BENCHMARK_CAPTURE(Verify, ES256, "ES256", "p256", JwtFailure::kNone);
BENCHMARK_CAPTURE(Verify, EdDSA, "EdDSA", "ed", JwtFailure::kNone);
BENCHMARK_CAPTURE(Verify, AlgNoneRefused, "none", "", JwtFailure::kUnsupportedAlg);
BENCHMARK_CAPTURE(Verify, UnknownKidRefused, "RS256", "other", JwtFailure::kUnknownKid);

}  // namespace
}  // namespace meshlet::jwt
