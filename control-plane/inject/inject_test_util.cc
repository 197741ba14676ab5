#include "control-plane/inject/inject_test_util.h"

#include "absl/strings/match.h"
#include "control-plane/inject/node.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::inject {

const char kDeployment[] = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels:
        app: reviews
        version: v1
    spec:
      serviceAccountName: reviews
      initContainers:
      - name: migrate
        image: reviews:1
      containers:
      - name: reviews
        image: reviews:1
        env:
        - name: PORT
          value: "9080"
        ports:
        - containerPort: 9080
        - containerPort: 9080
          name: again
        - containerPort: 5353
          protocol: UDP
      - name: metrics
        image: exporter:1
        ports:
        - containerPort: 9100
          protocol: TCP
      volumes:
      - name: cache
        emptyDir: {}
)";

Options TestOptions() {
  Options options;
  options.proxy_image = "meshlet-proxy:0.1.0";
  options.version = "0.1.0";
  return options;
}

std::vector<std::string> Strings(const YAML::Node& list) {
  std::vector<std::string> out;
  for (const YAML::Node& n : list) out.push_back(n.Scalar());
  return out;
}

std::vector<std::string> Names(const YAML::Node& list) {
  std::vector<std::string> out;
  for (const YAML::Node& n : list) out.push_back(Text(Field(n, "name")));
  return out;
}

absl::StatusOr<Result> InjectText(const std::string& yaml, const Options& options,
                                  const config::YamlParseOptions& source) {
  return Inject(YAML::Load(yaml), options, source);
}

YAML::Node Injected(const std::string& yaml, const Options& options) {
  absl::StatusOr<Result> result = InjectText(yaml, options);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return YAML::Node();
  EXPECT_TRUE(result->changed);
  return result->document;
}

std::string ErrorOf(const std::string& yaml, const config::YamlParseOptions& source) {
  absl::StatusOr<Result> result = InjectText(yaml, TestOptions(), source);
  EXPECT_FALSE(result.ok());
  return result.ok() ? "" : std::string(result.status().message());
}

std::vector<std::string> ProxyArgs(const YAML::Node& pod) {
  for (const char* list : {"initContainers", "containers"}) {
    for (const YAML::Node& c : pod["spec"][list]) {
      if (c["name"].Scalar() == "meshlet-proxy") return Strings(c["args"]);
    }
  }
  return {};
}

std::vector<std::string> ProxyFlag(const YAML::Node& pod, absl::string_view flag) {
  std::vector<std::string> values;
  for (const std::string& arg : ProxyArgs(pod)) {
    if (absl::StartsWith(arg, flag)) values.push_back(arg.substr(flag.size()));
  }
  return values;
}

}  // namespace meshlet::controlplane::inject
