#pragma once

// A pod's traffic-capture settings as its annotations say (docs/kubernetes.md lists them), turned
// into the arguments of `sidecar init` (sidecar/capture/init_command.h). Injection writes these
// arguments into the meshlet-init container; the CNI plugin (cni/) builds the same arguments
// from the same annotations and parses them with the same parser, so both install the same
// rules. The capture mark of an injected pod (its status annotation) is read here too.
//
// Plain functions and constants; no state.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::capture {

// The proxy's UID (and GID), whose traffic is never captured, and its capture listeners.
inline constexpr int64_t kProxyUid = 1337;
inline constexpr int kOutboundPort = 15001;
inline constexpr int kInboundPort = 15006;

inline constexpr char kInjectKey[] = "sidecar.meshlet.io/inject";
inline constexpr char kStatusAnnotation[] = "sidecar.meshlet.io/status";
inline constexpr char kExcludeInboundPortsAnnotation[] = "traffic.meshlet.io/excludeInboundPorts";
inline constexpr char kIncludeInboundPortsAnnotation[] = "traffic.meshlet.io/includeInboundPorts";
inline constexpr char kExcludeOutboundPortsAnnotation[] = "traffic.meshlet.io/excludeOutboundPorts";
inline constexpr char kExcludeOutboundRangesAnnotation[] =
    "traffic.meshlet.io/excludeOutboundIPRanges";
inline constexpr char kIncludeOutboundRangesAnnotation[] =
    "traffic.meshlet.io/includeOutboundIPRanges";

// One list annotation and the `sidecar init` flag it becomes.
struct CaptureAnnotation {
  const char* key;
  const char* flag;
  bool star_allowed;  // "*" (everything) is an item
  bool cidrs;         // items are CIDRs; otherwise ports
};
inline constexpr CaptureAnnotation kCaptureAnnotations[] = {
    {kExcludeInboundPortsAnnotation, "--exclude-inbound-ports", false, false},
    {kIncludeInboundPortsAnnotation, "--include-inbound-ports", true, false},
    {kExcludeOutboundPortsAnnotation, "--exclude-outbound-ports", false, false},
    {kExcludeOutboundRangesAnnotation, "--exclude-outbound-cidrs", false, true},
    {kIncludeOutboundRangesAnnotation, "--include-outbound-cidrs", true, true},
};

// The annotation's value as the flag's value: its comma-separated items, trimmed, joined by ",".
// InvalidArgument "\"x\" is not a port (1-65535); the list is comma-separated" (the caller names
// the annotation).
absl::StatusOr<std::string> CaptureFlagValue(const CaptureAnnotation& annotation,
                                             absl::string_view value);

// The arguments every capture starts with: --proxy-uid, --outbound-port, --inbound-port.
std::vector<std::string> BaseInitArgs();

// `annotation(key)`: the pod's annotation, if it has it.
using AnnotationLookup = std::function<std::optional<std::string>(absl::string_view key)>;

// The `sidecar init` arguments (after "init") for a pod with these annotations: BaseInitArgs(),
// then "--flag=value" for each capture annotation set, in kCaptureAnnotations order (the order
// injection writes them). Errors name the annotation.
absl::StatusOr<std::vector<std::string>> InitArgsFromAnnotations(
    const AnnotationLookup& annotation);

// The status annotation's "capture" member: who installs the pod's capture rules.
inline constexpr char kCaptureByCni[] = "cni";  // the meshlet-cni plugin, on the node
// The text of the status member that marks a pod for capture by the CNI plugin.
inline constexpr char kCniCaptureStatusMember[] = "\"capture\":\"cni\"";

}  // namespace meshlet::capture
