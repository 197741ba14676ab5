#include "control-plane/cli/meshctl.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/version.h"
#include "control-plane/cli/fake_api_transport.h"
#include "control-plane/store/store_keys.h"
#include "gtest/gtest.h"

namespace meshlet::controlplane::cli {
namespace {

constexpr char kServices[] = R"({"kind":"ServiceList","items":[
  {"apiVersion":"meshlet.io/v1","kind":"Service",
   "metadata":{"name":"reviews","namespace":"shop","resourceVersion":"7"},
   "spec":{"ports":[{"name":"http","port":9080,"targetPort":8080}],"selector":{"app":"reviews"}},
   "status":{"addresses":["240.240.0.3"]}},
  {"apiVersion":"meshlet.io/v1","kind":"Service",
   "metadata":{"name":"ratings","namespace":"shop","resourceVersion":"9"},
   "spec":{"ports":[{"port":80,"protocol":"GRPC"}],"addresses":["10.96.0.10","fd00::10"]}}]})";

constexpr char kShopServices[] = "/apis/meshlet.io/v1/namespaces/shop/services";

// meshctl run in-process: its output in strings, the control plane a FakeApiTransport, no
// context file (no $HOME, no $MESHCTL_CONFIG) unless a test gives one.
class MeshctlTest : public ::testing::Test {
 protected:
  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    return RunMeshctl(std::move(args), Io{.in = in_, .out = out_, .err = err_}, api_, env_);
  }

  // The path of the only request sent since the last call.
  std::string OnlyPath() {
    EXPECT_EQ(api_.requests().size(), seen_ + 1);
    seen_ = api_.requests().size();
    return api_.requests().empty() ? "" : api_.requests().back().path;
  }

  std::string Header(const ApiRequest& request, const std::string& name) {
    for (const auto& [n, v] : request.headers) {
      if (n == name) return v;
    }
    return "";
  }

  std::stringstream in_, out_, err_;
  FakeApiTransport api_;
  Environment env_;
  size_t seen_ = 0;
};

// Argument parsing

TEST_F(MeshctlTest, AFlagTakesItsValueAfterASpaceOrAnEqualsSign) {
  api_.Answer("GET", kShopServices, 200, kServices);
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"get", "svc", "-n", "shop"},
                                             {"get", "svc", "--namespace", "shop"},
                                             {"get", "svc", "--namespace=shop"},
                                             {"get", "-n=shop", "services"},
                                             {"get", "--namespace", "shop", "Service"}}) {
    EXPECT_EQ(Run(args), 0) << absl::StrJoin(args, " ") << ": " << err_.str();
    EXPECT_EQ(OnlyPath(), kShopServices) << absl::StrJoin(args, " ");
  }
}

TEST_F(MeshctlTest, GlobalFlagsGoBeforeOrAfterTheCommand) {
  api_.Answer("GET", "/apis/meshlet.io/v1/namespaces/default/services", 200, kServices);
  ASSERT_EQ(Run({"--server", "10.0.0.5:15014", "get", "svc", "--token=secret", "--timeout", "3s"}),
            0)
      << err_.str();
  ASSERT_EQ(api_.requests().size(), 1u);
  const ApiRequest& request = api_.requests()[0];
  EXPECT_EQ(request.server, "10.0.0.5:15014");
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.timeout, std::chrono::seconds(3));
  EXPECT_EQ(Header(request, "authorization"), "Bearer secret");
  EXPECT_EQ(Header(request, "accept"), "application/json");
  // Without flags or a context file: the default server, no token.
  ASSERT_EQ(Run({"get", "svc"}), 0) << err_.str();
  EXPECT_EQ(api_.requests()[1].server, "127.0.0.1:15014");
  EXPECT_EQ(Header(api_.requests()[1], "authorization"), "");
}

TEST_F(MeshctlTest, SeveralReplicasAreTriedInTurn) {
  api_.Answer("GET", "/apis/meshlet.io/v1/namespaces/default/services", 200, kServices);
  api_.Unreachable("10.0.0.1:15014");
  ASSERT_EQ(Run({"--server", "10.0.0.1:15014,10.0.0.2:15014", "get", "svc", "--token=t"}), 0)
      << err_.str();
  ASSERT_EQ(api_.requests().size(), 2u);
  EXPECT_EQ(api_.requests()[0].server, "10.0.0.1:15014");
  EXPECT_EQ(api_.requests()[1].server, "10.0.0.2:15014");
  EXPECT_EQ(Header(api_.requests()[1], "authorization"), "Bearer t");
  // None answers: the error names each.
  api_.Unreachable("10.0.0.2:15014");
  EXPECT_NE(Run({"--server", "10.0.0.1:15014,10.0.0.2:15014", "get", "svc"}), 0);
  EXPECT_NE(err_.str().find("10.0.0.1:15014: connect: connection refused; 10.0.0.2:15014: "),
            std::string::npos)
      << err_.str();
}

TEST_F(MeshctlTest, PositionalArgumentsAmongFlags) {
  api_.Answer("DELETE", "/apis/meshlet.io/v1/namespaces/shop/httproutes/a", 200, "{}");
  api_.Answer("DELETE", "/apis/meshlet.io/v1/namespaces/shop/httproutes/b?dryRun=All", 200, "{}");
  EXPECT_EQ(Run({"delete", "hr", "-n", "shop", "a"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "httproute.meshlet.io/a deleted\n");
  EXPECT_EQ(Run({"delete", "--dry-run=server", "hr", "b", "-n", "shop"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "httproute.meshlet.io/b deleted (dry run)\n");

  api_.Answer("GET", "/api/v1/stat?window=5m&service=backend.default", 200, R"({"edges":[]})");
  Run({"stat", "backend.default", "--window", "5m"});
  EXPECT_EQ(api_.requests().back().path, "/api/v1/stat?window=5m&service=backend.default");
  api_.Answer("GET", "/api/v1/stat?window=1m", 200, R"({"items":[]})");
  Run({"stat"});
  EXPECT_EQ(api_.requests().back().path, "/api/v1/stat?window=1m");
  // --history: one service, or an edge; the window and step only when given.
  const char* history = R"({"service":"backend.default","stepSeconds":10,"points":[]})";
  api_.Answer("GET", "/api/v1/stat/history?service=backend.default", 200, history);
  EXPECT_EQ(Run({"stat", "--history", "backend.default"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "backend.default (inbound, from every caller), every 10s: no points in "
            "the range.\n");
  api_.Answer("GET", "/api/v1/stat/history?edge=a.default,b%20c&window=10m&step=1m", 200, history);
  EXPECT_EQ(Run({"stat", "--history", "a.default", "b c", "--window=10m", "--step", "1m"}), 0)
      << err_.str();
  EXPECT_EQ(api_.requests().back().path,
            "/api/v1/stat/history?edge=a.default,b%20c&window=10m&step=1m");
  EXPECT_NE(Run({"stat", "--history"}), 0);
  EXPECT_NE(Run({"stat", "--step", "1m"}), 0);
  // Filters go to the query in the order given, escaped.
  Run({"traces", "--limit=3", "--service", "a b"});
  EXPECT_EQ(api_.requests().back().path, "/api/v1/traces?limit=3&service=a%20b");
}

TEST_F(MeshctlTest, UsageErrorsExit2WithAMessageAndSendNothing) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"get", "svc", "--ttl", "1h"}, "unknown flag --ttl for get (see meshctl help get)"},
           {{"get", "svc", "--dry-run"}, "unknown flag --dry-run for get (see meshctl help get)"},
           {{"apply"}, "apply needs -f FILE|DIR|- (see meshctl help apply)"},
           {{"token", "create", "-n", "shop"},
            "token create needs --service-account SA (see meshctl help token)"},
           {{"get", "svc", "-n"}, "--namespace needs a value (NS)"},
           {{"get", "svc", "-o", "wide"}, "--output=\"wide\": one of table, yaml, json"},
           {{"get", "-A=yes", "svc"}, "--all-namespaces=\"yes\": takes no value"},
           {{"--timeout=soon", "get", "svc"}, "--timeout=\"soon\": not a duration"},
           {{"get", "svc", "--server"}, "--server needs a value (HOST:PORT[,HOST:PORT...])"},
           {{"top", "--interval", "1ms"}, "--interval=\"1ms\": not a duration >= 100ms"},
           {{"get", "gizmos"}, "unknown kind \"gizmos\"; one of "},
           {{"get"}, "needs a KIND: "},
           {{"describe", "svc"}, "describe needs KIND NAME"},
           {{"trace"}, "usage: meshctl trace ID [-o json] (see meshctl help trace)"},
           {{"token", "make", "-n", "a", "--service-account", "b"},
            "usage: meshctl token create | revoke ID|TOKEN [-n NS] [--service-account SA]"},
           {{"nosuch"}, "unknown command \"nosuch\"; known commands: apply, get, describe"},
           {{"help", "nosuch"}, "unknown command \"nosuch\""},
       }) {
    const std::string line = absl::StrJoin(c.args, " ");
    EXPECT_EQ(Run(c.args), 2) << line;
    EXPECT_EQ(err_.str().rfind("meshctl: " + c.message, 0), 0u) << line << ": " << err_.str();
    EXPECT_EQ(out_.str(), "") << line;
  }
  EXPECT_TRUE(api_.requests().empty());
  // Without a command: the list of commands, on stderr.
  EXPECT_EQ(Run({}), 2);
  EXPECT_NE(err_.str().find("\nCommands:\n  apply "), std::string::npos) << err_.str();
}

TEST_F(MeshctlTest, EveryCommandHasOneHelpWhereverItIsAskedFor) {
  // A context file that does not exist: help must not read it.
  env_.meshctl_config = "/nonexistent/meshctl.yaml";
  ASSERT_EQ(Run({"help", "get"}), 0) << err_.str();
  const std::string help = out_.str();
  EXPECT_EQ(err_.str(), "");
  EXPECT_NE(help.find("\nUsage:\n  meshctl get KIND [NAME] [-n NS] [-A] [-o table|yaml|json]\n"),
            std::string::npos)
      << help;
  EXPECT_NE(help.find("\nFlags:\n  -n, --namespace NS             the namespace"),
            std::string::npos)
      << help;
  EXPECT_NE(help.find("\n  -h, --help                     this help\n"), std::string::npos);
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"get", "--help"}, {"get", "-h"}, {"get", "-n", "x", "--help", "--bogus"}}) {
    EXPECT_EQ(Run(args), 0) << absl::StrJoin(args, " ");
    EXPECT_EQ(out_.str(), help) << absl::StrJoin(args, " ");
  }
  EXPECT_EQ(Run({"--help"}), 0);
  EXPECT_NE(out_.str().find("Global flags (before or after the command):\n  --server HOST:PORT"),
            std::string::npos)
      << out_.str();
  EXPECT_TRUE(api_.requests().empty());
}

