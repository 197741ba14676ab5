#include "control-plane/inject/pod_checks.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace meshlet::controlplane::inject {
namespace {

// "field: message" for every problem CheckPod finds in the pod `yaml` (metadata and spec).
std::vector<std::string> Problems(const std::string& yaml,
                                  const std::set<std::string>& deep = {"proxy", "v"}) {
  const YAML::Node pod = YAML::Load(yaml);
  std::vector<std::string> out;
  for (const PodProblem& p : CheckPod(pod["metadata"], pod["spec"], "spec.template.", deep)) {
    out.push_back(p.field + ": " + p.message);
  }
  return out;
}

TEST(PodChecksTest, Quantities) {
  EXPECT_DOUBLE_EQ(*ParseQuantity("100m"), 0.1);
  EXPECT_DOUBLE_EQ(*ParseQuantity("2"), 2);
  EXPECT_DOUBLE_EQ(*ParseQuantity("1.5"), 1.5);
  EXPECT_DOUBLE_EQ(*ParseQuantity("64Mi"), 64.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(*ParseQuantity("1G"), 1e9);
  EXPECT_DOUBLE_EQ(*ParseQuantity("2e3"), 2000);
  EXPECT_DOUBLE_EQ(*ParseQuantity(".5Gi"), 0.5 * 1024 * 1024 * 1024);
  for (const char* bad : {"", "m", "64MB", "1.2.3", "10 m", "1e", "Mi", "0x10"}) {
    EXPECT_FALSE(ParseQuantity(bad).ok()) << bad;
  }
  EXPECT_EQ(ParseQuantity("-1").status().message(), "\"-1\": must not be negative");
}

TEST(PodChecksTest, Names) {
  EXPECT_TRUE(IsIanaServiceName("meshlet-metrics"));
  EXPECT_TRUE(IsIanaServiceName("http2"));
  for (const char* bad : {"", "meshlet-metrics1", "-http", "http-", "h--p", "8080", "HTTP"}) {
    EXPECT_FALSE(IsIanaServiceName(bad)) << bad;
  }
  EXPECT_TRUE(IsQualifiedName("sidecar.meshlet.io/status"));
  EXPECT_TRUE(IsQualifiedName("app"));
  EXPECT_TRUE(IsQualifiedName("kubectl.kubernetes.io/default-container"));
  for (const char* bad : {"", "/x", "Bad_Prefix/x", "a/", "a/-b", "a/b/c", "x y"}) {
    EXPECT_FALSE(IsQualifiedName(bad)) << bad;
  }
  EXPECT_TRUE(IsEnvVarName("POD_NAME"));
  EXPECT_FALSE(IsEnvVarName("1X"));
  EXPECT_FALSE(IsEnvVarName("A=B"));
  EXPECT_TRUE(IsRelativePath("a/b"));
  EXPECT_FALSE(IsRelativePath("/a"));
  EXPECT_FALSE(IsRelativePath("a/../b"));
}

TEST(PodChecksTest, AValidPodHasNoProblem) {
  EXPECT_TRUE(Problems(R"(
metadata:
  annotations: {sidecar.meshlet.io/status: "{}"}
spec:
  initContainers:
  - name: proxy
    image: p:1
    restartPolicy: Always
    startupProbe: {httpGet: {path: /ready, port: 15020}, periodSeconds: 1, failureThreshold: 600}
    env:
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - {name: X, value: "1"}
    resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: "1", memory: 64Mi}}
    securityContext: {runAsUser: 1337, runAsNonRoot: true, allowPrivilegeEscalation: false}
    volumeMounts: [{name: v, mountPath: /v}]
  containers:
  - {name: app, image: app:1, volumeMounts: [{name: v, mountPath: /x}, {name: plain, mountPath: /y}]}
  volumes:
  - name: v
    projected: {sources: [{serviceAccountToken: {audience: meshlet, expirationSeconds: 3600, path: token}}]}
  - name: plain
)")
                  .empty());
}

