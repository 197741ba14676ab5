#pragma once

// Helpers of the injection tests (inject_test, pod_model_test, annotations_test,
// containers_test, probes_test): a sample Deployment, the options they inject with, and short
// ways to inject YAML text and read the result. Failures are reported with gtest's EXPECT_*.

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/yaml_proto.h"
#include "control-plane/inject/inject.h"

namespace meshlet::controlplane::inject {

// A Deployment of two app containers (one with TCP and UDP ports), an init container and a
// volume, in namespace "shop" with service account "reviews".
extern const char kDeployment[];

// proxy_image meshlet-proxy:0.1.0, version 0.1.0, the rest default.
Options TestOptions();

// The strings of a list node.
std::vector<std::string> Strings(const YAML::Node& list);
// The `name` of each entry of a list node.
std::vector<std::string> Names(const YAML::Node& list);

absl::StatusOr<Result> InjectText(const std::string& yaml, const Options& options = TestOptions(),
                                  const config::YamlParseOptions& source = {});
// Injects `yaml`, which must succeed and change it.
YAML::Node Injected(const std::string& yaml, const Options& options = TestOptions());
// The message of the error injecting `yaml` must give.
std::string ErrorOf(const std::string& yaml, const config::YamlParseOptions& source = {});

// The proxy's arguments of an injected pod (native or classic).
std::vector<std::string> ProxyArgs(const YAML::Node& pod);
// The values of the proxy's `flag` (e.g. "--node-service=") in an injected pod.
std::vector<std::string> ProxyFlag(const YAML::Node& pod, absl::string_view flag);

}  // namespace meshlet::controlplane::inject