// Output formats

TEST_F(MeshctlTest, GetPrintsATableYamlOrTheApisJson) {
  api_.Answer("GET", kShopServices, 200, kServices);
  ASSERT_EQ(Run({"get", "svc", "-n", "shop"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "NAME      PORTS            ADDRESSES             SELECTOR      VERSION   AGE\n"
            "reviews   9080:8080/HTTP   240.240.0.3           app=reviews   7         <unknown>\n"
            "ratings   80/GRPC          10.96.0.10,fd00::10   <none>        9         <unknown>\n");
  ASSERT_EQ(Run({"get", "svc", "-n", "shop", "-o", "yaml"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "apiVersion: meshlet.io/v1\n"
            "kind: Service\n"
            "metadata:\n"
            "  name: reviews\n"
            "  namespace: shop\n"
            "  resourceVersion: \"7\"\n"
            "spec:\n"
            "  ports:\n"
            "    - name: http\n"
            "      port: 9080\n"
            "      targetPort: 8080\n"
            "  selector:\n"
            "    app: reviews\n"
            "status:\n"
            "  addresses:\n"
            "    - 240.240.0.3\n"
            "---\n"
            "apiVersion: meshlet.io/v1\n"
            "kind: Service\n"
            "metadata:\n"
            "  name: ratings\n"
            "  namespace: shop\n"
            "  resourceVersion: \"9\"\n"
            "spec:\n"
            "  ports:\n"
            "    - port: 80\n"
            "      protocol: GRPC\n"
            "  addresses:\n"
            "    - 10.96.0.10\n"
            "    - fd00::10\n");
  ASSERT_EQ(Run({"get", "svc", "-n", "shop", "--output=json"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), kServices);

  api_.Answer("GET", "/apis/meshlet.io/v1/namespaces/empty/services", 200, R"({"items":[]})");
  ASSERT_EQ(Run({"get", "svc", "-n", "empty"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(err_.str(), "No services found in namespace empty.\n");
}

TEST_F(MeshctlTest, ProxyStatusTableAndNackErrors) {
  const std::string proxies = R"({"items":[{"id":"frontend-0","service":"frontend",
    "namespace":"default","sidecarVersion":"meshlet-sidecar 0.2.0","revision":"canary","types":{
      "type.googleapis.com/meshlet.xds.v1.Listener":{"sent":"0123456789ab","acked":"0123456789ab"},
      "type.googleapis.com/meshlet.xds.v1.Cluster":{"sent":"bbbbbbbbbb","acked":"aaaaaaaa"},
      "type.googleapis.com/meshlet.xds.v1.RouteConfiguration":{"sent":"cc","nack":"route r: bad"}
    }}]})";
  api_.Answer("GET", "/api/v1/proxies", 200, proxies);
  ASSERT_EQ(Run({"proxy-status"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "PROXY        SERVICE    NAMESPACE   CONNECTED   LDS               RDS      "
            "CDS              EDS   VERSION   REVISION\n"
            "frontend-0   frontend   default     <unknown>   SYNCED 01234567   NACKED   "
            "STALE bbbbbbbb   -     0.2.0     canary\n"
            "\nNACK errors:\n"
            "  frontend-0 RDS: route r: bad\n");
  ASSERT_EQ(Run({"proxy-status", "-o", "json"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), proxies);
  api_.Answer("GET", "/api/v1/proxies", 200, R"({"items":[]})");
  ASSERT_EQ(Run({"proxy-status"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "No sidecars connected.\n");
}

TEST_F(MeshctlTest, ApplyFromStdinSendsEachDocumentAndSaysWhatHappened) {
  in_.str(
      "apiVersion: meshlet.io/v1\nkind: Service\nmetadata:\n  name: reviews\n"
      "spec:\n  ports: [{port: 9080}]\n");
  api_.Answer("PUT", "/apis/meshlet.io/v1/namespaces/shop/services/reviews?dryRun=All", 201, "{}",
              {{"x-meshlet-result", "dry_run"}});
  ASSERT_EQ(Run({"apply", "-f", "-", "--dry-run", "-n", "shop"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "service.meshlet.io/reviews created (dry run)\n");
  ASSERT_EQ(api_.requests().size(), 1u);
  const ApiRequest& put = api_.requests()[0];
  EXPECT_NE(put.body.find(R"("name":"reviews")"), std::string::npos) << put.body;
  EXPECT_NE(put.body.find(R"("namespace":"shop")"), std::string::npos) << put.body;
  EXPECT_EQ(Header(put, "content-type"), "application/json");

  // An invalid document: every problem printed, nothing sent.
  in_.clear();
  in_.str("apiVersion: meshlet.io/v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  portz: []\n");
  EXPECT_EQ(Run({"apply", "-f", "-"}), 1);
  EXPECT_EQ(err_.str(),
            "error: <stdin>:6:3: spec.portz: unknown field; known fields of ServiceSpec: ports, "
            "selector, addresses, serviceAccounts (document 1)\nnothing applied\n");
  EXPECT_EQ(api_.requests().size(), 1u);
}

// kubectl-shaped Gateway API documents, mixed with meshlet's kinds in one file.
constexpr char kMixedKinds[] = R"(apiVersion: meshlet.io/v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: reviews
    port: 9080
  rules:
  - matches:
    - path: {type: PathPrefix, value: /v2}
    backendRefs:
    - name: reviews-v2
      port: 9080
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo}
spec:
  parentRefs: [{group: "", kind: Service, name: echo}]
  rules: [{matches: [{method: {service: echo.Echo}}], backendRefs: [{name: echo, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-web}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: web}]
  to: [{group: "", kind: Service}]
)";

TEST_F(MeshctlTest, ApplySendsGatewayApiDocumentsToTheirGroupsBesideMeshletsKinds) {
  in_.str(kMixedKinds);
  for (const char* path :
       {"/apis/meshlet.io/v1/namespaces/shop/services/reviews",
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/reviews",
        "/apis/gateway.networking.k8s.io/v1/namespaces/shop/grpcroutes/echo",
        "/apis/gateway.networking.k8s.io/v1beta1/namespaces/shop/referencegrants/from-web"}) {
    api_.Answer("PUT", path, 201, "{}", {{"x-meshlet-result", "created"}});
  }
  ASSERT_EQ(Run({"apply", "-f", "-", "-n", "shop"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "service.meshlet.io/reviews created\n"
            "httproute.gateway.networking.k8s.io/reviews created\n"
            "grpcroute.gateway.networking.k8s.io/echo created\n"
            "referencegrant.gateway.networking.k8s.io/from-web created\n");
  ASSERT_EQ(api_.requests().size(), 4u);
  const std::string& route = api_.requests()[1].body;
  EXPECT_NE(route.find(R"("apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute")"),
            std::string::npos)
      << route;
  EXPECT_NE(route.find(R"("parentRefs":[{"kind":"Service","name":"reviews","port":9080}])"),
            std::string::npos)
      << route;
}

TEST_F(MeshctlTest, OneInvalidGatewayDocumentAppliesNothing) {
  // The third document breaks two rules: a redirect with backendRefs, a status code not allowed.
  std::string text = kMixedKinds;
  const std::string echo = "backendRefs: [{name: echo, port: 9000}]}]";
  text.replace(text.find(echo), echo.size(),
               "filters: [{type: RequestHeaderModifier}], backendRefs: [{name: echo, port: "
               "9000, weight: -1}]}]");
  in_.str(text);
  EXPECT_EQ(Run({"apply", "-f", "-", "-n", "shop"}), 1);
  EXPECT_EQ(err_.str(),
            "error: <stdin> (document 3): GRPCRoute \"echo\" is invalid:\n"
            "  spec.rules[0].filters[0].requestHeaderModifier: must be specified when type is "
            "RequestHeaderModifier\n"
            "  spec.rules[0].backendRefs[0].weight: must be between 0 and 1000000\n"
            "nothing applied\n");
  EXPECT_TRUE(api_.requests().empty());
  // An apiVersion the kind does not take, with what it takes.
  in_.clear();
  in_.str(
      "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: GRPCRoute\nmetadata: {name: "
      "a}\n");
  EXPECT_EQ(Run({"apply", "-f", "-"}), 1);
  EXPECT_EQ(err_.str(),
            "error: <stdin>:1:13: apiVersion: \"gateway.networking.k8s.io/v1alpha2\" is not an "
            "apiVersion of GRPCRoute; use gateway.networking.k8s.io/v1 (document 1)\n"
            "nothing applied\n");
  EXPECT_TRUE(api_.requests().empty());
}

TEST_F(MeshctlTest, GetAndDeleteNameTheGatewayKindsAsKubectlDoes) {
  const std::string routes =
      R"({"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRouteList","items":[
    {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",
     "metadata":{"name":"reviews","namespace":"shop","resourceVersion":"4"},
     "spec":{"parentRefs":[{"kind":"Service","name":"reviews","port":9080}],
             "rules":[{"backendRefs":[{"name":"reviews-v2","port":9080}],
                       "timeouts":{"backendRequest":"2s"}}]}}]})";
  api_.Answer("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes", 200, routes);
  for (const char* name :
       {"httproutes.gateway.networking.k8s.io", "httproute.gateway.networking.k8s.io"}) {
    ASSERT_EQ(Run({"get", name, "-n", "shop"}), 0) << err_.str();
    EXPECT_EQ(out_.str(),
              "NAME      PARENTS                HOSTNAMES   RULES   VERSION   AGE\n"
              "reviews   Service/reviews:9080   *           1       4         <unknown>\n")
        << name;
  }
  ASSERT_EQ(Run({"get", "httproutes.gateway.networking.k8s.io", "-n", "shop", "-o", "yaml"}), 0);
  EXPECT_EQ(out_.str(),
            "apiVersion: gateway.networking.k8s.io/v1\n"
            "kind: HTTPRoute\n"
            "metadata:\n"
            "  name: reviews\n"
            "  namespace: shop\n"
            "  resourceVersion: \"4\"\n"
            "spec:\n"
            "  parentRefs:\n"
            "    - kind: Service\n"
            "      name: reviews\n"
            "      port: 9080\n"
            "  rules:\n"
            "    - backendRefs:\n"
            "        - name: reviews-v2\n"
            "          port: 9080\n"
            "      timeouts:\n"
            "        backendRequest: 2s\n");
  // "httproutes" stays meshlet's.
  api_.Answer("GET", "/apis/meshlet.io/v1/namespaces/shop/httproutes", 200, R"({"items":[]})");
  ASSERT_EQ(Run({"get", "httproutes", "-n", "shop"}), 0) << err_.str();
  EXPECT_EQ(api_.requests().back().path, "/apis/meshlet.io/v1/namespaces/shop/httproutes");

  api_.Answer("GET", "/apis/gateway.networking.k8s.io/v1beta1/referencegrants", 200,
              R"({"items":[{"metadata":{"name":"g","namespace":"shop"},"spec":{
                  "from":[{"group":"gateway.networking.k8s.io","kind":"HTTPRoute","namespace":"web"}],
                  "to":[{"group":"","kind":"Service"}]}}]})");
  ASSERT_EQ(Run({"get", "referencegrants", "-A"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "NAMESPACE   NAME   FROM            TO        VERSION   AGE\n"
            "shop        g      HTTPRoute/web   Service             <unknown>\n");

  api_.Answer("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways", 200,
              R"({"items":[{"metadata":{"name":"edge","namespace":"shop"},
                  "spec":{"gatewayClassName":"meshlet"},
                  "status":{"conditions":[{"type":"Accepted","status":"True"},
                                          {"type":"Programmed","status":"False"}]}}]})");
  ASSERT_EQ(Run({"get", "gtw", "-n", "shop"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "NAME   CLASS     ADDRESS   PROGRAMMED   VERSION   AGE\n"
            "edge   meshlet             False                  <unknown>\n");
  api_.Answer("GET", "/apis/gateway.networking.k8s.io/v1/gatewayclasses", 200,
              R"({"items":[{"metadata":{"name":"meshlet"},
                  "spec":{"controllerName":"meshlet.io/gateway-controller"},
                  "status":{"conditions":[{"type":"Accepted","status":"True"}]}}]})");
  ASSERT_EQ(Run({"get", "gatewayclasses"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "NAME      CONTROLLER                      ACCEPTED   VERSION   AGE\n"
            "meshlet   meshlet.io/gateway-controller   True                 <unknown>\n");

  api_.Answer("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/shop/backendtlspolicies", 200,
              R"({"items":[{"metadata":{"name":"pay-tls","namespace":"shop"},
                  "spec":{"targetRefs":[{"group":"","kind":"Service","name":"payments",
                                         "sectionName":"https"}],
                          "validation":{"hostname":"pay.example.com"}},
                  "status":{"ancestors":[
                    {"conditions":[{"type":"Accepted","status":"True"}]},
                    {"conditions":[{"type":"Accepted","status":"False",
                                    "reason":"NoValidCACertificate"}]}]}},
                 {"metadata":{"name":"idle","namespace":"shop"},
                  "spec":{"targetRefs":[{"group":"","kind":"Service","name":"idle"}],
                          "validation":{"hostname":"idle.example.com"}}}]})");
  ASSERT_EQ(Run({"get", "btlspolicy", "-n", "shop"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "NAME      TARGETS                  HOSTNAME           ACCEPTED                       "
            "VERSION   AGE\n"
            "pay-tls   Service/payments:https   pay.example.com    False (NoValidCACertificate)    "
            "         "
            "<unknown>\n"
            "idle      Service/idle             idle.example.com   -                               "
            "         "
            "<unknown>\n");

  api_.Answer("DELETE", "/apis/gateway.networking.k8s.io/v1/namespaces/shop/grpcroutes/echo", 200,
              "{}");
  ASSERT_EQ(Run({"delete", "grpcroutes", "echo", "-n", "shop"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "grpcroute.gateway.networking.k8s.io/echo deleted\n");
}

// Error messages

TEST_F(MeshctlTest, AnUnreachableControlPlaneIsExit3) {
  api_.FailWith(absl::UnavailableError("cannot connect to 127.0.0.1:15014: Connection refused"));
  EXPECT_EQ(Run({"get", "svc"}), 3);
  EXPECT_EQ(err_.str(),
            "meshctl: cannot reach the control plane at 127.0.0.1:15014: cannot connect to "
            "127.0.0.1:15014: Connection refused (is it running? set --server or the context "
            "file)\n");
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(Run({"--server=cp:1", "check"}), 3);
  EXPECT_EQ(err_.str(),
            "meshctl: control plane at cp:1: not reachable (cannot connect to 127.0.0.1:15014: "
            "Connection refused)\n");
}

// docs/meshctl.md#exit-codes: no CA to verify an HTTPS server with is a usage error (2) for every
// command that asks the control plane, those that send no token (check, version) included.
TEST_F(MeshctlTest, NoCaIsExit2ForEveryCommandThatAsksTheControlPlane) {
  const std::string no_ca =
      "no CA to verify the control plane at 127.0.0.1:15014 with: pin its CA with meshctl "
      "context set --ca-fingerprint SHA256";
  api_.FailWith(absl::FailedPreconditionError(no_ca));
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"get", "svc"},
                                             {"check"},
                                             {"version"},
                                             {"trust-bundle"},
                                             {"proxy-status"},
                                             {"traces"},
                                             {"stat"},
                                             {"operator-token", "list"}}) {
    EXPECT_EQ(Run(args), 2) << absl::StrJoin(args, " ") << ": " << err_.str();
    EXPECT_EQ(err_.str(), absl::StrCat("meshctl: ", no_ca, "\n")) << absl::StrJoin(args, " ");
  }
}

TEST_F(MeshctlTest, CheckListsGatewayRoutesWithTheirConditionsPerParent) {
  api_.Answer("GET", "/healthz", 200, "ok\n");
  api_.Answer("GET", "/version", 200, R"({"server":"1.2.3","apiVersion":"v1"})");
  api_.Answer("GET", "/apis/meshlet.io/v1", 200, R"({"kind":"APIResourceList"})");
  api_.Answer("GET", "/api/v1/whoami", 200,
              R"({"name":"ops","credential":"token","role":"admin"})");
  api_.Answer("GET", "/api/v1/proxies", 200, R"({"items":[]})");
  api_.Answer("GET", "/apis/gateway.networking.k8s.io/v1/httproutes", 200, R"({"items":[
    {"metadata":{"name":"split","namespace":"shop"},
     "status":{"parents":[
       {"parentRef":{"kind":"Service","name":"echo","port":80},
        "conditions":[{"type":"Accepted","status":"True","reason":"Accepted"},
                      {"type":"ResolvedRefs","status":"False","reason":"BackendNotFound",
                       "message":"spec.rules[0].backendRefs[0]: backend Service shop/v3 does not exist"}]},
       {"parentRef":{"kind":"Service","name":"api","namespace":"other"},
        "conditions":[{"type":"Accepted","status":"False","reason":"NoMatchingParent",
                       "message":"Service other/api does not exist"},
                      {"type":"ResolvedRefs","status":"True","reason":"ResolvedRefs"}]}]}},
    {"metadata":{"name":"ingress","namespace":"shop"}}]})");
  api_.Answer("GET", "/apis/gateway.networking.k8s.io/v1/grpcroutes", 200, R"({"items":[
    {"metadata":{"name":"g","namespace":"shop"},
     "status":{"parents":[{"parentRef":{"kind":"Service","name":"echo"},
        "conditions":[{"type":"Accepted","status":"True"},{"type":"ResolvedRefs","status":"True"}]}]}}]})");
  EXPECT_EQ(Run({"check"}), 0) << err_.str();
  const std::string out = out_.str();
  const std::string routes = out.substr(out.find("gateway routes"));
  EXPECT_EQ(routes,
            "gateway routes 3\n"
            "  HTTPRoute shop/split -> Service shop/echo:80  Accepted True  ResolvedRefs False "
            "(BackendNotFound: spec.rules[0].backendRefs[0]: backend Service shop/v3 does not "
            "exist)\n"
            "  HTTPRoute shop/split -> Service other/api  Accepted False (NoMatchingParent: "
            "Service other/api does not exist)  ResolvedRefs True\n"
            "  HTTPRoute shop/ingress: no Service parent\n"
            "  GRPCRoute shop/g -> Service shop/echo  Accepted True  ResolvedRefs True\n"
            "OK\n");
}