TEST(PodChecksTest, EveryRuleBrokenIsReported) {
  EXPECT_EQ(
      Problems(R"(
metadata:
  annotations: {a: 1, "-bad": x}
  labels: {app: [x]}
spec:
  initContainers:
  - name: init
    image: i
    readinessProbe: {tcpSocket: {port: 1}}
  - name: proxy
    restartPolicy: OnFailure
    ports:
    - {containerPort: 0, name: meshlet-metrics-port}
    - {containerPort: 80, name: http, protocol: HTTP}
    - {containerPort: 81, name: http}
    env:
    - {name: 1X, value: 5}
    - name: Y
      valueFrom: {fieldRef: {fieldPath: status.nodeIP}}
    - {name: Z, value: a, valueFrom: {}}
    startupProbe: {httpGet: {path: ready, port: 99999}, exec: {command: [x]}, successThreshold: 2}
    readinessProbe: {periodSeconds: 0, httpGet: {port: http}}
    resources: {requests: {cpu: 2, memory: 64MB}, limits: {cpu: 1500m}}
    securityContext: {runAsUser: 0, runAsNonRoot: true, privileged: true, allowPrivilegeEscalation: false}
    volumeMounts: [{name: missing, mountPath: relative}]
    args: [--port, 80]
  containers:
  - {name: app, image: a, restartPolicy: Always}
  - {name: proxy, image: a}
  volumes:
  - {name: v, secret: {secretName: Not_A_Name}, emptyDir: {}}
  - {name: v, configMap: {name: c, items: [{key: k, path: ../x}]}}
)"),
      (std::vector<std::string>{
          "spec.template.metadata.annotations['a']: must be a string",
          "spec.template.metadata.annotations['-bad']: not a valid key: [prefix/]name, the name "
          "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or "
          "digit",
          "spec.template.metadata.labels['app']: must be a string",
          "spec.template.spec.volumes[0]: must have at most one volume source (none is an "
          "emptyDir)",
          "spec.template.spec.volumes[0].secret.secretName: must be a DNS-1123 subdomain",
          "spec.template.spec.volumes[1].name: \"v\" is used twice",
          "spec.template.spec.volumes[1].configMap.items[0].path: must be a relative path "
          "without \"..\"",
          "spec.template.spec.initContainers[0].readinessProbe: an init container without "
          "restartPolicy Always may not have one",
          "spec.template.spec.initContainers[1].restartPolicy: must be Always (a sidecar) if set",
          "spec.template.spec.initContainers[1].readinessProbe: an init container without "
          "restartPolicy Always may not have one",
          "spec.template.spec.initContainers[1].startupProbe: an init container without "
          "restartPolicy Always may not have one",
          "spec.template.spec.initContainers[1].volumeMounts[0].name: no volume named "
          "\"missing\"",
          "spec.template.spec.initContainers[1].volumeMounts[0].mountPath: must be an absolute "
          "path",
          "spec.template.spec.initContainers[1].image: required",
          "spec.template.spec.initContainers[1].ports[0].containerPort: must be from 1 to 65535",
          "spec.template.spec.initContainers[1].ports[0].name: at most 15 lowercase letters, "
          "digits and '-', with a letter, no \"--\", no '-' at either end",
          "spec.template.spec.initContainers[1].ports[1].protocol: must be TCP, UDP or SCTP",
          "spec.template.spec.initContainers[1].ports[2].name: \"http\" is used twice",
          "spec.template.spec.initContainers[1].env[0].name: must be [-._a-zA-Z][-._a-zA-Z0-9]*",
          "spec.template.spec.initContainers[1].env[0].value: must be a string",
          "spec.template.spec.initContainers[1].env[1].valueFrom.fieldRef.fieldPath: "
          "\"status.nodeIP\" is not a supported field path",
          "spec.template.spec.initContainers[1].env[2]: value and valueFrom exclude each other",
          "spec.template.spec.initContainers[1].env[2].valueFrom: must have exactly one source",
          "spec.template.spec.initContainers[1].readinessProbe.periodSeconds: must be from 1 to "
          "2147483647",
          "spec.template.spec.initContainers[1].startupProbe: must have exactly one of httpGet, "
          "tcpSocket, exec, grpc",
          "spec.template.spec.initContainers[1].startupProbe.httpGet.port: must be from 1 to "
          "65535",
          "spec.template.spec.initContainers[1].startupProbe.httpGet.path: must be an absolute "
          "path",
          "spec.template.spec.initContainers[1].startupProbe.successThreshold: must be 1",
          "spec.template.spec.initContainers[1].resources.requests.memory: \"64MB\" is not a "
          "quantity (a number with an optional suffix: m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, "
          "Ei, or an exponent such as e3)",
          "spec.template.spec.initContainers[1].resources.limits.cpu: must not be below the "
          "request (2)",
          "spec.template.spec.initContainers[1].securityContext.runAsNonRoot: true contradicts "
          "runAsUser 0",
          "spec.template.spec.initContainers[1].securityContext.allowPrivilegeEscalation: false "
          "contradicts privileged true",
          "spec.template.spec.initContainers[1].args[1]: must be a string",
          "spec.template.spec.containers[0].restartPolicy: only init containers may have one",
          "spec.template.spec.containers[1].name: \"proxy\" is used twice (containers and "
          "initContainers)",
      }));
  EXPECT_EQ(Problems("spec: {containers: []}"),
            (std::vector<std::string>{"spec.template.spec.containers: must be a non-empty list"}));
  EXPECT_EQ(Problems("metadata: {}\n"),
            (std::vector<std::string>{"spec.template.spec: must be a map"}));
}

TEST(PodChecksTest, AnnotationsAreLimitedTo256KiB) {
  const std::string big(256 * 1024, 'x');
  EXPECT_EQ(Problems("metadata: {annotations: {a: " + big + "}}\nspec: {containers: [{name: a}]}"),
            (std::vector<std::string>{
                "spec.template.metadata.annotations: total size 262145 bytes; at most 262144"}));
}

}  // namespace
}  // namespace meshlet::controlplane::inject
