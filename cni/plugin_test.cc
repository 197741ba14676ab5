#include "cni/plugin.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cni/json.h"
#include "cni/kubernetes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshlet::cni {
namespace {

using sidecar::capture::Action;
using sidecar::capture::CaptureOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kPrevResult[] =
    R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/p"}],)"
    R"("ips":[{"address":"198.18.0.5/24","gateway":"198.18.0.1","interface":0}],"dns":{}})";
constexpr char kCniStatus[] = R"({"version":"0.1.0","mode":"native","capture":"cni"})";

std::string Config(absl::string_view version, absl::string_view extra = "", bool prev = true) {
  return absl::StrCat(R"({"cniVersion":")", version, R"(","name":"pods","type":"meshlet-cni")",
                      extra, prev ? absl::StrCat(R"(,"prevResult":)", kPrevResult) : "", "}");
}

// A config whose runtimeConfig carries these annotations (as containerd passes them).
std::string WithAnnotations(absl::string_view annotations, absl::string_view version = "1.0.0") {
  return Config(version, absl::StrCat(R"(,"runtimeConfig":{"io.kubernetes.cri.pod-annotations":)",
                                      annotations, "}"));
}

Invocation Command(absl::string_view command) {
  return {.command = std::string(command),
          .container_id = "0123456789abcdef0123",
          .netns = "/var/run/netns/p",
          .ifname = "eth0",
          .args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-1"};
}

// Records what RunPlugin() asks of the host.
struct FakeHost {
  std::map<std::string, std::string> annotations;
  absl::Status fetch_status;
  absl::Status netns_status;
  absl::Status execute_status;
  std::vector<std::string> calls;
  std::vector<CaptureOptions> executed;

  Host Make() {
    return Host{
        .pod_annotations = [this](const KubernetesSettings& settings, const PodRef& pod)
            -> absl::StatusOr<std::map<std::string, std::string>> {
          calls.push_back(
              absl::StrCat("fetch ", settings.server, " ", pod.pod_namespace, "/", pod.name));
          if (!fetch_status.ok()) return fetch_status;
          return annotations;
        },
        .enter_netns =
            [this](const std::string& path) {
              calls.push_back(absl::StrCat("enter ", path));
              return netns_status;
            },
        .execute =
            [this](const CaptureOptions& options, Action action, std::string* log) {
              calls.push_back(action == Action::kApply     ? "apply"
                              : action == Action::kCleanup ? "cleanup"
                                                           : "check");
              executed.push_back(options);
              log->append("IPv4: ran\n");
              return execute_status;
            },
        .now = [] { return absl::FromUnixSeconds(1800000000); },
    };
  }
};

// The error result's members.
struct ErrorFields {
  std::string cni_version;
  int code = 0;
  std::string msg, details;
};
ErrorFields ReadError(absl::string_view text) {
  absl::StatusOr<JsonValue> json = ParseJson(text);
  EXPECT_TRUE(json.ok()) << text;
  ErrorFields fields;
  if (!json.ok()) return fields;
  fields.cni_version = json->Find("cniVersion")->text;
  int code = 0;
  EXPECT_TRUE(absl::SimpleAtoi(json->Find("code")->text, &code));
  fields.code = code;
  fields.msg = json->Find("msg")->text;
  if (const JsonValue* details = json->Find("details")) fields.details = details->text;
  return fields;
}

TEST(ConfigTest, ReadsItsOwnFieldsAndKeepsThePrevResultAsItCame) {
  PluginConfig config;
  CniError error;
  ASSERT_TRUE(ParseConfig(
      Config("0.4.0",
             R"(,"excludeNamespaces":["kube-system","infra"],"logFile":"/var/log/m.log",)"
             R"("onMetadataError":"skip","kubernetes":{"server":"https://10.96.0.1:443",)"
             R"("caFile":"/etc/ca.crt","tokenFile":"/etc/token","timeoutSeconds":3}, "dns": {})"),
      &config, &error))
      << error.msg;
  EXPECT_EQ(config.cni_version, "0.4.0");
  EXPECT_EQ(config.type, "meshlet-cni");
  EXPECT_THAT(config.exclude_namespaces, ElementsAre("kube-system", "infra"));
  EXPECT_EQ(config.log_file, "/var/log/m.log");
  EXPECT_EQ(config.on_metadata_error, MetadataErrorPolicy::kSkip);
  ASSERT_TRUE(config.kubernetes.has_value());
  EXPECT_EQ(config.kubernetes->server, "https://10.96.0.1:443");
  EXPECT_EQ(config.kubernetes->timeout, absl::Seconds(3));
  EXPECT_EQ(config.prev_result, kPrevResult);
  EXPECT_FALSE(config.pod_annotations.has_value());
}

TEST(ConfigTest, DefaultsExcludeKubeSystemAndFailOnMetadataErrors) {
  PluginConfig config;
  CniError error;
  ASSERT_TRUE(ParseConfig(Config("1.0.0", "", false), &config, &error));
  EXPECT_THAT(config.exclude_namespaces, ElementsAre("kube-system"));
  EXPECT_EQ(config.on_metadata_error, MetadataErrorPolicy::kFail);
  EXPECT_FALSE(config.kubernetes.has_value());
  EXPECT_FALSE(config.prev_result.has_value());
}

TEST(ConfigTest, ErrorsSayWhichFieldAndCarryTheSpecsCodes) {
  struct Case {
    std::string json;
    int code;
    std::string message;
  };
  for (
      const Case& c : std::vector<Case>{
          {"{", kDecodeFailure, "not JSON"},
          {"[]", kDecodeFailure, "not a JSON object"},
          {R"({"name":"x"})", kInvalidConfig, "has no cniVersion"},
          {Config("0.3.1"), kIncompatibleVersion,
           "meshlet-cni speaks CNI 0.4.0 and 1.0.0, not 0.3.1"},
          {Config("1.0.0", R"(,"excludeNamespaces":"kube-system")"), kInvalidConfig,
           "excludeNamespaces must be an array of strings"},
          {Config("1.0.0", R"(,"logFile":3)"), kInvalidConfig,
           "logFile must be a string, not a number"},
          {Config("1.0.0", R"(,"onMetadataError":"ignore")"), kInvalidConfig,
           "onMetadataError must be \"fail\" or \"skip\""},
          {Config("1.0.0", R"(,"kubernetes":{"server":"http://a:1","caFile":"c","tokenFile":"t"})"),
           kInvalidConfig, "needs server (https://HOST:PORT), caFile and tokenFile"},
          {Config(
               "1.0.0",
               R"(,"kubernetes":{"server":"https://a:1","caFile":"c","tokenFile":"t","timeoutSeconds":0})"),
           kInvalidConfig, "timeoutSeconds must be a whole number from 1 to 120"},
          {Config("1.0.0", R"(,"kubernetes":{"kubeconfig":"k"})"), kInvalidConfig,
           "kubernetes.kubeconfig is not a setting of meshlet-cni"},
          {Config("1.0.0", R"(,"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"a":1}})"),
           kInvalidConfig,
           "runtimeConfig[\"io.kubernetes.cri.pod-annotations\"][\"a\"] must be a string"},
      }) {
    PluginConfig config;
    CniError error;
    EXPECT_FALSE(ParseConfig(c.json, &config, &error)) << c.json;
    EXPECT_EQ(error.code, c.code) << c.json;
    EXPECT_THAT(error.msg, HasSubstr(c.message)) << c.json;
  }
}

TEST(VersionTest, ListsTheSupportedVersionsAndAnswersInTheOneAskedFor) {
  FakeHost fake;
  RunResult result = RunPlugin({.command = "VERSION"}, R"({"cniVersion":"0.4.0"})", fake.Make());
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.stdout_text,
            "{\"cniVersion\":\"0.4.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}\n");
  // One it does not speak, or none: the newest.
  EXPECT_EQ(VersionJson("0.3.1"),
            "{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}\n");
  EXPECT_EQ(RunPlugin({.command = "VERSION"}, "", fake.Make()).stdout_text, VersionJson(""));
  EXPECT_THAT(fake.calls, IsEmpty());
}

TEST(ResultTest, AddPassesThePrevResultOnUnchanged) {
  EXPECT_EQ(AddResult("1.0.0", kPrevResult), absl::StrCat(kPrevResult, "\n"));
  // Without a cniVersion of its own, the configuration's goes first.
  EXPECT_EQ(AddResult("0.4.0", R"( {"ips":[]})"), "{\"cniVersion\":\"0.4.0\",\"ips\":[]}\n");
  EXPECT_EQ(AddResult("0.4.0", "{}"), "{\"cniVersion\":\"0.4.0\"}\n");
}

TEST(ResultTest, ErrorsAreTheSpecsErrorObject) {
  EXPECT_EQ(ErrorJson("0.4.0", {.code = 7, .msg = "bad \"x\"", .details = "line1\nline2"}),
            "{\"cniVersion\":\"0.4.0\",\"code\":7,\"msg\":\"bad \\\"x\\\"\","
            "\"details\":\"line1\\nline2\"}\n");
  EXPECT_EQ(ErrorJson("1.0.0", {.code = 100, .msg = "m"}),
            "{\"cniVersion\":\"1.0.0\",\"code\":100,\"msg\":\"m\"}\n");
}

TEST(ArgsTest, ThePodComesFromCniArgs) {
  std::optional<PodRef> pod =
      PodFromArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-1;K8S_POD_UID=u");
  ASSERT_TRUE(pod.has_value());
  EXPECT_EQ(pod->pod_namespace, "shop");
  EXPECT_EQ(pod->name, "cart-1");
  EXPECT_FALSE(pod->namespace_defaulted);
  EXPECT_FALSE(PodFromArgs("IgnoreUnknown=1;K8S_POD_NAME=cart-1").has_value());
  EXPECT_FALSE(PodFromArgs("").has_value());
  // A runtime that names the pod alone (podman): the default namespace, when there is one.
  pod = PodFromArgs("IgnoreUnknown=1;K8S_POD_NAME=cart-1", "mesh");
  ASSERT_TRUE(pod.has_value());
  EXPECT_EQ(pod->pod_namespace, "mesh");
  EXPECT_EQ(pod->name, "cart-1");
  EXPECT_TRUE(pod->namespace_defaulted);
  EXPECT_EQ(PodFromArgs("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-1", "mesh")->pod_namespace,
            "shop");
  EXPECT_FALSE(PodFromArgs("IgnoreUnknown=1", "mesh").has_value());
}

TEST(DecideTest, OnlyPodsMarkedForTheCniAreCaptured) {
  Decision decision;
  CniError error;
  ASSERT_TRUE(Decide({}, &decision, &error));
  EXPECT_FALSE(decision.capture);
  EXPECT_THAT(decision.reason, HasSubstr("not injected"));

  decision = {};
  ASSERT_TRUE(
      Decide({{"sidecar.meshlet.io/status", kCniStatus}, {"sidecar.meshlet.io/inject", "false"}},
             &decision, &error));
  EXPECT_FALSE(decision.capture);
  EXPECT_THAT(decision.reason, HasSubstr("opted out"));

  decision = {};
  ASSERT_TRUE(Decide({{"sidecar.meshlet.io/status",
                       R"({"version":"0.1.0","mode":"native","initContainers":["meshlet-init"]})"}},
                     &decision, &error));
  EXPECT_FALSE(decision.capture);
  EXPECT_THAT(decision.reason, HasSubstr("meshlet-init"));

  decision = {};
  ASSERT_TRUE(Decide({{"sidecar.meshlet.io/status", kCniStatus},
                      {"traffic.meshlet.io/excludeOutboundPorts", "5432"},
                      {"traffic.meshlet.io/excludeInboundPorts", "9090"}},
                     &decision, &error));
  EXPECT_TRUE(decision.capture);
  // meshlet-init's arguments for the same annotations, parsed by the same parser.
  EXPECT_THAT(decision.init_args,
              ElementsAre("--proxy-uid=1337", "--outbound-port=15001", "--inbound-port=15006",
                          "--exclude-inbound-ports=9090", "--exclude-outbound-ports=5432"));
  EXPECT_THAT(decision.options.exclude_outbound_ports, ElementsAre(5432));
  EXPECT_THAT(decision.options.exclude_inbound_ports, ElementsAre(9090));
  EXPECT_EQ(decision.options.proxy_uid, 1337u);
}

TEST(DecideTest, AMarkedPodWithBadCaptureAnnotationsIsAnError) {
  Decision decision;
  CniError error;
  EXPECT_FALSE(Decide({{"sidecar.meshlet.io/status", kCniStatus},
                       {"traffic.meshlet.io/includeOutboundIPRanges", "10.0.0.0/40"}},
                      &decision, &error));
  EXPECT_EQ(error.code, kBadCaptureAnnotations);
  EXPECT_THAT(error.details, HasSubstr("traffic.meshlet.io/includeOutboundIPRanges"));
}

TEST(RunTest, AddCapturesAMarkedPodInItsNamespaceAndPassesThePrevResultOn) {
  FakeHost fake;
  RunResult result =
      RunPlugin(Command("ADD"),
                WithAnnotations(R"({"sidecar.meshlet.io/status":"{\"capture\":\"cni\"}",)"
                                R"("traffic.meshlet.io/excludeOutboundPorts":"5432"})"),
                fake.Make());
  EXPECT_EQ(result.exit_code, 0) << result.stdout_text;
  EXPECT_EQ(result.stdout_text, absl::StrCat(kPrevResult, "\n"));
  EXPECT_THAT(fake.calls, ElementsAre("enter /var/run/netns/p", "apply"));
  EXPECT_THAT(fake.executed[0].exclude_outbound_ports, ElementsAre(5432));
  EXPECT_EQ(result.log_line,
            "2027-01-15T08:00:00.000Z meshlet-cni ADD pod=shop/cart-1 container=0123456789ab "
            "outcome=captured detail=\"sidecar init --proxy-uid=1337 --outbound-port=15001 "
            "--inbound-port=15006 --exclude-outbound-ports=5432\"");
  EXPECT_EQ(result.execute_log, "IPv4: ran\n");
}

TEST(RunTest, PodsNotMarkedPassThroughUntouched) {
  for (const std::string& config :
       {WithAnnotations("{}"),
        WithAnnotations(R"({"sidecar.meshlet.io/status":"{\"capture\":\"cni\"}",)"
                        R"("sidecar.meshlet.io/inject":"false"})")}) {
    FakeHost fake;
    RunResult result = RunPlugin(Command("ADD"), config, fake.Make());
    EXPECT_EQ(result.exit_code, 0);
    EXPECT_EQ(result.stdout_text, absl::StrCat(kPrevResult, "\n"));
    EXPECT_THAT(fake.calls, IsEmpty());
    EXPECT_THAT(result.log_line, HasSubstr("outcome=skipped"));
  }
}

TEST(RunTest, ExcludedNamespacesAreNeverLookedUp) {
  FakeHost fake;
  Invocation invocation = Command("ADD");
  invocation.args = "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1";
  RunResult result = RunPlugin(invocation,
                               Config("1.0.0", R"(,"kubernetes":{"server":"https://k:6443",)"
                                               R"("caFile":"c","tokenFile":"t"})"),
                               fake.Make());
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(fake.calls, IsEmpty());
  EXPECT_THAT(result.log_line,
              HasSubstr("outcome=skipped detail=\"namespace kube-system is excluded\""));
}

TEST(RunTest, AnnotationsComeFromTheApiServerWithoutRuntimeConfig) {
  FakeHost fake;
  fake.annotations = {{"sidecar.meshlet.io/status", kCniStatus}};
  const std::string config =
      Config("1.0.0", R"(,"kubernetes":{"server":"https://k:6443","caFile":"c","tokenFile":"t"})");
  RunResult result = RunPlugin(Command("ADD"), config, fake.Make());
  EXPECT_EQ(result.exit_code, 0) << result.stdout_text;
  EXPECT_THAT(fake.calls,
              ElementsAre("fetch https://k:6443 shop/cart-1", "enter /var/run/netns/p", "apply"));

  // The API server unreachable: try again later (fail closed by default).
  fake = {};
  fake.fetch_status = absl::UnavailableError("connection refused");
  result = RunPlugin(Command("ADD"), config, fake.Make());
  EXPECT_EQ(result.exit_code, 1);
  ErrorFields error = ReadError(result.stdout_text);
  EXPECT_EQ(error.code, kTryAgainLater);
  EXPECT_THAT(error.msg,
              HasSubstr("cannot read the annotations of pod shop/cart-1: connection refused"));
  EXPECT_THAT(result.log_line, HasSubstr("outcome=failed detail=\"code 11: cannot read"));
  // Refused: an error of its own.
  fake.fetch_status = absl::PermissionDeniedError("HTTP 403");
  EXPECT_EQ(ReadError(RunPlugin(Command("ADD"), config, fake.Make()).stdout_text).code,
            kPodMetadataUnreadable);
  // onMetadataError: skip passes the pod through.
  const std::string skip = Config(
      "1.0.0",
      R"(,"onMetadataError":"skip","kubernetes":{"server":"https://k:6443","caFile":"c","tokenFile":"t"})");
  result = RunPlugin(Command("ADD"), skip, fake.Make());
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.stdout_text, absl::StrCat(kPrevResult, "\n"));
  EXPECT_THAT(result.log_line, HasSubstr("passed through (onMetadataError: skip)"));
  // Neither runtimeConfig annotations nor a kubernetes section: it cannot know.
  fake = {};
  result = RunPlugin(Command("ADD"), Config("1.0.0"), fake.Make());
  EXPECT_EQ(ReadError(result.stdout_text).code, kPodMetadataUnreadable);
  EXPECT_THAT(ReadError(result.stdout_text).msg, HasSubstr("no kubernetes section"));
}

TEST(RunTest, DefaultNamespaceNamesPodsTheRuntimeNamesWithoutANamespace) {
  // podman's CNI backend: K8S_POD_NAME (the pod's name) and no K8S_POD_NAMESPACE.
  Invocation add = Command("ADD");
  add.args = "IgnoreUnknown=1;K8S_POD_NAME=cart-1";
  const std::string api =
      R"("kubernetes":{"server":"https://k:6443","caFile":"c","tokenFile":"t"})";
  FakeHost fake;
  fake.annotations = {{"sidecar.meshlet.io/status", kCniStatus}};
  // Without defaultNamespace such a pod is not looked up: it passes through.
  RunResult result = RunPlugin(add, Config("1.0.0", absl::StrCat(",", api)), fake.Make());
  EXPECT_EQ(result.exit_code, 0) << result.stdout_text;
  EXPECT_THAT(fake.calls, IsEmpty());
  EXPECT_THAT(result.log_line, HasSubstr("outcome=skipped"));

  const std::string config = Config("1.0.0", absl::StrCat(R"(,"defaultNamespace":"mesh",)", api));
  result = RunPlugin(add, config, fake.Make());
  EXPECT_EQ(result.exit_code, 0) << result.stdout_text;
  EXPECT_THAT(fake.calls,
              ElementsAre("fetch https://k:6443 mesh/cart-1", "enter /var/run/netns/p", "apply"));
  EXPECT_THAT(result.log_line, HasSubstr("pod=mesh/cart-1"));
  EXPECT_THAT(result.log_line, HasSubstr("outcome=captured"));

  // A container the API server does not know is no Kubernetes pod: it passes through.
  fake = {};
  fake.fetch_status = absl::NotFoundError("no pod mesh/cart-1");
  result = RunPlugin(add, config, fake.Make());
  EXPECT_EQ(result.exit_code, 0) << result.stdout_text;
  EXPECT_EQ(result.stdout_text, absl::StrCat(kPrevResult, "\n"));
  EXPECT_THAT(result.log_line, HasSubstr("outcome=skipped"));
  EXPECT_THAT(result.log_line, HasSubstr("not a Kubernetes pod"));
  // ...while a pod named with its namespace that the API server does not know is an error.
  result = RunPlugin(Command("ADD"), config, fake.Make());
  EXPECT_EQ(ReadError(result.stdout_text).code, kPodMetadataUnreadable);
  // Other errors of a defaulted pod fail it as any pod's do.
  fake.fetch_status = absl::UnavailableError("connection refused");
  EXPECT_EQ(ReadError(RunPlugin(add, config, fake.Make()).stdout_text).code, kTryAgainLater);
  // The defaulted namespace is excluded like any other.
  fake = {};
  result =
      RunPlugin(add, Config("1.0.0", absl::StrCat(R"(,"defaultNamespace":"kube-system",)", api)),
                fake.Make());
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(fake.calls, IsEmpty());
  // A defaultNamespace that is not a string is a configuration error.
  result = RunPlugin(add, Config("1.0.0", R"(,"defaultNamespace":7)"), fake.Make());
  EXPECT_EQ(ReadError(result.stdout_text).code, kInvalidConfig);
}

TEST(RunTest, FailuresOfAMarkedPodAreErrorsWithTheSpecsCodes) {
  const std::string marked =
      WithAnnotations(R"({"sidecar.meshlet.io/status":"{\"capture\":\"cni\"}"})", "0.4.0");
  FakeHost fake;
  fake.netns_status =
      absl::NotFoundError("cannot open /var/run/netns/p: No such file or directory");
  RunResult result = RunPlugin(Command("ADD"), marked, fake.Make());
  ErrorFields error = ReadError(result.stdout_text);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(error.cni_version, "0.4.0");
  EXPECT_EQ(error.code, kUnknownContainer);
  EXPECT_EQ(error.msg, "cannot enter the pod's network namespace /var/run/netns/p");
  EXPECT_THAT(error.details, HasSubstr("No such file or directory"));

  fake = {};
  fake.execute_status = absl::InternalError("iptables-restore failed (exit status 2)");
  error = ReadError(RunPlugin(Command("ADD"), marked, fake.Make()).stdout_text);
  EXPECT_EQ(error.code, kCaptureFailed);
  EXPECT_EQ(error.details, "iptables-restore failed (exit status 2)");

  fake = {};
  Invocation no_netns = Command("ADD");
  no_netns.netns = "";
  EXPECT_EQ(ReadError(RunPlugin(no_netns, marked, fake.Make()).stdout_text).code,
            kInvalidEnvironment);
  EXPECT_EQ(
      ReadError(RunPlugin({.command = "ADD", .ifname = "eth0"}, marked, fake.Make()).stdout_text)
          .msg,
      "CNI_CONTAINERID is not set");
  EXPECT_EQ(ReadError(RunPlugin({.command = "GET"}, marked, fake.Make()).stdout_text).code,
            kInvalidEnvironment);
  EXPECT_EQ(ReadError(RunPlugin({}, marked, fake.Make()).stdout_text).msg,
            "CNI_COMMAND is not set");
}

TEST(RunTest, AddWithoutPrevResultIsAConfigurationError) {
  FakeHost fake;
  RunResult result = RunPlugin(Command("ADD"), Config("1.0.0", "", false), fake.Make());
  EXPECT_EQ(ReadError(result.stdout_text).code, kInvalidConfig);
  EXPECT_THAT(ReadError(result.stdout_text).msg, HasSubstr("it is a chained plugin"));
}

TEST(RunTest, CheckVerifiesAndPrintsNothing) {
  const std::string marked =
      WithAnnotations(R"({"sidecar.meshlet.io/status":"{\"capture\":\"cni\"}"})");
  FakeHost fake;
  RunResult result = RunPlugin(Command("CHECK"), marked, fake.Make());
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.stdout_text, "");
  EXPECT_THAT(fake.calls, ElementsAre("enter /var/run/netns/p", "check"));
  EXPECT_THAT(result.log_line, HasSubstr("outcome=checked"));
  fake = {};
  fake.execute_status = absl::FailedPreconditionError("IPv4: chain MESHLET_OUTPUT is missing");
  result = RunPlugin(Command("CHECK"), marked, fake.Make());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(ReadError(result.stdout_text).code, kCaptureFailed);
  EXPECT_EQ(ReadError(result.stdout_text).msg, "the pod's capture rules are not as installed");
}

TEST(RunTest, DelRemovesTheRulesAndNeverFailsThePod) {
  FakeHost fake;
  // No annotations needed (the pod may be gone); a missing namespace is nothing to remove.
  RunResult result = RunPlugin(Command("DEL"), Config("1.0.0", "", false), fake.Make());
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.stdout_text, "");
  EXPECT_THAT(fake.calls, ElementsAre("enter /var/run/netns/p", "cleanup"));
  fake = {};
  fake.netns_status = absl::NotFoundError("gone");
  result = RunPlugin(Command("DEL"), Config("1.0.0", "", false), fake.Make());
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(fake.calls, ElementsAre("enter /var/run/netns/p"));
  fake = {};
  fake.execute_status = absl::InternalError("iptables-save failed");
  result = RunPlugin(Command("DEL"), Config("1.0.0", "", false), fake.Make());
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(result.log_line,
              HasSubstr("outcome=failed detail=\"removing failed: iptables-save failed\""));
}

TEST(KubernetesTest, AnnotationsOfAPod) {
  absl::StatusOr<std::map<std::string, std::string>> annotations = PodAnnotationsFromJson(
      R"({"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","annotations":{"a":"1","b":"x"}}})");
  ASSERT_TRUE(annotations.ok()) << annotations.status();
  EXPECT_EQ(annotations->at("b"), "x");
  EXPECT_TRUE(PodAnnotationsFromJson(R"({"kind":"Pod","metadata":{"name":"p"}})")->empty());
  EXPECT_FALSE(PodAnnotationsFromJson(R"({"kind":"Status","code":404})").ok());
  EXPECT_FALSE(PodAnnotationsFromJson(R"({"kind":"Pod","metadata":{"annotations":{"a":1}}})").ok());
}

}  // namespace
}  // namespace meshlet::cni