TEST_F(MeshctlTest, CheckListsSidecarsWhoseCaptureIsNotInEffect) {
  api_.Answer("GET", "/healthz", 200, "ok\n");
  api_.Answer("GET", "/version", 200, R"({"server":"1.2.3","apiVersion":"v1"})");
  api_.Answer("GET", "/apis/meshlet.io/v1", 200, R"({"kind":"APIResourceList"})");
  api_.Answer("GET", "/api/v1/whoami", 200,
              R"({"name":"ops","credential":"token","role":"admin"})");
  api_.Answer("GET", "/api/v1/proxies", 200, R"json({"items":[
    {"id":"cart-1","namespace":"shop","notReady":"traffic capture not in effect: no redirected connection seen yet (10.0.0.7:15008 is dialled every second; are the `sidecar init` rules there?)"},
    {"id":"cart-2","namespace":"shop","notReady":"no complete configuration from the control plane yet"},
    {"id":"web-1","namespace":"shop"}]})json");
  api_.Answer("GET", "/apis/gateway.networking.k8s.io/v1/httproutes", 200, R"({"items":[]})");
  api_.Answer("GET", "/apis/gateway.networking.k8s.io/v1/grpcroutes", 200, R"({"items":[]})");
  EXPECT_EQ(Run({"check"}), 0) << err_.str();
  const std::string out = out_.str();
  EXPECT_NE(out.find("sidecars       3 connected\n"
                     "uncaptured     1 not ready, traffic capture not in effect (CNI mode: pods "
                     "set up while meshlet-cni was not in the node's chain; see the node agent's "
                     "meshlet_cni_pods_repaired_total and log, or the pods labelled "
                     "cni.meshlet.io/uncaptured)\n"
                     "  shop/cart-1\n"
                     "gateway routes 0\n"),
            std::string::npos)
      << out;
}

