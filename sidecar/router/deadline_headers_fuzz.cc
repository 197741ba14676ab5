// Fuzz target for the deadline header values (deadline_headers.h): grpc-timeout and
// x-meshlet-deadline.
//
// Input layout: the bytes up to the first newline are a grpc-timeout value, the rest an
// x-meshlet-deadline value. Invariants: parsed durations are never negative; a formatted
// grpc-timeout parses again to no more time than it was made from (formatting rounds down), an
// x-meshlet-deadline to exactly the same; ParseCallerDeadline takes the smaller of the valid
// values and flags exactly the invalid ones.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_target.h"
#include "sidecar/router/deadline_headers.h"

namespace meshlet::sidecar::router {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "deadline_fuzz invariant broken: %s\n", what);
  std::abort();
}

void FuzzOne(absl::string_view input) {
  size_t newline = input.find('\n');
  absl::string_view grpc_timeout = input.substr(0, newline);
  std::optional<absl::string_view> meshlet_deadline;
  if (newline != absl::string_view::npos) meshlet_deadline = input.substr(newline + 1);

  absl::StatusOr<Duration> timeout = ParseGrpcTimeout(grpc_timeout);
  if (timeout.ok()) {
    if (*timeout < Duration::zero()) Die("negative grpc-timeout");
    absl::StatusOr<Duration> again = ParseGrpcTimeout(FormatGrpcTimeout(*timeout).view());
    if (!again.ok()) Die("formatted grpc-timeout does not parse");
    if (*again > *timeout) Die("formatting grpc-timeout added time");
  }
  std::optional<Duration> deadline;
  bool deadline_invalid = false;
  if (meshlet_deadline.has_value()) {
    absl::StatusOr<Duration> d = ParseMeshletDeadline(*meshlet_deadline);
    deadline_invalid = !d.ok();
    if (d.ok()) {
      if (*d < Duration::zero()) Die("negative x-meshlet-deadline");
      absl::StatusOr<Duration> again = ParseMeshletDeadline(FormatMeshletDeadline(*d).view());
      if (!again.ok() || *again != *d) Die("x-meshlet-deadline does not round-trip");
      deadline = *d;
    }
  }
  CallerDeadline caller = ParseCallerDeadline(grpc_timeout, meshlet_deadline);
  if (caller.grpc_timeout_invalid == timeout.ok()) Die("grpc-timeout flagged wrongly");
  if (caller.meshlet_deadline_invalid != deadline_invalid) Die("deadline flagged wrongly");
  std::optional<Duration> expected;
  if (timeout.ok()) expected = *timeout;
  if (deadline.has_value() && (!expected.has_value() || *deadline < *expected)) expected = deadline;
  if (caller.remaining != expected) Die("caller deadline is not the smaller valid value");
}

}  // namespace
}  // namespace meshlet::sidecar::router

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::sidecar::router::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() {
  return {"1S",       "100m\n250", "99999999H\n9999999999",
          "0n\n0",    "5u",        "12345678M\n1",
          "3S\n2500", "1.5S\n-1",  "\n42"};
}

std::vector<std::string> Dictionary() {
  return {"H", "M", "S", "m", "u", "n", "\n", "99999999", "9999999999", "0"};
}

}  // namespace meshlet::fuzz
