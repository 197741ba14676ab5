#include "control-plane/translate/capability_gates.h"

#include <array>
#include <memory>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "common/base/logging.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "xds/resources.pb.h"

namespace meshlet::controlplane::translate {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using Fallback = CapabilityGate::Fallback;

// What the walk does for one set of missing capabilities, by message type. Built once per set.
class GatePlan {
 public:
  explicit GatePlan(const xds::CapabilitySet& missing) {
    const google::protobuf::DescriptorPool* pool =
        google::protobuf::DescriptorPool::generated_pool();
    for (const CapabilityGate& gate : Gates()) {
      if (!missing.Has(gate.capability)) continue;
      const FieldDescriptor* field = pool->FindFieldByName(std::string(gate.field));
      CHECK(field != nullptr) << "capability gate names no field: " << gate.field;
      if (gate.fallback == Fallback::kDropElement) {
        drop_when_set_[field->containing_type()].push_back(field);
      } else {
        own_[field->containing_type()].push_back({field, &gate});
      }
    }
    for (const Descriptor* root :
         {xds::Listener::descriptor(), xds::RouteConfiguration::descriptor(),
          xds::Cluster::descriptor(), xds::ClusterLoadAssignment::descriptor(),
          xds::Secret::descriptor()}) {
      Reaches(root);
    }
  }

  void Apply(Message& message) const {
    auto it = walk_.find(message.GetDescriptor());
    if (it == walk_.end()) return;
    const Reflection* reflection = message.GetReflection();
    for (const Step& step : it->second) {
      const FieldDescriptor* field = step.field;
      if (step.gate != nullptr) {
        ApplyGate(*step.gate, field, message, *reflection);
        continue;
      }
      if (field->is_repeated()) {
        // Keeps the order of what stays.
        const int n = reflection->FieldSize(message, field);
        int kept = 0;
        for (int i = 0; i < n; ++i) {
          Message* element = reflection->MutableRepeatedMessage(&message, field, i);
          if (Dropped(*element)) continue;
          Apply(*element);
          if (i != kept) reflection->SwapElements(&message, field, i, kept);
          ++kept;
        }
        for (int i = kept; i < n; ++i) reflection->RemoveLast(&message, field);
      } else if (reflection->HasField(message, field)) {
        Message* child = reflection->MutableMessage(&message, field);
        if (Dropped(*child)) {
          reflection->ClearField(&message, field);
        } else {
          Apply(*child);
        }
      }
    }
  }

  // Whether a resource itself goes (a gated field set at its top).
  bool Dropped(const Message& message) const {
    auto it = drop_when_set_.find(message.GetDescriptor());
    if (it == drop_when_set_.end()) return false;
    const Reflection* reflection = message.GetReflection();
    for (const FieldDescriptor* field : it->second) {
      if (field->is_repeated() ? reflection->FieldSize(message, field) > 0
                               : reflection->HasField(message, field)) {
        return true;
      }
    }
    return false;
  }

 private:
  // A gated field of the type (gate set), or a message field that leads to one (gate null).
  struct Step {
    const FieldDescriptor* field;
    const CapabilityGate* gate;
  };

  static void ApplyGate(const CapabilityGate& gate, const FieldDescriptor* field, Message& message,
                        const Reflection& reflection) {
    switch (gate.fallback) {
      case Fallback::kClear:
        reflection.ClearField(&message, field);
        return;
      case Fallback::kEnumValue:
        CHECK(field->cpp_type() == FieldDescriptor::CPPTYPE_ENUM && !field->is_repeated())
            << gate.field;
        if (reflection.GetEnumValue(message, field) == gate.from) {
          reflection.SetEnumValue(&message, field, gate.to);
        }
        return;
      case Fallback::kDropElement:
        return;  // handled by the parent (Dropped)
    }
  }

  // Whether messages of type `d` can hold a gated field or an element to drop; fills walk_.
  bool Reaches(const Descriptor* d) {
    if (auto it = reaches_.find(d); it != reaches_.end()) return it->second;
    reaches_[d] = false;  // a type that contains itself does not reach through itself
    std::vector<Step> steps;
    if (auto own = own_.find(d); own != own_.end()) steps = own->second;
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* field = d->field(i);
      if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
      const Descriptor* type = field->message_type();
      const bool drops = drop_when_set_.contains(type);
      if (Reaches(type) || drops) steps.push_back({field, nullptr});
    }
    const bool reaches = !steps.empty();
    reaches_[d] = reaches;
    if (reaches) walk_[d] = std::move(steps);
    return reaches;
  }

  absl::flat_hash_map<const Descriptor*, std::vector<Step>> own_;
  absl::flat_hash_map<const Descriptor*, std::vector<const FieldDescriptor*>> drop_when_set_;
  absl::flat_hash_map<const Descriptor*, bool> reaches_;
  absl::flat_hash_map<const Descriptor*, std::vector<Step>> walk_;
};