// The CA's certificates: a WARNING 30 days before one expires, and for refused material.
TEST_F(MeshctlTest, CheckWarnsOfCaCertificatesCloseToExpiry) {
  auto in_days = [](int days) {
    return absl::FormatTime(absl::RFC3339_sec,
                            absl::Now() + absl::Hours(24 * days) + absl::Minutes(30),
                            absl::UTCTimeZone());
  };
  api_.Answer("GET", "/healthz", 200, "ok\n");
  api_.Answer("GET", "/apis/meshlet.io/v1", 200, R"({"kind":"APIResourceList"})");
  api_.Answer("GET", "/api/v1/proxies", 200, R"({"items":[]})");
  api_.Answer(
      "GET", "/api/v1/ca", 200,
      absl::StrCat(R"({"subject":"CN=issuing","source":"Secret meshlet-system/meshlet-ca",)",
                   R"("not_after":")", in_days(12), R"(","roots":[)",
                   R"({"subject":"CN=old root","not_after":")", in_days(29), R"("},)",
                   R"({"subject":"CN=new root","not_after":")", in_days(31), R"("}],)",
                   R"("last_reload":{"result":"invalid","message":"CA key: mismatch"}})"));
  EXPECT_EQ(Run({"check"}), 0) << err_.str();
  const std::string out = out_.str();
  EXPECT_NE(out.find(absl::StrCat(
                "ca             CN=issuing, expires ", in_days(12),
                " (Secret meshlet-system/meshlet-ca)\n"
                "  WARNING: signing certificate CN=issuing expires in 12 day(s), ",
                in_days(12), "\n  WARNING: root CN=old root expires in 29 day(s), ", in_days(29),
                "\n  WARNING: the last new CA material was refused (invalid): "
                "CA key: mismatch\n")),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("CN=new root"), std::string::npos) << out;
}

