#include "common/capture/annotations.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/status.h"

namespace meshlet::capture {
namespace {

bool IsPort(absl::string_view text) {
  int port = 0;
  return absl::SimpleAtoi(text, &port) && port >= 1 && port <= 65535;
}

bool IsCidr(absl::string_view text) {
  const size_t slash = text.find('/');
  if (slash == absl::string_view::npos) return false;
  const std::string ip(text.substr(0, slash));
  const int max_bits = ip.find(':') != std::string::npos ? 128 : 32;
  unsigned char address[16];
  int bits = -1;
  return inet_pton(max_bits == 128 ? AF_INET6 : AF_INET, ip.c_str(), address) == 1 &&
         absl::SimpleAtoi(text.substr(slash + 1), &bits) && bits >= 0 && bits <= max_bits;
}

}  // namespace

absl::StatusOr<std::string> CaptureFlagValue(const CaptureAnnotation& annotation,
                                             absl::string_view value) {
  std::vector<absl::string_view> items;
  for (absl::string_view item : absl::StrSplit(value, ',')) {
    item = absl::StripAsciiWhitespace(item);
    const bool valid = annotation.cidrs ? IsCidr(item) : IsPort(item);
    if (!(annotation.star_allowed && item == "*") && !valid) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", item, "\" is not ",
                       annotation.cidrs ? "a CIDR (10.0.0.0/8, fd00::/8)" : "a port (1-65535)",
                       annotation.star_allowed ? " or *" : "", "; the list is comma-separated"));
    }
    items.push_back(item);
  }
  return absl::StrJoin(items, ",");
}

std::vector<std::string> BaseInitArgs() {
  return {absl::StrCat("--proxy-uid=", kProxyUid), absl::StrCat("--outbound-port=", kOutboundPort),
          absl::StrCat("--inbound-port=", kInboundPort)};
}

absl::StatusOr<std::vector<std::string>> InitArgsFromAnnotations(
    const AnnotationLookup& annotation) {
  std::vector<std::string> args = BaseInitArgs();
  for (const CaptureAnnotation& capture : kCaptureAnnotations) {
    const std::optional<std::string> value = annotation(capture.key);
    if (!value.has_value()) continue;
    absl::StatusOr<std::string> flag_value = CaptureFlagValue(capture, *value);
    if (!flag_value.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("annotation ", capture.key, ": ", flag_value.status().message()));
    }
    args.push_back(absl::StrCat(capture.flag, "=", *flag_value));
  }
  return args;
}

}  // namespace meshlet::capture
