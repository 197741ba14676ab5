#include "control-plane/registry/shared_registrations.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/logging.h"
#include "common/config/yaml_proto.h"
#include "control-plane/registry/saved_registry.h"
#include "control-plane/registry/shared_registrations.pb.h"

namespace meshlet::controlplane::registry {
namespace {

constexpr absl::string_view kWorkloadKey = "workload/";

}  // namespace

std::string RegistrationKey(absl::string_view workload_id) {
  return absl::StrCat(kWorkloadKey, workload_id);
}

std::string EncodeRegistration(const Workload& workload) {
  SharedRegistration out;
  *out.mutable_node() = NodeFromWorkload(workload);
  out.set_not_ready(!workload.ready);
  if (!workload.connected && workload.disconnected_at > absl::UnixEpoch()) {
    out.set_disconnected_at_unix_ms(absl::ToUnixMillis(workload.disconnected_at));
  }
  out.set_registered_at_unix_ms(absl::ToUnixMillis(workload.registered_at));
  out.set_replica(workload.replica);
  // Deterministic (labels in key order): equal registrations give equal bytes.
  return config::DeterministicBytes(out);
}

absl::StatusOr<Workload> DecodeRegistration(absl::string_view bytes) {
  SharedRegistration in;
  if (!in.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) || in.node().id().empty()) {
    return absl::InvalidArgumentError("not a workload registration");
  }
  Workload workload = WorkloadFromNode(in.node());
  workload.ready = !in.not_ready();
  workload.connected = in.disconnected_at_unix_ms() == 0;
  workload.disconnected_at = workload.connected
                                 ? absl::InfinitePast()
                                 : absl::FromUnixMillis(in.disconnected_at_unix_ms());
  workload.registered_at = absl::FromUnixMillis(in.registered_at_unix_ms());
  workload.last_heartbeat = workload.registered_at;
  workload.replica = in.replica();
  return workload;
}

SharedRegistrations::SharedRegistrations(event::Loop& loop, Registry& registry, LeasedKeys& keys)
    : loop_(loop), registry_(registry), keys_(keys) {
  registry_watch_ = registry_.Watch([this](uint64_t) { SchedulePublish(); });
  // Everything registered so far (the registry tracked it from its start).
  Publish();
  keys_watch_ = keys_.WatchLeased(
      std::string(kWorkloadKey),
      [&loop = loop_, alive = std::weak_ptr<bool>(alive_), undecodable = undecodable_,
       this](const std::vector<LeasedKeyEvent>& events) {
        // The store's thread: decode here, apply on the loop.
        std::vector<PeerChange> changes;
        changes.reserve(events.size());
        for (const LeasedKeyEvent& event : events) {
          const std::string id = event.name.substr(kWorkloadKey.size());
          if (id.empty()) continue;
          PeerChange change{event.owner, id, std::nullopt};
          if (event.type == LeasedKeyEvent::Type::kPut) {
            absl::StatusOr<Workload> workload = DecodeRegistration(event.value);
            if (!workload.ok() || workload->id != change.id) {
              undecodable->fetch_add(1, std::memory_order_relaxed);
              LOG_EVERY_N_SEC(WARN, 10)
                  << "shared registrations: replica " << event.owner << " published \""
                  << event.name << "\", which is not a registration of that workload; skipped";
              continue;
            }
            change.workload = *std::move(workload);
          }
          changes.push_back(std::move(change));
        }
        if (changes.empty()) return;
        loop.Post([this, alive, changes = std::move(changes)] {
          if (alive.expired()) return;
          applied_ += changes.size();
          registry_.ApplyPeerChanges(changes);
        });
      });
}

SharedRegistrations::~SharedRegistrations() {
  keys_watch_.reset();
  registry_watch_.reset();
  alive_.reset();
}

void SharedRegistrations::SchedulePublish() {
  if (publish_scheduled_) return;
  publish_scheduled_ = true;
  loop_.Post([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    publish_scheduled_ = false;
    Publish();
  });
}

void SharedRegistrations::Publish() {
  for (LocalChange& change : registry_.TakeLocalChanges()) {
    ++published_;
    if (change.workload.has_value()) {
      keys_.SetLeased(RegistrationKey(change.id), EncodeRegistration(*change.workload));
    } else {
      keys_.DeleteLeased(RegistrationKey(change.id));
    }
  }
}

}  // namespace meshlet::controlplane::registry
