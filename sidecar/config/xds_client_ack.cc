// XdsClient's answers: whether an update of one type is accepted (ACK) or refused (NACK), and the
// answer that says so. TryApply hands the candidate configuration to the apply callback
// (ApplyUpdate, xds_client_plan.cc); refused, everything stays as it ran and the reason is kept
// (last_error, at most kMaxLoggedError bytes), counted and logged; accepted, the type's entries
// and the plan move on and the configuration is saved (xds_client_persist.cc). SendAnswer then
// ACKs or NACKs the response on the stream. Threading: the client's loop thread.

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/base/version.h"
#include "common/config/unknown_content.h"
#include "common/http/grpc/status.h"
#include "sidecar/config/xds_client.h"
#include "sidecar/config/xds_client_internal.h"
#include "xds/capabilities.h"
#include "xds/protocol.h"
#include "xds/version.h"

namespace meshlet::sidecar::config {
namespace {

// Bound on what one response may make the sidecar log and keep.
constexpr size_t kMaxLoggedError = 2000;

// For a refused update: when its resources carry fields or enum values this release does not
// know, a note naming the first — the usual cause is a control plane newer than the sidecar that
// sends it what it cannot read (docs/upgrades.md). Empty otherwise.
template <typename EntryMap>
std::string UnknownFieldsNote(const EntryMap& entries) {
  size_t resources = 0;
  std::string first;
  for (const auto& [name, entry] : entries) {
    if (entry.held == nullptr) continue;
    const std::shared_ptr<const google::protobuf::Message> message = entry.held->ParseUntyped();
    std::string found = ::meshlet::config::FirstUnknownContent(*message);
    if (found.empty()) continue;
    if (resources++ == 0) {
      first = absl::StrCat(message->GetDescriptor()->name(), " \"", name, "\": ", found);
    }
  }
  if (resources == 0) return "";
  return absl::StrCat("; the update carries what this sidecar (", xds::kSidecarVersionPrefix,
                      kMeshletVersion, ") does not know, in ", resources,
                      resources == 1 ? " resource" : " resources", ", first ", first,
                      ": a control plane newer than the sidecar should not send it "
                      "(docs/upgrades.md)");
}

}  // namespace

uint64_t XdsClient::EntryVersion::Of(const std::string& name, const Entry& entry) {
  ResourceVersion::Buffer buffer;
  return xds::TypeVersionEntry(name, entry.version.View(buffer));
}

uint64_t XdsClient::EntrySum(const EntryMap& entries) { return entries.Sum(); }

absl::Status XdsClient::TryApply(size_t type_index, EntryMap entries, uint64_t entry_sum,
                                 const std::string& version) {
  TypeState& type = types_[type_index];
  std::optional<RunPlan> next;
  absl::Status status = ApplyUpdate(type_index, entries, version, &next);
  if (!status.ok()) {
    const std::string note = UnknownFieldsNote(entries);
    if (!note.empty()) status = absl::InvalidArgumentError(absl::StrCat(status.message(), note));
    type.last_error = std::string(status.message().substr(0, kMaxLoggedError));
    ++rejected_;
    rejected_counter_.Inc();
    LOG(WARN) << "xds: refused " << xds::kResourceTypeLabels[type_index] << " version " << version
              << ": " << type.last_error;
    return status;
  }
  const size_t count = entries.size();
  type.entries = std::move(entries);
  type.entry_sum = entry_sum;
  if (next) {
    LogPlanChanges(*next);
    plan_ = *std::move(next);
    SetPlanGauges();
  }
  type.last_error.clear();
  type.last_update = absl::Now();
  last_update_gauges_[type_index].Set(absl::ToUnixSeconds(type.last_update));
  type.applied = true;
  if (!complete_config_) {
    complete_config_ =
        types_[xds::kResourceTypeCount - 1].applied ||
        std::all_of(types_.begin(), types_.end(), [](const TypeState& t) { return t.applied; });
    if (complete_config_) LOG(INFO) << "xds: first complete configuration applied";
  }
  has_dynamic_config_ = true;
  ++accepted_;
  accepted_counter_.Inc();
  LOG(INFO) << "xds: applied " << xds::kResourceTypeLabels[type_index] << " version " << version
            << " (" << count << " resources)";
  Persist();
  return absl::OkStatus();
}

void XdsClient::SendAnswer(size_t type_index, const std::string& nonce,
                           const absl::Status& status) {
  TypeState& type = types_[type_index];
  type.nonce = nonce;
  if (stream_ == nullptr) return;
  SendRequest([&](auto& answer) {
    answer.set_type_url(xds::kResourceTypeUrls[type_index]);
    answer.set_response_nonce(nonce);
    if constexpr (!xds::kIsDelta<std::decay_t<decltype(answer)>>) {
      // The new version when applied, else the one still running.
      answer.set_version_info(type.version);
    }
    if (!status.ok()) {
      answer.mutable_error_detail()->set_code(
          static_cast<int32_t>(http::grpc::StatusCode::kInvalidArgument));
      answer.mutable_error_detail()->set_message(std::string(status.message()));
    }
  });
}

}  // namespace meshlet::sidecar::config