// ca rotate: the request names the new material and the limits given; a refusal is printed
// with exit 1; --status shows who holds the rotation back; usage errors exit 2.
TEST_F(MeshctlTest, CaRotateRequestsFollowsAndShowsTheRotation) {
  api_.Answer("POST", "/api/v1/ca/rotation", 202,
              R"({"kind":"intermediate","step":"requested","started":"t1"})");
  EXPECT_EQ(Run({"ca", "rotate", "--intermediate", "--secret", "meshlet-system/next",
                 "--renewals-per-second", "50", "--renewal-jitter", "1m"}),
            0)
      << err_.str();
  ASSERT_FALSE(api_.requests().empty());
  EXPECT_EQ(api_.requests().back().body,
            R"({"kind":"intermediate","source":"secret:meshlet-system/next",)"
            R"("renewalsPerSecond":50,"renewalJitter":"1m"})");
  EXPECT_NE(out_.str().find("intermediate rotation requested with secret:meshlet-system/next"),
            std::string::npos)
      << out_.str();

  api_.Answer("POST", "/api/v1/ca/rotation", 409,
              R"({"kind":"Status","message":"a root rotation is in step distributing"})");
  EXPECT_EQ(Run({"ca", "rotate", "--cert", "/ca/chain.pem", "--key", "/ca/key.pem"}), 1);
  EXPECT_NE(err_.str().find("a root rotation is in step distributing"), std::string::npos)
      << err_.str();
  EXPECT_EQ(api_.requests().back().body,
            R"({"kind":"root","source":"files:/ca/chain.pem,/ca/key.pem"})");

  api_.Answer("GET", "/api/v1/ca/rotation", 200,
              R"({"kind":"root","step":"distributing","since":"t2","started":"t1",)"
              R"("source":"secret:ns/next","message":"step 2: 1 of 2 sidecars",)"
              R"("waiting":["db-0"],"renewals_requested":0,"renewal_round":0,)"
              R"("sidecars":[{"node":"db-0","bundle_roots":["sha256:aaaa"],"leaf_root":)"
              R"("sha256:aaaa","leaf_issuer":"sha256:bbbb"}]})");
  EXPECT_EQ(Run({"ca", "rotate", "--status"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("WAITING FOR"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("db-0"), std::string::npos) << out_.str();

  // --wait follows the rotation through a control plane restarting (its first two polls find
  // nothing listening), saying so once, until it completes.
  api_.Answer("POST", "/api/v1/ca/rotation", 202,
              R"({"kind":"root","step":"requested","started":"t3"})");
  api_.Answer("GET", "/api/v1/ca/rotation", 200,
              R"({"kind":"root","step":"complete","started":"t3"})");
  api_.UnreachableFor("GET", 2);
  out_.str("");
  err_.str("");
  EXPECT_EQ(
      Run({"ca", "rotate", "--cert", "/ca/chain.pem", "--key", "/ca/key.pem", "--wait", "10s"}), 0)
      << err_.str();
  EXPECT_EQ(err_.str(), "");
  const std::string followed = out_.str();
  EXPECT_NE(followed.find("waiting for the control plane"), std::string::npos) << followed;
  EXPECT_EQ(followed.find("waiting for the control plane"),
            followed.rfind("waiting for the control plane"))
      << followed;
  EXPECT_NE(followed.find("(connect: connection refused)"), std::string::npos) << followed;
  EXPECT_NE(followed.find("CA rotation complete"), std::string::npos) << followed;
  // Still unreachable when --wait passes: exit 3, the rotation going on.
  api_.UnreachableFor("GET", 1000);
  EXPECT_EQ(
      Run({"ca", "rotate", "--cert", "/ca/chain.pem", "--key", "/ca/key.pem", "--wait", "1s"}), 3);
  EXPECT_NE(err_.str().find("cannot be reached (connect: connection refused) after 1s"),
            std::string::npos)
      << err_.str();
  api_.UnreachableFor("GET", 0);

  EXPECT_EQ(Run({"ca", "rotate"}), 2);  // no new material named
  EXPECT_EQ(Run({"ca", "rotate", "--secret", "a/b", "--cert", "/x"}), 2);
  EXPECT_EQ(Run({"ca", "status", "--abort"}), 2);
}

// Workload certificates: a WARNING for one past its renewal time (60 % of its lifetime: renewed
// at half, give or take a tenth) and for an expired one; none for one renewed in time.
TEST_F(MeshctlTest, CheckWarnsOfWorkloadCertificatesNotRenewed) {
  auto at = [](absl::Duration from_now) {
    return absl::FormatTime(absl::RFC3339_sec, absl::Now() + from_now, absl::UTCTimeZone());
  };
  api_.Answer("GET", "/healthz", 200, "ok\n");
  api_.Answer("GET", "/apis/meshlet.io/v1", 200, R"({"kind":"APIResourceList"})");
  api_.Answer("GET", "/api/v1/proxies", 200, R"({"items":[]})");
  auto item = [&](absl::string_view workload, absl::Duration since, absl::Duration until) {
    return absl::StrCat(R"({"node":")", workload, R"(","namespace":"shop","service":"s",)",
                        R"("workload":")", workload, R"(","notBefore":")", at(-since),
                        R"(","notAfter":")", at(until), R"("})");
  };
  // 24 h certificates: 10 h used (renewal not yet due), 16 h used, and one expired.
  api_.Answer("GET", "/api/v1/certificates", 200,
              absl::StrCat(R"({"items":[)", item("fresh", absl::Hours(10), absl::Hours(14)), ",",
                           item("stuck", absl::Hours(16), absl::Hours(8)), ",",
                           item("gone", absl::Hours(25), -absl::Hours(1)), "]}"));
  EXPECT_EQ(Run({"check"}), 0) << err_.str();
  const std::string out = out_.str();
  EXPECT_NE(out.find("certificates   3 workload certificates reported, 2 not renewed in time\n"
                     "  WARNING: shop/stuck's certificate is past its renewal time (66 % of its "
                     "lifetime used, expires "),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("  WARNING: shop/gone's certificate has expired ("), std::string::npos) << out;
  EXPECT_EQ(out.find("shop/fresh"), std::string::npos) << out;
}

// RequestAuthentication key sets: a WARNING for one never read (its issuer's tokens refused) and
// for one whose reads fail now (the last good keys stay); none for one read well.
TEST_F(MeshctlTest, CheckWarnsOfJwksNotRead) {
  api_.Answer("GET", "/healthz", 200, "ok\n");
  api_.Answer("GET", "/apis/meshlet.io/v1", 200, R"({"kind":"APIResourceList"})");
  api_.Answer("GET", "/api/v1/proxies", 200, R"({"items":[]})");
  api_.Answer(
      "GET", "/api/v1/jwks", 200,
      R"({"kind":"JwksStatus","items":[)"
      R"({"uri":"https://a.example/keys","hasKeys":true,"lastSuccess":"2026-11-29T04:00:00Z",)"
      R"("lastRead":"2026-11-29T04:00:00Z","failuresInRow":0,"lastError":""},)"
      R"({"uri":"https://b.example/keys","hasKeys":false,"lastSuccess":null,)"
      R"("lastRead":"2026-11-29T04:00:00Z","failuresInRow":3,"lastError":"GET answered 404"},)"
      R"({"uri":"https://c.example/keys","hasKeys":true,"lastSuccess":"2026-11-29T03:00:00Z",)"
      R"("lastRead":"2026-11-29T04:00:00Z","failuresInRow":2,"lastError":"GET answered 503"}]})");
  EXPECT_EQ(Run({"check"}), 0) << err_.str();
  const std::string out = out_.str();
  EXPECT_NE(out.find("jwks           3 key set(s) named by RequestAuthentications, 2 failing\n"
                     "  WARNING: https://b.example/keys: no keys yet, its issuer's tokens are "
                     "refused (GET answered 404)\n"
                     "  WARNING: https://c.example/keys: the last 2 read(s) failed, the keys read "
                     "at 2026-11-29T03:00:00Z stay (GET answered 503)\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("WARNING: https://a.example"), std::string::npos) << out;
}

TEST_F(MeshctlTest, ARefusedTokenIsExit3AndSaysWhetherThereWasOne) {
  api_.Answer("GET", "/apis/meshlet.io/v1/namespaces/default/services", 401,
              R"({"kind":"Status","code":401,"message":"missing or invalid bearer token"})");
  EXPECT_EQ(Run({"get", "svc"}), 3);
  EXPECT_EQ(err_.str(),
            "meshctl: the control plane at 127.0.0.1:15014 refused the token: missing or invalid "
            "bearer token (no token: pass --token/--token-file or set token in the context "
            "file)\n");
  EXPECT_EQ(Run({"get", "svc", "--token", "old"}), 3);
  EXPECT_EQ(err_.str(),
            "meshctl: the control plane at 127.0.0.1:15014 refused the token: missing or invalid "
            "bearer token\n");
}

TEST_F(MeshctlTest, ApiErrorBodiesAreShownAsTheirMessage) {
  api_.Answer("GET", "/apis/meshlet.io/v1/namespaces/default/services/nope", 404,
              R"({"kind":"Status","code":404,"message":"services \"nope\" not found"})");
  EXPECT_EQ(Run({"get", "svc", "nope"}), 1);
  EXPECT_EQ(err_.str(), "meshctl: services \"nope\" not found\n");
  // A body that is not a Status: the body itself.
  api_.Answer("GET", "/api/v1/traces/abc", 503, "collector off\n");
  EXPECT_EQ(Run({"trace", "abc"}), 1);
  EXPECT_EQ(err_.str(), "meshctl: collector off\n");

  // A refused apply names the document, the reason and each field.
  in_.clear();
  in_.str(
      "apiVersion: meshlet.io/v1\nkind: Service\nmetadata:\n  name: r\n"
      "spec:\n  ports: [{port: 80}]\n");
  api_.Answer("PUT", "/apis/meshlet.io/v1/namespaces/default/services/r", 409,
              R"({"message":"resourceVersion 3 is stale","details":{"causes":[)"
              R"({"field":"metadata.resourceVersion","message":"now 4"}]}})");
  EXPECT_EQ(Run({"apply", "-f", "-"}), 1);
  EXPECT_EQ(err_.str(),
            "error: <stdin> (document 1): Service \"r\": conflict: resourceVersion 3 is stale\n"
            "  metadata.resourceVersion: now 4\n");

  // Token: the cause names the flag, not the API field.
  api_.Answer("POST", "/api/v1/tokens", 422,
              R"({"message":"invalid","details":{"causes":[)"
              R"({"field":"ttl","message":"must be a duration such as 10m"}]}})");
  EXPECT_EQ(Run({"token", "create", "-n", "a", "--service-account", "b", "--ttl", "x"}), 1);
  EXPECT_EQ(err_.str(), "meshctl: --ttl: must be a duration such as 10m\n");
}

TEST_F(MeshctlTest, WarningsFromTheApiGoToStderr) {
  api_.Answer("GET", "/apis/meshlet.io/v1/namespaces/default/services", 200, R"({"items":[]})",
              {{"warning", "299 - \"HTTPRoute shop/r names no Service\""}});
  EXPECT_EQ(Run({"get", "svc"}), 0);
  EXPECT_EQ(err_.str(),
            "Warning: HTTPRoute shop/r names no Service\n"
            "No services found in namespace default.\n");
}

TEST_F(MeshctlTest, TokenCreateWritesTheTokenOrTheSecretInjectedPodsMount) {
  api_.Answer("POST", "/api/v1/tokens", 201,
              R"({"id":"t1","token":"mjt.abc:def","expiresAt":"2026-12-01T00:00:00Z"})");
  EXPECT_EQ(Run({"token", "create", "-n", "shop", "--service-account", "reviews"}), 0);
  EXPECT_EQ(out_.str(), "mjt.abc:def\n");
  EXPECT_EQ(api_.requests().back().body,
            R"({"namespace":"shop","serviceAccount":"reviews","ttl":"1h","singleUse":false})");
  out_.str("");
  EXPECT_EQ(Run({"token", "create", "-n", "shop", "--service-account", "reviews", "-o", "secret"}),
            0);
  EXPECT_EQ(out_.str(),
            "apiVersion: v1\n"
            "kind: Secret\n"
            "metadata:\n"
            "  name: meshlet-join-token-reviews\n"
            "  namespace: shop\n"
            "  labels:\n"
            "    app.kubernetes.io/part-of: meshlet\n"
            "type: Opaque\n"
            "stringData:\n"
            "  token: \"mjt.abc:def\"\n");
  // For podman: a ConfigMap of the same name and key, which --podman injection mounts.
  out_.str("");
  EXPECT_EQ(
      Run({"token", "create", "-n", "shop", "--service-account", "reviews", "-o", "configmap"}), 0);
  EXPECT_EQ(out_.str(),
            "apiVersion: v1\n"
            "kind: ConfigMap\n"
            "metadata:\n"
            "  name: meshlet-join-token-reviews\n"
            "  namespace: shop\n"
            "  labels:\n"
            "    app.kubernetes.io/part-of: meshlet\n"
            "data:\n"
            "  token: \"mjt.abc:def\"\n");
}

TEST_F(MeshctlTest, TokenRevokeTakesTheIdOrTheTokenAndSaysWhatHappened) {
  api_.Answer("DELETE", "/api/v1/tokens/3f9c2a7d41e0b856", 204, "");
  EXPECT_EQ(Run({"token", "revoke", "mjt1.3f9c2a7d41e0b856.secretpart"}), 0);
  EXPECT_EQ(api_.requests().back().path, "/api/v1/tokens/3f9c2a7d41e0b856");
  EXPECT_EQ(out_.str(),
            "join token 3f9c2a7d41e0b856 revoked: the certificates it bought are not renewed\n");
  // Used or expired: nothing left to delete, but the revocation is recorded: not a failure.
  out_.str("");
  api_.Answer("DELETE", "/api/v1/tokens/3f9c2a7d41e0b856", 404,
              R"json({"message":"no join token 3f9c2a7d41e0b856 (its revocation is recorded: )json"
              R"json(certificates it bought, if any, will not renew)"})json");
  EXPECT_EQ(Run({"token", "revoke", "3f9c2a7d41e0b856"}), 0);
  EXPECT_NE(out_.str().find("revoked (no token left to delete"), std::string::npos) << out_.str();
  api_.Answer("DELETE", "/api/v1/tokens/nope", 400,
              R"json({"message":"\"nope\" is not a join token id (16 lowercase hex digits)"})json");
  EXPECT_EQ(Run({"token", "revoke", "nope"}), 2);
  EXPECT_EQ(err_.str(), "meshctl: \"nope\" is not a join token id (16 lowercase hex digits)\n");
}

