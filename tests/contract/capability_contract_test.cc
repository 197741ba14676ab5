// Skew with the previous release (docs/upgrades.md, ADR 0071), by its wire schema
// (tests/contract/schemas): this tree keeps every field and enum value the release has, gates
// every one added since behind a capability the release lacks, and what its control plane
// translates for a sidecar of that release holds nothing the release does not know — and is
// accepted by this tree's sidecar too. The real old binaries run against this tree in
// //tests/integration:skew_test.

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "absl/strings/str_join.h"
#include "common/config/unknown_content.h"
#include "control-plane/translate/capability_gates.h"
#include "google/protobuf/descriptor.h"
#include "tests/contract/baseline_schema.h"
#include "tests/contract/contract_fixtures.h"
#include "xds/capabilities.h"
#include "xds/protocol.h"

namespace meshlet::contract {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;

class CapabilityContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<BaselineSchema>> schema = BaselineSchema::Load();
    ASSERT_TRUE(schema.ok()) << schema.status();
    schema_ = *std::move(schema);
  }

  // The message types of this tree reachable from the resources the control plane sends.
  static std::set<const Descriptor*> ResourceTypes() {
    std::set<const Descriptor*> out;
    std::vector<const Descriptor*> todo = {
        xds::Listener::descriptor(), xds::RouteConfiguration::descriptor(),
        xds::Cluster::descriptor(),  xds::ClusterLoadAssignment::descriptor(),
        xds::Secret::descriptor(),   xds::ServiceRoute::descriptor()};
    while (!todo.empty()) {
      const Descriptor* d = todo.back();
      todo.pop_back();
      if (!out.insert(d).second) continue;
      for (int i = 0; i < d->field_count(); ++i) {
        if (d->field(i)->message_type() != nullptr) todo.push_back(d->field(i)->message_type());
      }
    }
    return out;
  }

  // Whether a gate keeps `field` from a sidecar of the previous release.
  static bool GatedForPreviousRelease(const FieldDescriptor* field, int enum_value = -1) {
    const xds::CapabilitySet previous =
        xds::CapabilitySet::OfRelease(*xds::Release::Parse(kPreviousRelease));
    for (const cp::translate::CapabilityGate& gate : cp::translate::Gates()) {
      if (gate.field != field->full_name() || previous.Has(gate.capability)) continue;
      if (enum_value < 0) return true;
      if (gate.fallback == cp::translate::CapabilityGate::Fallback::kEnumValue &&
          gate.from == enum_value) {
        return true;
      }
    }
    return false;
  }

  std::unique_ptr<BaselineSchema> schema_;
};

// This tree's sidecars read what a control plane of the previous release sends: every field it
// has keeps its number, name and type, every enum value its number.
TEST_F(CapabilityContractTest, EveryFieldAndValueOfThePreviousReleaseIsKept) {
  int fields = 0;
  for (const Descriptor* current : ResourceTypes()) {
    const Descriptor* old = schema_->Find(current->full_name());
    if (old == nullptr) continue;  // a type added since
    for (int i = 0; i < old->field_count(); ++i) {
      const FieldDescriptor* was = old->field(i);
      const FieldDescriptor* now = current->FindFieldByNumber(was->number());
      ASSERT_NE(now, nullptr) << was->full_name() << " (" << was->number() << ") was removed";
      EXPECT_EQ(now->name(), was->name()) << was->full_name();
      EXPECT_EQ(now->type(), was->type()) << was->full_name();
      EXPECT_EQ(now->is_repeated(), was->is_repeated()) << was->full_name();
      if (was->message_type() != nullptr) {
        EXPECT_EQ(now->message_type()->full_name(), was->message_type()->full_name());
      }
      if (was->enum_type() != nullptr) {
        ASSERT_EQ(now->enum_type()->full_name(), was->enum_type()->full_name());
        for (int v = 0; v < was->enum_type()->value_count(); ++v) {
          const int number = was->enum_type()->value(v)->number();
          EXPECT_NE(now->enum_type()->FindValueByNumber(number), nullptr)
              << was->enum_type()->value(v)->full_name() << " was removed";
        }
      }
      ++fields;
    }
  }
  EXPECT_GT(fields, 100);  // the schema was found and compared
}

// And a sidecar of the previous release never receives what it does not read: every field and
// enum value added to a type it has is gated by a capability it lacks.
TEST_F(CapabilityContractTest, EveryFieldAndValueAddedSinceIsGated) {
  std::vector<std::string> ungated;
  int added = 0;
  for (const Descriptor* current : ResourceTypes()) {
    const Descriptor* old = schema_->Find(current->full_name());
    if (old == nullptr) continue;  // reachable only through an added field
    for (int i = 0; i < current->field_count(); ++i) {
      const FieldDescriptor* field = current->field(i);
      const FieldDescriptor* was = old->FindFieldByNumber(field->number());
      if (was == nullptr) {
        ++added;
        if (!GatedForPreviousRelease(field)) ungated.push_back(field->full_name());
        continue;
      }
      if (field->enum_type() == nullptr) continue;
      for (int v = 0; v < field->enum_type()->value_count(); ++v) {
        const int number = field->enum_type()->value(v)->number();
        if (was->enum_type()->FindValueByNumber(number) != nullptr) continue;
        ++added;
        if (!GatedForPreviousRelease(field, number)) {
          ungated.push_back(
              absl::StrCat(field->full_name(), " = ", field->enum_type()->value(v)->name()));
        }
      }
    }
  }
  EXPECT_GT(added, 0);  // 0.2.0 added fields: the comparison sees them
  EXPECT_TRUE(ungated.empty()) << "added since " << kPreviousRelease
                               << " without a capability gate (xds/capabilities.h, "
                               << "control-plane/translate/capability_gates.h): "
                               << absl::StrJoin(ungated, ", ");
}