// One plan per set of missing capabilities, made when first needed and kept.
const GatePlan& PlanFor(const xds::CapabilitySet& missing) {
  static std::mutex mu;
  static auto* plans = new absl::flat_hash_map<std::string, std::unique_ptr<const GatePlan>>();
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<const GatePlan>& plan = (*plans)[missing.Key()];
  if (plan == nullptr) plan = std::make_unique<const GatePlan>(missing);
  return *plan;
}

template <typename T>
void ApplyToAll(const GatePlan& plan, std::vector<T>& resources) {
  std::vector<T> kept;
  kept.reserve(resources.size());
  for (T& resource : resources) {
    if (plan.Dropped(resource)) continue;
    plan.Apply(resource);
    kept.push_back(std::move(resource));
  }
  resources = std::move(kept);
}

}  // namespace

const std::vector<CapabilityGate>& Gates() {
  using C = xds::Capability;
  static const auto* const kGates = new std::vector<CapabilityGate>{
      {C::kMeshHttp2, "meshlet.xds.Cluster.protocol", Fallback::kEnumValue,
       xds::UPSTREAM_MESH_HTTP2, xds::UPSTREAM_HTTP1},
      {C::kEndpointPlaintext, "meshlet.xds.Endpoint.plaintext", Fallback::kDropElement},
      {C::kVirtualHostDestinations, "meshlet.xds.VirtualHost.destinations", Fallback::kClear},
      {C::kOverload, "meshlet.xds.Cluster.overload", Fallback::kClear},
      {C::kPolicySource, "meshlet.xds.Route.source", Fallback::kClear},
      {C::kPolicySource, "meshlet.xds.Cluster.traffic_policy", Fallback::kClear},
      {C::kPolicySource, "meshlet.xds.Cluster.subset", Fallback::kClear},
      {C::kPolicySource, "meshlet.xds.AuthorizationPolicy.source", Fallback::kClear},
      {C::kPolicySource, "meshlet.xds.RouteAction.timeout_source", Fallback::kClear},
      {C::kPolicySource, "meshlet.xds.RouteAction.per_try_timeout_source", Fallback::kClear},
      {C::kPolicySource, "meshlet.xds.RateLimit.source", Fallback::kClear},
      {C::kPolicySource, "meshlet.xds.Listener.unmatched_destination_source", Fallback::kClear},
      // An older sidecar counts every reset before the response ends, as it always did.
      {C::kStreamResetLifetime, "meshlet.xds.HttpOptions.stream_reset_min_lifetime",
       Fallback::kClear},
      // An older sidecar ends a flooding connection at once, its requests in flight too.
      {C::kFloodDrain, "meshlet.xds.HttpOptions.flood_drain_timeout", Fallback::kClear},
      {C::kFloodDrain, "meshlet.xds.HttpOptions.max_flood_drains", Fallback::kClear},
      // A sidecar that cannot look destinations up treats unknown ones at once, as before.
      {C::kOnDemand, "meshlet.xds.Listener.on_demand", Fallback::kClear},
      // Fails closed: a sidecar that cannot verify tokens gets no listener that needs it, rather
      // than one that lets every token through.
      {C::kJwt, "meshlet.xds.Listener.jwt", Fallback::kDropElement},
      // A sidecar that cannot verify tokens has none to match: such a rule never matches there,
      // so leaving it out decides the same (ALLOW or DENY).
      {C::kJwt, "meshlet.xds.AuthorizationRule.request_principals", Fallback::kDropElement},
      {C::kJwt, "meshlet.xds.AuthorizationRule.claims", Fallback::kDropElement},
      // There, no request has a token: "matches no principal" holds for every request, the same
      // as the field left out.
      {C::kJwt, "meshlet.xds.AuthorizationRule.not_request_principals", Fallback::kClear},
      // An older sidecar renews at its own time; a rotation waits for it (it reports no roots).
      {C::kCaRotation, "meshlet.xds.Secret.renewal", Fallback::kClear},
      // Fails closed: a sidecar that cannot verify per trust domain trusts the mesh roots only,
      // and refuses foreign and alias ids.
      {C::kFederation, "meshlet.xds.Secret.federated_bundles", Fallback::kClear},
      {C::kFederation, "meshlet.xds.Secret.trust_domain_aliases", Fallback::kClear},
      // Fails closed: an older sidecar serves the default certificate only (clients asking for
      // another name refuse it) and requires client certificates (browsers cannot connect).
      {C::kGateway, "meshlet.xds.DownstreamTls.server_certificates", Fallback::kClear},
      {C::kGateway, "meshlet.xds.DownstreamTls.mode", Fallback::kEnumValue, xds::DownstreamTls::TLS,
       xds::DownstreamTls::STRICT},
      // Only named in decision records and spans.
      {C::kGateway, "meshlet.xds.VirtualHost.gateway_listener", Fallback::kClear},
      // An older sidecar balances over every endpoint as before, without preferring its zone.
      {C::kLocality, "meshlet.xds.Cluster.locality_lb", Fallback::kClear},
      {C::kLocality, "meshlet.xds.Endpoint.locality", Fallback::kClear},
      // Fails closed: an older sidecar checks the upstream's certificate against the SNI name
      // instead, which a certificate naming only the listed subjectAltNames does not pass.
      {C::kBackendTls, "meshlet.xds.UpstreamTls.subject_alt_names", Fallback::kClear},
      // An older proxy forwards preflights to the app and adds no Access-Control-* headers:
      // browsers refuse the cross-origin calls (fails closed).
      {C::kCors, "meshlet.xds.Route.cors", Fallback::kClear},
      // Fails closed: a destination that matches by server name is left out (without the name
      // it would take every connection); an older east-west gateway forwards nothing.
      {C::kServerNames, "meshlet.xds.ListenerDestination.server_names", Fallback::kDropElement},
      // Fails closed: an older sidecar would read type DNS as unknown and refuse the whole
      // configuration; without the cluster, calls to that destination fail alone.
      {C::kExternalServices, "meshlet.xds.Cluster.dns", Fallback::kDropElement},
      // Never sent without `dns` (dropped above); should it be, EDS with no assignment: no
      // endpoint.
      {C::kExternalServices, "meshlet.xds.Cluster.type", Fallback::kEnumValue, xds::Cluster::DNS,
       xds::Cluster::EDS},
      // Fails closed: without the field the destination would send its connections to no
      // cluster; left out, they are what the listener does with unknown destinations.
      {C::kExternalServices, "meshlet.xds.ListenerDestination.passthrough", Fallback::kDropElement},
      // Fails closed: without the field the destination would take every connection to its port,
      // whatever Host it names; left out, they are what the listener does with unknown ones.
      {C::kExternalServices, "meshlet.xds.ListenerDestination.http_hosts", Fallback::kDropElement},
      // Fails closed: an ALLOW rule naming hosts is left out (it would allow every host); a DENY
      // one is first rewritten to deny whatever host (RewriteHostRules).
      {C::kExternalServices, "meshlet.xds.AuthorizationRule.hosts", Fallback::kDropElement},
  };
  return *kGates;
}