TEST_F(MeshctlTest, DashboardEscapesTheTokenInTheUrl) {
  EXPECT_EQ(Run({"dashboard", "--server", "cp:15014", "--token", "a b/c"}), 0);
  EXPECT_EQ(out_.str(), "https://cp:15014/dashboard/#token=a%20b%2fc\n");
  // A control plane started with --api-plaintext.
  EXPECT_EQ(Run({"dashboard", "--server", "http://cp:15014", "--token", "t"}), 0);
  EXPECT_EQ(out_.str(), "http://cp:15014/dashboard/#token=t\n");
  EXPECT_TRUE(api_.requests().empty());
}

TEST_F(MeshctlTest, VersionClientReadsNoContextFile) {
  env_.meshctl_config = "/nonexistent/meshctl.yaml";
  EXPECT_EQ(Run({"version", "--client"}), 0);
  EXPECT_EQ(out_.str(), absl::StrCat("meshctl ", kMeshletVersion, "\n"));
  EXPECT_EQ(Run({"version"}), 2);
  EXPECT_EQ(err_.str(), "meshctl: cannot read context file /nonexistent/meshctl.yaml\n");
  EXPECT_EQ(Run({"get", "svc"}), 2);
  EXPECT_TRUE(api_.requests().empty());
}

TEST_F(MeshctlTest, VersionNamesTheControlPlaneAndEachSidecarRelease) {
  api_.Answer("GET", "/version", 200, R"({"server":"0.3.0","apiVersion":"meshlet.io/v1"})");
  api_.Answer("GET", "/api/v1/proxies", 200, R"({"items":[
    {"id":"reviews-1","sidecarVersion":"meshlet-sidecar 0.2.0","lacks":["overload"]},
    {"id":"a-1","sidecarVersion":"meshlet-sidecar 0.3.0"},
    {"id":"a-2","sidecarVersion":"meshlet-sidecar 0.3.0"},
    {"id":"a-3","sidecarVersion":"meshlet-sidecar 0.3.0"},
    {"id":"a-4","sidecarVersion":"meshlet-sidecar 0.3.0"},
    {"id":"a-6","sidecarVersion":"meshlet-sidecar 0.3.0"},
    {"id":"a-5","sidecarVersion":"meshlet-sidecar 0.3.0"},
    {"id":"old","sidecarVersion":""}]})");
  ASSERT_EQ(Run({"--server=cp:15014", "version"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), absl::StrCat("meshctl ", kMeshletVersion, "\n",
                                     "control-plane 0.3.0 at cp:15014 (API meshlet.io/v1)\n"
                                     "proxies 0.2.0: 1 (reviews-1); sent without: overload\n"
                                     "proxies 0.3.0: 6 (a-1, a-2, a-3, a-4, a-5, and 1 more)\n"
                                     "proxies <unknown>: 1 (old)\n"));
  api_.Answer("GET", "/api/v1/proxies", 200, R"({"items":[]})");
  ASSERT_EQ(Run({"--server=cp:15014", "version"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("proxies: none connected\n"), std::string::npos) << out_.str();
}

// A control plane with revisions names its own, and the sidecars are grouped by release and
// revision (two revisions side by side during an upgrade).
TEST_F(MeshctlTest, VersionNamesEachRevision) {
  api_.Answer("GET", "/version", 200,
              R"({"server":"0.3.0","apiVersion":"meshlet.io/v1","revision":"canary"})");
  api_.Answer("GET", "/api/v1/proxies", 200, R"({"items":[
    {"id":"b-1","sidecarVersion":"meshlet-sidecar 0.3.0","revision":"canary"},
    {"id":"a-1","sidecarVersion":"meshlet-sidecar 0.3.0","revision":"0-2-0"},
    {"id":"c-1","sidecarVersion":"meshlet-sidecar 0.3.0","revision":"canary"}]})");
  ASSERT_EQ(Run({"--server=cp:15014", "version"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            absl::StrCat("meshctl ", kMeshletVersion, "\n",
                         "control-plane 0.3.0 (revision canary) at cp:15014 (API meshlet.io/v1)\n"
                         "proxies 0.3.0 (revision 0-2-0): 1 (a-1)\n"
                         "proxies 0.3.0 (revision canary): 2 (b-1, c-1)\n"));
}

// trust-bundle

constexpr char kBundle[] =
    "-----BEGIN CERTIFICATE-----\nMIIB1\nMIIB2\n-----END CERTIFICATE-----\n"
    "-----BEGIN CERTIFICATE-----\nMIIC1\n-----END CERTIFICATE-----\n";

TEST_F(MeshctlTest, TrustBundlePrintsThePemWithTheToken) {
  api_.Answer("GET", "/api/v1/trust-bundle", 200, kBundle,
              {{"content-type", "application/x-pem-file"}});
  ASSERT_EQ(Run({"trust-bundle", "--token", "secret"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), kBundle);
  EXPECT_EQ(err_.str(), "");
  EXPECT_EQ(OnlyPath(), "/api/v1/trust-bundle");
  EXPECT_EQ(Header(api_.requests().back(), "authorization"), "Bearer secret");
  // Without a final newline from the server, the output still ends its last line.
  api_.Answer("GET", "/api/v1/trust-bundle", 200,
              "-----BEGIN CERTIFICATE-----\nMIIB\n"
              "-----END CERTIFICATE-----");
  ASSERT_EQ(Run({"trust-bundle"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
}

TEST_F(MeshctlTest, TrustBundleAsTheConfigMapInjectedPodsMount) {
  api_.Answer("GET", "/api/v1/trust-bundle", 200, kBundle);
  ASSERT_EQ(Run({"trust-bundle", "--configmap", "-n", "shop"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "apiVersion: v1\n"
            "kind: ConfigMap\n"
            "metadata:\n"
            "  name: meshlet-trust\n"
            "  namespace: shop\n"
            "data:\n"
            "  ca.pem: |\n"
            "    -----BEGIN CERTIFICATE-----\n"
            "    MIIB1\n"
            "    MIIB2\n"
            "    -----END CERTIFICATE-----\n"
            "    -----BEGIN CERTIFICATE-----\n"
            "    MIIC1\n"
            "    -----END CERTIFICATE-----\n");
  // The namespace defaults to the context's (here none: default); --name renames it.
  ASSERT_EQ(Run({"trust-bundle", "--configmap", "--name=mesh-roots"}), 0) << err_.str();
  EXPECT_EQ(out_.str().rfind("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mesh-roots\n"
                             "  namespace: default\ndata:\n  ca.pem: |\n    -----BEGIN",
                             0),
            0u)
      << out_.str();
}

TEST_F(MeshctlTest, TrustBundleUsageErrorsAndFailures) {
  for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"trust-bundle", "extra"}, "meshctl: usage: meshctl trust-bundle [--configmap]"},
           {{"trust-bundle", "-n", "shop"},
            "meshctl: -n/--namespace and --name go with --configmap"},
           {{"trust-bundle", "--name", "x"},
            "meshctl: -n/--namespace and --name go with --configmap"},
           {{"trust-bundle", "--configmap", "--name", "Bad_Name"},
            "meshctl: --name=\"Bad_Name\": must be a ConfigMap name"},
           {{"trust-bundle", "--configmap", "-n", "Shop"},
            "meshctl: --namespace=\"Shop\": must be a namespace name"},
           {{"trust-bundle", "--configmap=yes"}, "meshctl: --configmap=\"yes\": takes no value"},
       }) {
    EXPECT_EQ(Run(args), 2) << absl::StrJoin(args, " ");
    EXPECT_EQ(err_.str().rfind(message, 0), 0u) << absl::StrJoin(args, " ") << ": " << err_.str();
    EXPECT_EQ(out_.str(), "");
  }
  EXPECT_TRUE(api_.requests().empty());

  // A control plane without a CA, or an answer that is no PEM: exit 1, nothing on stdout.
  api_.Answer(
      "GET", "/api/v1/trust-bundle", 503,
      R"({"kind":"Status","code":503,"message":"the certificate authority is not running"})");
  EXPECT_EQ(Run({"trust-bundle", "--configmap"}), 1);
  EXPECT_EQ(err_.str(), "meshctl: the certificate authority is not running\n");
  EXPECT_EQ(out_.str(), "");
  api_.Answer("GET", "/api/v1/trust-bundle", 200, "<html>proxy error</html>");
  EXPECT_EQ(Run({"trust-bundle"}), 1);
  EXPECT_EQ(err_.str(),
            "meshctl: the control plane's answer is not a PEM bundle of certificates\n");
  EXPECT_EQ(out_.str(), "");
  // Unreachable, or the token refused: exit 3.
  api_.Answer("GET", "/api/v1/trust-bundle", 401, R"({"message":"wrong bearer token"})");
  EXPECT_EQ(Run({"trust-bundle", "--token", "old"}), 3);
  api_.FailWith(absl::UnavailableError("cannot connect to 127.0.0.1:15014: Connection refused"));
  EXPECT_EQ(Run({"trust-bundle"}), 3);
  EXPECT_EQ(out_.str(), "");
}

TEST_F(MeshctlTest, TrustBundleHelpShowsTheConfigMapExamples) {
  ASSERT_EQ(Run({"help", "trust-bundle"}), 0);
  const std::string help = out_.str();
  for (const char* want :
       {"\nUsage:\n  meshctl trust-bundle [--configmap] [-n NS] [--name NAME]\n", "  --configmap ",
        "  --name NAME ", "meshctl trust-bundle --configmap -n shop | kubectl apply -f -"}) {
    EXPECT_NE(help.find(want), std::string::npos) << want << "\n" << help;
  }
  ASSERT_EQ(Run({"help"}), 0);
  EXPECT_NE(out_.str().find("\n  trust-bundle "), std::string::npos) << out_.str();
}

// inject

constexpr char kManifests[] = R"(# the app's Service
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:1
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: debug
  annotations: {sidecar.meshlet.io/inject: "false"}
spec:
  containers: [{name: sh, image: busybox}]
)";

TEST_F(MeshctlTest, InjectWritesTheDocumentsBackWithTheSidecarAndNeedsNoServer) {
  env_.meshctl_config = "/nonexistent/meshctl.yaml";  // inject must not read it
  in_.str(kManifests);
  ASSERT_EQ(Run({"inject", "-f", "-"}), 0) << err_.str();
  const std::string out = out_.str();
  EXPECT_EQ(err_.str(),
            "not injected: <stdin> (document 3): Pod \"debug\": annotation "
            "sidecar.meshlet.io/inject is \"false\"\n");
  // The Service and the opted-out Pod come out as they went in, comments included.
  EXPECT_EQ(out.rfind("# the app's Service\napiVersion: v1\nkind: Service\n", 0), 0u) << out;
  EXPECT_NE(out.find("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: debug\n  annotations: "
                     "{sidecar.meshlet.io/inject: \"false\"}\nspec:\n  containers: [{name: sh, "
                     "image: busybox}]\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n') > 100, true);
  for (const std::string& want :
       {std::string("- name: meshlet-init"), std::string("- name: meshlet-proxy"),
        absl::StrCat("image: meshlet-proxy:", kMeshletVersion), std::string("- --node-port=8080"),
        std::string("- --node-service=web"), std::string("restartPolicy: Always"),
        absl::StrCat("sidecar.meshlet.io/status: '{\"version\":\"", kMeshletVersion,
                     "\",\"mode\":\"native\"")}) {
    EXPECT_NE(out.find(want), std::string::npos) << want << "\n" << out;
  }
  EXPECT_TRUE(api_.requests().empty());

  // Injecting the output again changes nothing, byte for byte.
  in_.clear();
  in_.str(out);
  ASSERT_EQ(Run({"inject", "-f", "-"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), out);
}

TEST_F(MeshctlTest, InjectFlagsChooseModeImageControlPlaneTrustDomainAndJson) {
  in_.str(kManifests);
  ASSERT_EQ(
      Run({"inject", "-f", "-", "--mode", "classic", "--proxy-image", "reg.example/p:2",
           "--control-plane", "cp.mesh:15012", "--trust-domain", "example.org", "-o", "json"}),
      0)
      << err_.str();
  const std::string out = out_.str();
  EXPECT_EQ(out.rfind("{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": [\n", 0),
            0u)
      << out;
  for (const char* want :
       {"\"containers\": [\n              {\n                \"name\": \"meshlet-proxy\",",
        "\"image\": \"reg.example/p:2\"", "\"value\": \"cp.mesh:15012\"",
        "\"--xds-server-identity=spiffe://example.org/ns/meshlet-system/sa/"
        "meshlet-control-plane\"",
        "\"runAsUser\": 1337", "\"port\": 80,"}) {
    EXPECT_NE(out.find(want), std::string::npos) << want << "\n" << out;
  }
  EXPECT_EQ(out.find("restartPolicy"), std::string::npos);
}

// --revision for pods without a label; a Namespace of the input labelled meshlet.io/rev for its
// pods; a pod's own label over both.
TEST_F(MeshctlTest, InjectRevisionFromTheFlagTheNamespaceOrThePod) {
  in_.str(R"(apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {meshlet.io/rev: "0-2-0"}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: shop}
spec: {containers: [{name: app, image: app:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: front}
spec: {containers: [{name: app, image: app:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: shop, labels: {meshlet.io/rev: canary}}
spec: {containers: [{name: app, image: app:1}]}
)");
  ASSERT_EQ(Run({"inject", "-f", "-", "--revision", "canary", "-o", "json"}), 0) << err_.str();
  YAML::Node out = YAML::Load(out_.str());
  auto env = [&](int item) {
    for (const YAML::Node& c : out["items"][item]["spec"]["initContainers"]) {
      for (const YAML::Node& e : c["env"]) {
        if (e["name"].Scalar() == "MESHLET_CONTROL_PLANE") return e["value"].Scalar();
      }
    }
    return std::string("(none)");
  };
  EXPECT_EQ(env(1), "meshlet-control-plane-0-2-0.meshlet-system.svc:15012");
  EXPECT_EQ(env(2), "meshlet-control-plane-canary.meshlet-system.svc:15012");
  EXPECT_EQ(env(3), "meshlet-control-plane-canary.meshlet-system.svc:15012");
  EXPECT_EQ(out["items"][1]["metadata"]["annotations"]["sidecar.meshlet.io/revision"].Scalar(),
            "0-2-0");
  // "default" names the unnamed revision; a bad name is a usage error.
  in_.clear();
  in_.str(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n"
      "spec: {containers: [{name: app, image: app:1}]}\n");
  ASSERT_EQ(Run({"inject", "-f", "-", "--revision", "default"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("value: meshlet-control-plane.meshlet-system.svc:15012"),
            std::string::npos)
      << out_.str();
  EXPECT_EQ(Run({"inject", "-f", "-", "--revision", "Canary"}), 2);
  EXPECT_NE(err_.str().find("is not a revision name"), std::string::npos) << err_.str();
  // The global --revision (before the command) is inject's --revision too.
  in_.clear();
  in_.str(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n"
      "spec: {containers: [{name: app, image: app:1}]}\n");
  out_.str("");
  ASSERT_EQ(Run({"--revision", "canary", "inject", "-f", "-"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("value: meshlet-control-plane-canary.meshlet-system.svc:15012"),
            std::string::npos)
      << out_.str();
}

// --tag TAG=REVISION: labels naming the tag get its revision; the tag default moves the pods no
// label puts on a revision.
TEST_F(MeshctlTest, InjectTagsStandForTheirRevisions) {
  const std::string input = R"(apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {meshlet.io/rev: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: front}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: shop}
spec: {containers: [{name: app, image: app:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: front}
spec: {containers: [{name: app, image: app:1}]}
)";
  in_.str(input);
  ASSERT_EQ(
      Run({"inject", "-f", "-", "--tag", "prod=canary", "--tag", "default=0-2-0", "-o", "json"}), 0)
      << err_.str();
  YAML::Node out = YAML::Load(out_.str());
  EXPECT_EQ(out["items"][2]["metadata"]["annotations"]["sidecar.meshlet.io/revision"].Scalar(),
            "canary");
  EXPECT_EQ(out["items"][3]["metadata"]["annotations"]["sidecar.meshlet.io/revision"].Scalar(),
            "0-2-0");
  in_.clear();
  in_.str(input);
  EXPECT_EQ(Run({"inject", "-f", "-", "--tag", "prod"}), 2);
  EXPECT_NE(err_.str().find("must be TAG=REVISION"), std::string::npos) << err_.str();
}

TEST_F(MeshctlTest, InjectPrintsEveryProblemAndWritesNothing) {
  in_.str(absl::StrCat(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n"
      "  - {name: a, image: a, ports: [{containerPort: 15001}]}\n---\n",
      "apiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n  annotations:\n"
      "    sidecar.meshlet.io/mode: sidecar\nspec: {containers: [{name: b, image: b}]}\n"));
  EXPECT_EQ(Run({"inject", "-f", "-"}), 1);
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(err_.str(),
            "error: <stdin>:6:49: Pod \"a\": spec.containers[0].ports[0].containerPort: 15001 is "
            "the sidecar's (it uses 15000, 15001, 15006, 15020, 15021) (document 1)\n"
            "error: <stdin>:13:30: Pod \"b\": "
            "metadata.annotations['sidecar.meshlet.io/mode']: must be native or classic "
            "(document 2)\n"
            "nothing written\n");

  for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"inject", "-f", "-", "--mode", "sidecar"},
            "meshctl: --mode=\"sidecar\": must be native or classic\n"},
           {{"inject", "-f", "-", "--control-plane", "cp.mesh"},
            "meshctl: --control-plane=\"cp.mesh\": must be HOST:PORT\n"},
           {{"inject", "-f", "-", "--proxy-image", ""},
            "meshctl: --proxy-image=\"\": must be an image reference without spaces\n"},
           {{"inject"}, "meshctl: inject needs -f FILE|DIR|- (see meshctl help inject)\n"},
       }) {
    EXPECT_EQ(Run(args), 2) << absl::StrJoin(args, " ");
    EXPECT_EQ(err_.str(), message);
  }
  in_.clear();
  in_.str("# nothing\n");
  EXPECT_EQ(Run({"inject", "-f", "-"}), 1);
  EXPECT_EQ(err_.str(), "meshctl: no documents found in -\n");
  EXPECT_EQ(Run({"inject", "-f", "/nonexistent/app.yaml"}), 1);
  EXPECT_EQ(err_.str(),
            "meshctl: /nonexistent/app.yaml: no such file or directory\nnothing written\n");
}

// install --secrets --renew-etcd-certificates: the bundled etcd's, through the Kubernetes API.
TEST_F(MeshctlTest, RenewingTheEtcdCertificatesIsForTheBundledEtcdsSecrets) {
  EXPECT_EQ(Run({"install", "--renew-etcd-certificates", "--set", "etcd=bundled"}), kExitUsage);
  EXPECT_TRUE(absl::StrContains(err_.str(), "go with --secrets")) << err_.str();
  err_.str("");
  EXPECT_EQ(Run({"install", "--secrets", "--renew-etcd-certificates", "--set",
                 "etcd=https://etcd.example:2379", "--set", "etcd.tlsSecret=etcd-client"}),
            kExitUsage);
  EXPECT_TRUE(absl::StrContains(err_.str(), "--set etcd=bundled")) << err_.str();
  err_.str("");
  EXPECT_EQ(Run({"install", "--secrets", "--renew-etcd-certificates", "--rotate-store-key", "--set",
                 "etcd=bundled"}),
            kExitUsage);
  // A renewal window no shorter than the certificates: refused before anything is read.
  err_.str("");
  EXPECT_EQ(
      Run({"install", "--secrets", "--set", "etcd=bundled", "--set", "etcd.certificateDays=20"}),
      kExitUsage);
  EXPECT_TRUE(absl::StrContains(err_.str(), "etcd.renewBeforeDays=30")) << err_.str();
}

// install --secrets --rotate-store-key on a key file: the finish asks the control plane.
TEST_F(MeshctlTest, RotatingAStoreKeyFileFinishesOnlyOnceTheControlPlaneResealed) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/meshctl-store-key");
  const std::string old_key = StoreKeys::GenerateKeyText();
  { std::ofstream(path) << old_key << "\n"; }
  const std::string old_id = StoreKeys::Parse(old_key, "k")->current_key_id();
  auto key_ids = [&] {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return StoreKeys::Parse(text.str(), path)->key_ids();
  };
  EXPECT_EQ(Run({"install", "--finish"}), kExitUsage);
  EXPECT_EQ(Run({"install", "--rotate-store-key"}), kExitUsage);  // without --secrets
  ASSERT_EQ(Run({"install", "--secrets", "--rotate-store-key", "--store-key-file", path}), 0)
      << err_.str();
  const std::vector<std::string> rotated = key_ids();
  ASSERT_EQ(rotated.size(), 2u);
  EXPECT_EQ(rotated[1], old_id);
  EXPECT_TRUE(absl::StrContains(out_.str(), absl::StrCat("key ", rotated[0], " first")))
      << out_.str();

  auto metrics = [&](const std::string& key_id) {
    api_.Answer("GET", "/metrics", 200,
                absl::StrCat("meshlet_cp_store_sealed_records{record=\"ControlPlaneSecret/"
                             "api-token\",key_id=\"",
                             key_id, "\"} 1\n"));
  };
  const std::vector<std::string> finish = {"--server", "10.0.0.5:15014",   "--token=t",
                                           "install",  "--secrets",        "--rotate-store-key",
                                           "--finish", "--store-key-file", path};
  metrics(old_id);
  EXPECT_EQ(Run(finish), kExitFailed);
  EXPECT_TRUE(absl::StrContains(
      err_.str(), absl::StrCat("not finishing: ControlPlaneSecret/api-token (key ", old_id, ")")))
      << err_.str();
  EXPECT_EQ(key_ids(), rotated);
  metrics(rotated[0]);
  ASSERT_EQ(Run(finish), 0) << err_.str();
  EXPECT_EQ(key_ids(), std::vector<std::string>{rotated[0]});
  std::remove(path.c_str());
}

}  // namespace
}  // namespace meshlet::controlplane::cli
