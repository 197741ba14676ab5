#include "control-plane/identity/workload_identity.h"

#include "absl/strings/str_cat.h"

namespace meshlet::controlplane::identity {

std::string ToString(const WorkloadIdentity& identity) {
  return absl::StrCat("ns/", identity.namespace_, "/sa/", identity.service_account);
}

absl::Status ValidateWorkloadName(absl::string_view what, absl::string_view name) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = !name.empty() && name.size() <= 253 && alnum(name.front()) && alnum(name.back());
  for (char c : name) ok = ok && (alnum(c) || c == '-' || c == '.');
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " \"", name,
                   "\": must be lowercase letters, digits, '-' or '.', start and end with a "
                   "letter or digit, at most 253 characters"));
}

absl::Status ValidateWorkloadIdentity(const WorkloadIdentity& identity) {
  absl::Status status = ValidateWorkloadName("namespace", identity.namespace_);
  if (!status.ok()) return status;
  return ValidateWorkloadName("serviceAccount", identity.service_account);
}

}  // namespace meshlet::controlplane::identity
