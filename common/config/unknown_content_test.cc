#include "common/config/unknown_content.h"

#include <gtest/gtest.h>

#include "google/protobuf/unknown_field_set.h"
#include "xds/resources.pb.h"

namespace meshlet::config {
namespace {

google::protobuf::UnknownFieldSet& Unknown(google::protobuf::Message& m) {
  return *m.GetReflection()->MutableUnknownFields(&m);
}

TEST(FirstUnknownContentTest, NamesUnknownFieldsAndEnumValuesByPath) {
  xds::Cluster cluster;
  cluster.set_name("c");
  cluster.mutable_load_assignment()->add_endpoints()->set_address("127.0.0.1:1");
  cluster.mutable_load_assignment()->add_endpoints()->set_address("127.0.0.1:2");
  EXPECT_EQ(FirstUnknownContent(cluster), "");

  xds::Cluster later = cluster;
  later.mutable_load_assignment()->mutable_endpoints(1)->set_health(
      static_cast<xds::Endpoint::Health>(7));
  EXPECT_EQ(FirstUnknownContent(later),
            "load_assignment.endpoints[1].health: value 7 of meshlet.xds.Endpoint.Health");

  later = cluster;
  Unknown(*later.mutable_load_assignment()).AddVarint(99, 1);
  EXPECT_EQ(FirstUnknownContent(later),
            "load_assignment: field 99 of meshlet.xds.ClusterLoadAssignment");

  later = cluster;
  later.set_protocol(static_cast<xds::UpstreamProtocol>(42));
  EXPECT_EQ(FirstUnknownContent(later), "protocol: value 42 of meshlet.xds.UpstreamProtocol");

  // Its own unknown fields come first.
  Unknown(later).AddFixed32(77, 1);
  EXPECT_EQ(FirstUnknownContent(later), "field 77 of meshlet.xds.Cluster");
}

}  // namespace
}  // namespace meshlet::config
