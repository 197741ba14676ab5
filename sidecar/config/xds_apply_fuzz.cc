// Fuzz target for applying xDS responses (XdsClient, translate.h): what a control plane, or
// anything that gets between it and the sidecar, can make a sidecar parse, plan and translate.
//
// Input layout: byte 0 picks the protocol (even: state of the world, odd: delta); then up to 8
// responses, each a 2-byte big-endian length and that many bytes of a serialized
// DiscoveryResponse (or DeltaDiscoveryResponse), fed to one client in order with no stream.
// Invariants: the client never crashes; the configuration it runs after every response (accepted
// or refused) translates (BuildSnapshot succeeds on CurrentResources()), so a refused update
// leaves a good configuration running; a refused response changes no version.

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/logging.h"
#include "common/base/random.h"
#include "common/config/yaml_proto.h"
#include "common/event/loop.h"
#include "common/fuzz/fuzz_target.h"
#include "common/stats/stats.h"
#include "google/protobuf/stubs/logging.h"
#include "sidecar/config/translate.h"
#include "sidecar/config/translate_test_util.h"
#include "sidecar/config/xds_client.h"
#include "xds/discovery.pb.h"
#include "xds/protocol.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {

// Reaches the client's response handlers without a stream.
class XdsClientFuzzPeer {
 public:
  static void Feed(XdsClient& client, const xds::DiscoveryResponse& r) { client.OnResponse(r); }
  static void Feed(XdsClient& client, const xds::DeltaDiscoveryResponse& r) {
    client.OnDeltaResponse(r);
  }
};