namespace {

// For a sidecar that verifies no token (no capability jwt), each AuthorizationRule on the
// request's JWT rewritten into one that decides every request and connection as a current
// sidecar does there, where no request has a token: an ALLOW rule naming request principals or
// claims never matches (left out); a DENY one never matches a request but matches a connection on
// its other fields (a method no request uses, which a connection ignores towards denial); a
// not_request_principals always holds for a request (cleared), and an ALLOW rule with it never
// matches a connection (paths "*", which a connection never satisfies).
void RewriteEndUserRules(std::vector<xds::Listener>& listeners) {
  for (xds::Listener& listener : listeners) {
    if (!listener.has_authorization()) continue;
    for (xds::AuthorizationPolicy& policy : *listener.mutable_authorization()->mutable_policies()) {
      const bool deny = policy.action() == xds::AuthorizationPolicy::DENY;
      auto* rules = policy.mutable_rules();
      for (int i = rules->size() - 1; i >= 0; --i) {
        xds::AuthorizationRule& rule = (*rules)[i];
        const bool names_token = rule.request_principals_size() > 0 || rule.claims_size() > 0;
        const bool not_principals = rule.not_request_principals_size() > 0;
        if (!names_token && !not_principals) continue;
        if (names_token && !deny) {
          rules->DeleteSubrange(i, 1);
          continue;
        }
        rule.clear_request_principals();
        rule.clear_claims();
        rule.clear_not_request_principals();
        if (names_token) {
          rule.clear_methods();
          rule.add_methods(std::string(kNoRequestMethod));
        } else if (!deny && rule.paths_size() == 0) {
          rule.add_paths("*");
        }
      }
    }
  }
}

// For a sidecar that reads no AuthorizationRule.hosts (no capability external-services): a DENY
// rule naming hosts denies whatever host (cleared), rather than being left out with the ALLOW
// ones (the gate table's kDropElement), which would let through what it denies.
void RewriteHostRules(std::vector<xds::Listener>& listeners) {
  for (xds::Listener& listener : listeners) {
    if (!listener.has_authorization()) continue;
    for (xds::AuthorizationPolicy& policy : *listener.mutable_authorization()->mutable_policies()) {
      if (policy.action() != xds::AuthorizationPolicy::DENY) continue;
      for (xds::AuthorizationRule& rule : *policy.mutable_rules()) rule.clear_hosts();
    }
  }
}

}  // namespace

void ApplyCapabilityGates(const xds::CapabilitySet& node_reads, NodeResources& resources) {
  const xds::CapabilitySet missing = xds::CapabilitySet::All().Minus(node_reads);
  if (missing == xds::CapabilitySet()) return;
  if (missing.Has(xds::Capability::kJwt)) RewriteEndUserRules(resources.listeners);
  if (missing.Has(xds::Capability::kExternalServices)) RewriteHostRules(resources.listeners);
  const GatePlan& plan = PlanFor(missing);
  ApplyToAll(plan, resources.listeners);
  ApplyToAll(plan, resources.routes);
  ApplyToAll(plan, resources.service_routes);
  ApplyToAll(plan, resources.clusters);
  ApplyToAll(plan, resources.endpoints);
  ApplyToAll(plan, resources.secrets);
}

}  // namespace meshlet::controlplane::translate
