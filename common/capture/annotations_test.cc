#include "common/capture/annotations.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::capture {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

AnnotationLookup From(std::map<std::string, std::string> annotations) {
  return [annotations](absl::string_view key) -> std::optional<std::string> {
    auto it = annotations.find(std::string(key));
    if (it == annotations.end()) return std::nullopt;
    return it->second;
  };
}

TEST(InitArgsFromAnnotationsTest, NoAnnotationsGiveTheBaseArguments) {
  EXPECT_THAT(*InitArgsFromAnnotations(From({})),
              ElementsAre("--proxy-uid=1337", "--outbound-port=15001", "--inbound-port=15006"));
}

TEST(InitArgsFromAnnotationsTest, ListsAreTrimmedAndWrittenInInjectionOrder) {
  EXPECT_THAT(*InitArgsFromAnnotations(From({
                  {kIncludeOutboundRangesAnnotation, "10.96.0.0/12, fd00::/8"},
                  {kExcludeInboundPortsAnnotation, " 9090 ,8081"},
                  {kIncludeInboundPortsAnnotation, "*"},
                  {"unrelated", "x"},
              })),
              ElementsAre("--proxy-uid=1337", "--outbound-port=15001", "--inbound-port=15006",
                          "--exclude-inbound-ports=9090,8081", "--include-inbound-ports=*",
                          "--include-outbound-cidrs=10.96.0.0/12,fd00::/8"));
}

TEST(InitArgsFromAnnotationsTest, ErrorsNameTheAnnotationAndTheItem) {
  absl::StatusOr<std::vector<std::string>> args =
      InitArgsFromAnnotations(From({{kExcludeOutboundPortsAnnotation, "5432,http"}}));
  ASSERT_FALSE(args.ok());
  EXPECT_THAT(args.status().message(),
              HasSubstr("annotation traffic.meshlet.io/excludeOutboundPorts: \"http\" is not a "
                        "port (1-65535); the list is comma-separated"));
  // "*" only where the flag takes it.
  EXPECT_FALSE(InitArgsFromAnnotations(From({{kExcludeInboundPortsAnnotation, "*"}})).ok());
  EXPECT_FALSE(
      InitArgsFromAnnotations(From({{kExcludeOutboundRangesAnnotation, "10.0.0.0/33"}})).ok());
  EXPECT_FALSE(
      InitArgsFromAnnotations(From({{kIncludeOutboundRangesAnnotation, "10.0.0.1"}})).ok());
}

}  // namespace
}  // namespace meshlet::capture