namespace {

constexpr size_t kMaxResponses = 8;

[[noreturn]] void Die(const char* what, absl::string_view detail = "") {
  std::fprintf(stderr, "xds_apply_fuzz invariant broken: %s %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

std::array<std::string, xds::kResourceTypeCount> Versions(const XdsClient& client) {
  std::array<std::string, xds::kResourceTypeCount> versions;
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) versions[i] = client.version(i);
  return versions;
}

template <typename Response>
void Step(XdsClient& client, absl::string_view bytes) {
  Response response;
  if (!response.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
  const uint64_t rejected = client.rejected_updates();
  const std::array<std::string, xds::kResourceTypeCount> before = Versions(client);
  XdsClientFuzzPeer::Feed(client, response);
  if (client.rejected_updates() != rejected && Versions(client) != before) {
    Die("a refused response changed a version");
  }
  if (client.has_dynamic_config()) {
    absl::StatusOr<std::shared_ptr<const Snapshot>> running =
        BuildSnapshot(client.CurrentResources());
    if (!running.ok())
      Die("the running configuration does not translate:", running.status().message());
  }
}

void FuzzOne(absl::string_view input) {
  if (input.empty()) return;
  const bool delta = (static_cast<uint8_t>(input[0]) & 1) != 0;
  input.remove_prefix(1);

  // Every refusal is logged as a warning: too slow for fuzzing, and nothing to read.
  static const bool quiet = [] {
    SetLogLevel(LogLevel::kError);
    return true;
  }();
  (void)quiet;
  google::protobuf::LogSilencer silence;  // invalid UTF-8 in a string field is logged
  event::Loop loop;
  StatsRegistry stats;
  XdsClientOptions options;
  options.node.set_id("fuzz");
  options.delta = delta;
  XdsClient client(
      loop, options, ResourceSet{},
      [](const ResourceSet& set) { return BuildSnapshot(set).status(); }, stats.shared_shard(),
      RealRandom::ThreadLocal());
  for (size_t n = 0; n < kMaxResponses && input.size() >= 2; ++n) {
    size_t length = (static_cast<uint8_t>(input[0]) << 8) | static_cast<uint8_t>(input[1]);
    input.remove_prefix(2);
    absl::string_view bytes = input.substr(0, length);
    input.remove_prefix(bytes.size());
    if (delta) {
      Step<xds::DeltaDiscoveryResponse>(client, bytes);
    } else {
      Step<xds::DiscoveryResponse>(client, bytes);
    }
  }
}

template <typename Message>
void AddAll(const google::protobuf::RepeatedPtrField<Message>& items, const char* type_url,
            xds::DiscoveryResponse& sotw, xds::DeltaDiscoveryResponse& delta,
            std::string (*name)(const Message&)) {
  sotw.set_type_url(type_url);
  sotw.set_version_info("v1");
  sotw.set_nonce("n1");
  delta.set_type_url(type_url);
  delta.set_nonce("n1");
  for (const Message& item : items) {
    sotw.add_resources()->PackFrom(item);
    xds::Resource* r = delta.add_resources();
    r->set_name(name(item));
    r->set_version("1");
    r->mutable_resource()->PackFrom(item);
  }
}

std::string Frame(const std::string& bytes) {
  std::string out;
  out.push_back(static_cast<char>((bytes.size() >> 8) & 0xff));
  out.push_back(static_cast<char>(bytes.size() & 0xff));
  return out + bytes.substr(0, 0xffff);
}

}  // namespace

std::vector<std::string> XdsApplySeeds() {
  xds::Bootstrap::StaticResources r;
  if (!meshlet::config::YamlToProto(translate_testing::kBaseYaml, r).ok())
    Die("the seed configuration");
  std::array<xds::DiscoveryResponse, xds::kResourceTypeCount> sotw;
  std::array<xds::DeltaDiscoveryResponse, xds::kResourceTypeCount> delta;
  AddAll<xds::Secret>(r.secrets(), xds::kResourceTypeUrls[0], sotw[0], delta[0],
                      [](const xds::Secret& m) { return m.name(); });
  AddAll<xds::Cluster>(r.clusters(), xds::kResourceTypeUrls[1], sotw[1], delta[1],
                       [](const xds::Cluster& m) { return m.name(); });
  AddAll<xds::ClusterLoadAssignment>(
      r.endpoints(), xds::kResourceTypeUrls[2], sotw[2], delta[2],
      [](const xds::ClusterLoadAssignment& m) { return m.cluster_name(); });
  AddAll<xds::RouteConfiguration>(r.routes(), xds::kResourceTypeUrls[3], sotw[3], delta[3],
                                  [](const xds::RouteConfiguration& m) { return m.name(); });
  AddAll<xds::ServiceRoute>(r.service_routes(), xds::kResourceTypeUrls[4], sotw[4], delta[4],
                            [](const xds::ServiceRoute& m) { return m.name(); });
  AddAll<xds::Listener>(r.listeners(), xds::kResourceTypeUrls[5], sotw[5], delta[5],
                        [](const xds::Listener& m) { return m.name(); });

  std::string all_sotw(1, '\0'), all_delta(1, '\1');
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    all_sotw += Frame(sotw[i].SerializeAsString());
    all_delta += Frame(delta[i].SerializeAsString());
  }
  std::vector<std::string> seeds = {all_sotw, all_delta};
  // The full set, then a second round that drops the clusters (retention) and removes a route.
  xds::DiscoveryResponse no_clusters = sotw[1];
  no_clusters.clear_resources();
  no_clusters.set_version_info("v2");
  no_clusters.set_nonce("n2");
  seeds.push_back(all_sotw + Frame(no_clusters.SerializeAsString()));
  xds::DeltaDiscoveryResponse remove_route;
  remove_route.set_type_url(xds::kResourceTypeUrls[3]);
  remove_route.set_nonce("n2");
  remove_route.add_removed_resources("local");
  seeds.push_back(all_delta + Frame(remove_route.SerializeAsString()));
  // Endpoints before their cluster (held aside), then the rest.
  seeds.push_back(std::string(1, '\0') + Frame(sotw[2].SerializeAsString()) + all_sotw.substr(1));
  // Each type alone.
  for (size_t i = 0; i < xds::kResourceTypeCount; ++i) {
    seeds.push_back(std::string(1, '\0') + Frame(sotw[i].SerializeAsString()));
  }
  return seeds;
}

}  // namespace meshlet::sidecar::config

namespace meshlet::fuzz {

std::vector<std::string> SeedCorpus() { return sidecar::config::XdsApplySeeds(); }

std::vector<std::string> Dictionary() {
  std::vector<std::string> d;
  for (const char* url : xds::kResourceTypeUrls) d.push_back(url);
  for (const char* word : {"backend", "other", "eds-cluster", "local", "mesh-cert", "outbound",
                           "127.0.0.1:", "*", "/"}) {
    d.push_back(word);
  }
  return d;
}

}  // namespace meshlet::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshlet::sidecar::config::FuzzOne(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
