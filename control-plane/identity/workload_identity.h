#pragma once

// A workload identity as the mesh names it: a Kubernetes-style namespace and service account.
// Its SPIFFE id is spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace meshlet::controlplane::identity {

struct WorkloadIdentity {
  std::string namespace_;
  std::string service_account;
  friend bool operator==(const WorkloadIdentity&, const WorkloadIdentity&) = default;
};

// "ns/default/sa/frontend", for logs and errors.
std::string ToString(const WorkloadIdentity& identity);

// A namespace or service-account name: a DNS-1123 subdomain (lowercase letters, digits, '-',
// '.', starting and ending with a letter or digit, at most 253 characters). `what` names the
// field in the error.
absl::Status ValidateWorkloadName(absl::string_view what, absl::string_view name);
absl::Status ValidateWorkloadIdentity(const WorkloadIdentity& identity);

}  // namespace meshlet::controlplane::identity
