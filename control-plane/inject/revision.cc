#include "control-plane/inject/revision.h"

#include "absl/strings/str_cat.h"
#include "common/config/field_path.h"

namespace meshlet::controlplane::inject {

absl::StatusOr<std::string> ParseRevision(absl::string_view text) {
  if (text.empty() || text == kDefaultRevision) return std::string();
  if (!config::IsDnsLabel(text) || text.size() > kMaxRevisionLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text,
        "\" is not a revision name: lowercase letters, digits and '-', starting and "
        "ending with a letter or digit, at most ",
        kMaxRevisionLength,
        " characters (\"canary\", \"0-2-0\"); \"default\" is the control plane installed "
        "without one"));
  }
  return std::string(text);
}

absl::Status CheckRevisionLabel(absl::string_view value) {
  if (value.empty() || value == kDefaultRevision) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", value,
                     "\" names no revision: the control plane installed without a "
                     "revision serves pods without the label ",
                     kRevisionLabel, "; remove it to choose that one"));
  }
  return ParseRevision(value).status();
}

std::string RevisionDisplayName(absl::string_view revision) {
  return revision.empty() ? std::string(kDefaultRevision) : std::string(revision);
}

std::string ControlPlaneName(absl::string_view revision) {
  return revision.empty() ? std::string(kControlPlaneName)
                          : absl::StrCat(kControlPlaneName, "-", revision);
}

std::string ControlPlaneDiscoveryAddress(absl::string_view revision,
                                         absl::string_view control_plane_namespace) {
  return absl::StrCat(ControlPlaneName(revision), ".", control_plane_namespace, ".svc:15012");
}

std::string InjectorConfigurationName(absl::string_view revision) {
  return revision.empty() ? std::string("meshlet-sidecar-injector")
                          : absl::StrCat("meshlet-sidecar-injector-", revision);
}

absl::StatusOr<std::string> ParseTag(absl::string_view text) {
  if (!config::IsDnsLabel(text) || text.size() > kMaxRevisionLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text,
        "\" is not a tag name: lowercase letters, digits and '-', starting and ending with a "
        "letter or digit, at most ",
        kMaxRevisionLength, " characters (\"prod\", \"stable\", \"default\")"));
  }
  return std::string(text);
}

std::string TagConfigurationName(absl::string_view tag) {
  return absl::StrCat("meshlet-revision-tag-", tag);
}

}  // namespace meshlet::controlplane::inject