// A resource type the previous release does not know is tied to a capability that release lacks,
// so the control plane never sends it one (it does not subscribe to the type either).
TEST_F(CapabilityContractTest, EveryResourceTypeAddedSinceNeedsACapability) {
  const xds::CapabilitySet previous =
      xds::CapabilitySet::OfRelease(*xds::Release::Parse(kPreviousRelease));
  int added = 0;
  for (const char* url : xds::kResourceTypeUrls) {
    const std::string name = std::string(url).substr(std::string(url).rfind('/') + 1);
    std::optional<xds::Capability> capability = xds::CapabilityOfType(url);
    if (schema_->Find(name) != nullptr) {
      EXPECT_FALSE(capability.has_value()) << name << " is read by " << kPreviousRelease;
      continue;
    }
    ++added;
    ASSERT_TRUE(capability.has_value()) << name << " (" << url << ") is new since "
                                        << kPreviousRelease << " and needs a capability";
    EXPECT_FALSE(previous.Has(*capability)) << name;
  }
  EXPECT_GT(added, 0);  // 0.2.0 added ServiceRoute: the comparison sees it
}

// The skew supported is one release: the oldest supported release, whose capabilities a node that
// names no release gets, is the previous one (the next release moves both).
TEST(SupportedReleasesTest, TheOldestSupportedReleaseIsThePreviousOne) {
  EXPECT_EQ(xds::kOldestSupportedRelease, kPreviousRelease);
}

// What the control plane translates for a sidecar of the previous release (it reports its
// release, no capabilities), and for a node that names no release and lists nothing, parses with
// that release's schema without an unknown field or value; the same policies translated for this
// tree's sidecar hold some (so the check sees them).
TEST_F(CapabilityContractTest, APreviousReleaseSidecarGetsOnlyWhatItsSchemaKnows) {
  cp::policy::PolicySnapshot policy;
  AddPolicies(kEverything, "everything.yaml", policy);
  for (pb::Service& s : policy.services) {
    s.mutable_status()->add_addresses(s.metadata().name() == "api" ? "10.96.0.1" : "240.240.0.1");
  }
  cp::registry::RegistrySnapshot registry;
  const std::map<std::string, std::string> capture = {{"meshlet.io/capture", "iptables"}};
  registry.workloads = {
      Workload("api-1", "api", "10.1.0.1", {8080, 9000, 9901, 5432}, {{"track", "stable"}}),
      Workload("api-2", "api", "10.1.0.2", {8080, 9000, 9901, 5432}, {{"track", "canary"}}),
      Workload("client-1", "", "10.1.0.4", {}, capture),
      Workload("legacy-1", "legacy", "10.1.0.3", {8080}),
      Workload("legacy-2", "legacy", "10.1.0.5", {8080}),
  };
  for (cp::registry::Workload& w : registry.workloads) {
    w.capture = w.labels.count("meshlet.io/capture") > 0;
    // legacy-2 has no sidecar certificate: a plaintext member beside one over mTLS.
    w.workload_certificate = w.id != "legacy-2";
  }
  cp::translate::TranslateOptions options;
  options.trust_bundle_pem = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
  int newer_content = 0;
  enum class Sidecar { kPreviousRelease, kNoReleaseNamed, kThisTree };
  for (const cp::registry::Workload& w : registry.workloads) {
    for (const Sidecar sidecar :
         {Sidecar::kPreviousRelease, Sidecar::kNoReleaseNamed, Sidecar::kThisTree}) {
      const bool previous = sidecar != Sidecar::kThisTree;
      xds::Node node;
      node.set_id(w.id);
      node.set_sidecar_version(
          sidecar == Sidecar::kNoReleaseNamed
              ? "my-build"
              : absl::StrCat(xds::kSidecarVersionPrefix, previous ? kPreviousRelease : "0.2.0"));
      if (!previous) {
        for (const std::string& c : xds::CapabilitySet::All().Names()) node.add_capabilities(c);
      }
      cp::translate::NodeResources resources =
          cp::translate::Translate(policy, registry, node, options);
      const std::string who =
          absl::StrCat(w.id, sidecar == Sidecar::kPreviousRelease  ? " (previous release)"
                             : sidecar == Sidecar::kNoReleaseNamed ? " (no release named)"
                                                                   : "");
      ExpectSidecarAccepts(resources, who);
      auto check = [&](const auto& list) {
        for (const auto& resource : list) {
          std::unique_ptr<google::protobuf::Message> old = schema_->AsRelease(resource);
          ASSERT_NE(old, nullptr) << who << ": " << resource.GetDescriptor()->full_name();
          const std::string unknown = config::FirstUnknownContent(*old);
          if (previous) {
            EXPECT_EQ(unknown, "") << who << ": " << resource.GetDescriptor()->name()
                                   << " does not read in " << kPreviousRelease;
          } else {
            newer_content += !unknown.empty();
          }
        }
      };
      check(resources.listeners);
      check(resources.routes);
      check(resources.clusters);
      check(resources.endpoints);
      check(resources.secrets);
    }
  }
  EXPECT_GT(newer_content, 0);
}

}  // namespace
}  // namespace meshlet::contract
