#include "sidecar/config/held_bytes.h"

#include <zlib.h>

#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "xds/resources.pb.h"

namespace meshlet::sidecar::config {
namespace {

// One pointer per held resource: the sizes and the bytes share its one allocation.
static_assert(sizeof(HeldBytes) == sizeof(void*));

// A load assignment as the control plane sends one for a service of `endpoints` pods: an
// address, the pod's labels and the service's identity per endpoint.
xds::ClusterLoadAssignment Assignment(int service, int endpoints) {
  xds::ClusterLoadAssignment assignment;
  assignment.set_cluster_name(
      absl::StrCat("outbound|80||svc-", service, ".bench.svc.cluster.local"));
  for (int i = 0; i < endpoints; ++i) {
    xds::Endpoint* e = assignment.add_endpoints();
    e->set_address(absl::StrCat("127.1.", service % 250, ".", i + 1, ":8080"));
    (*e->mutable_labels())["app"] = absl::StrCat("svc-", service);
    (*e->mutable_labels())["version"] = i < endpoints / 2 ? "v1" : "v2";
    e->set_identity(absl::StrCat("spiffe://cluster.local/ns/bench/sa/svc-", service));
  }
  return assignment;
}

TEST(HeldBytesTest, LoadAssignmentHeldInAFifthOfItsBytes) {
  const xds::ClusterLoadAssignment assignment = Assignment(1234, 15);
  const std::string bytes = assignment.SerializeAsString();
  ASSERT_GT(bytes.size(), 1500u);
  const HeldBytes held(bytes, assignment.cluster_name());
  EXPECT_TRUE(held.compressed());
  EXPECT_EQ(held.size(), bytes.size());
  // About a sixth with the header: the names, labels and identity repeat per endpoint.
  EXPECT_LT(held.held_size(), bytes.size() / 5) << held.held_size() << " of " << bytes.size();
  EXPECT_EQ(held.Expand(assignment.cluster_name()), bytes);
}

// Deflate alone, as held bytes were compressed without a dictionary: what `bytes` take.
size_t DeflatedSize(const std::string& bytes) {
  z_stream stream{};
  EXPECT_EQ(deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, -12, 5, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(bytes.size() + 64, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  const size_t size = out.size() - stream.avail_out;
  deflateEnd(&stream);
  return size;
}

// The resource's name and the names common to a mesh's resources are the dictionary: a small
// resource, which is mostly names, is held in well under what deflate alone makes of it.
TEST(HeldBytesTest, SmallResourceRefersToItsName) {
  for (int endpoints : {1, 3, 10}) {
    const xds::ClusterLoadAssignment assignment = Assignment(4321, endpoints);
    const std::string bytes = assignment.SerializeAsString();
    const HeldBytes held(bytes, assignment.cluster_name());
    EXPECT_TRUE(held.compressed()) << endpoints;
    const size_t alone = DeflatedSize(bytes);
    EXPECT_LT(held.held_size(), 8 + alone * 3 / 4)
        << endpoints << " endpoints: " << held.held_size() << " bytes held, deflate alone " << alone
        << " of " << bytes.size();
    EXPECT_EQ(held.Expand(assignment.cluster_name()), bytes);
    xds::ClusterLoadAssignment parsed;
    ASSERT_TRUE(held.ParseInto(parsed, assignment.cluster_name()));
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, assignment));
  }
}

TEST(HeldBytesTest, ParsesAsReceived) {
  const xds::ClusterLoadAssignment assignment = Assignment(7, 10);
  const HeldBytes held(assignment.SerializeAsString(), assignment.cluster_name());
  xds::ClusterLoadAssignment parsed;
  ASSERT_TRUE(held.ParseInto(parsed, assignment.cluster_name()));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, assignment));
  // Again, with the thread's buffers reused.
  xds::ClusterLoadAssignment again;
  ASSERT_TRUE(held.ParseInto(again, assignment.cluster_name()));
  EXPECT_EQ(again.endpoints_size(), 10);
}

TEST(HeldBytesTest, BytesThatDoNotShrinkAreKeptAsTheyAre) {
  std::mt19937 random(52);
  std::string noise(1000, '\0');
  for (char& c : noise) c = static_cast<char>(random());
  const HeldBytes held(noise, "noise");
  EXPECT_FALSE(held.compressed());
  EXPECT_EQ(held.held_size(), noise.size() + 2 * sizeof(uint32_t));
  EXPECT_EQ(held.Expand("noise"), noise);

  const HeldBytes one("x", "x");
  EXPECT_FALSE(one.compressed());
  EXPECT_EQ(one.Expand("x"), "x");
}

TEST(HeldBytesTest, EmptyHoldsNothing) {
  const HeldBytes held(absl::string_view(), "");
  EXPECT_EQ(held.size(), 0u);
  EXPECT_EQ(held.held_size(), 0u);
  EXPECT_EQ(held.Expand(""), "");
  xds::ClusterLoadAssignment parsed;
  EXPECT_TRUE(held.ParseInto(parsed, ""));
  EXPECT_EQ(parsed.endpoints_size(), 0);
}

TEST(HeldBytesTest, LargeResourcesRoundTrip) {
  // Beyond the 4 KiB window and the buffers kept per thread.
  const xds::ClusterLoadAssignment assignment = Assignment(99, 5000);
  const std::string bytes = assignment.SerializeAsString();
  ASSERT_GT(bytes.size(), 256u * 1024);
  const HeldBytes held(bytes, assignment.cluster_name());
  EXPECT_TRUE(held.compressed());
  EXPECT_EQ(held.Expand(assignment.cluster_name()), bytes);
  xds::ClusterLoadAssignment parsed;
  ASSERT_TRUE(held.ParseInto(parsed, assignment.cluster_name()));
  EXPECT_EQ(parsed.endpoints_size(), 5000);
}

}  // namespace
}  // namespace meshlet::sidecar::config
