// get (resources, or the workloads in the registry) and describe.

#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/output.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::cli {
namespace {

// A Service's virtual addresses: those it declares, else those the control plane allocated.
struct Addresses {
  std::vector<std::string> list;
  bool allocated = false;
};
Addresses ServiceAddresses(const YAML::Node& service) {
  Addresses out;
  for (const char* part : {"spec", "status"}) {
    const YAML::Node section = service[part];
    if (!section || !section.IsMap()) continue;
    const YAML::Node list = section["addresses"];
    if (!list || !list.IsSequence()) continue;
    for (const auto& a : list) out.list.push_back(Scalar(a));
    if (!out.list.empty()) {
      out.allocated = std::string(part) == "status";
      break;
    }
  }
  return out;
}

// What a policy applies to: its target Service, its targetRefs ("Gateway/edge,Service/orders"),
// or "<namespace>" (every sidecar of its namespace).
std::string PolicyTarget(const YAML::Node& spec) {
  if (spec["target"]) return Scalar(spec["target"]);
  std::vector<std::string> refs;
  for (const auto& ref : spec["targetRefs"]) {
    refs.push_back(absl::StrCat(Scalar(ref["kind"]), "/", Scalar(ref["name"])));
  }
  return refs.empty() ? "<namespace>" : absl::StrJoin(refs, ",");
}

// The table of `items` of one kind: name, the kind's own columns, version and age.
std::string ResourceTable(const policy::KindInfo& info, const std::vector<YAML::Node>& items,
                          bool with_namespace) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header;
  if (with_namespace) header.push_back("NAMESPACE");
  header.push_back("NAME");
  const std::string kind(info.store_kind);  // tells the two HTTPRoutes apart
  if (kind == "Service") {
    header.insert(header.end(), {"PORTS", "ADDRESSES", "SELECTOR"});
  } else if (kind == "TrafficPolicy") {
    header.insert(header.end(), {"TARGET", "LB", "RETRIES", "TIMEOUT"});
  } else if (kind == "HTTPRoute") {
    header.insert(header.end(), {"TARGET", "RULES", "BACKENDS"});
  } else if (kind == "AuthorizationPolicy") {
    header.insert(header.end(), {"TARGET", "ACTION", "RULES"});
  } else if (kind == "RequestAuthentication") {
    header.insert(header.end(), {"TARGET", "ISSUERS"});
  } else if (kind == "ExternalService") {
    header.insert(header.end(), {"HOSTS", "PORTS", "RESOLUTION"});
  } else if (kind == "MeshConfig") {
    header.insert(header.end(), {"MTLS", "TRUST DOMAIN", "SCOPED"});
  } else if (kind == "GatewayHTTPRoute" || kind == "GatewayGRPCRoute") {
    header.insert(header.end(), {"PARENTS", "HOSTNAMES", "RULES"});
  } else if (kind == "GatewayReferenceGrant") {
    header.insert(header.end(), {"FROM", "TO"});
  } else if (kind == "GatewayGatewayClass") {
    header.insert(header.end(), {"CONTROLLER", "ACCEPTED"});
  } else if (kind == "GatewayGateway") {
    header.insert(header.end(), {"CLASS", "ADDRESS", "PROGRAMMED"});
  } else if (kind == "GatewayBackendTLSPolicy") {
    header.insert(header.end(), {"TARGETS", "HOSTNAME", "ACCEPTED"});
  }
  header.insert(header.end(), {"VERSION", "AGE"});
  rows.push_back(header);
  const absl::Time now = absl::Now();
  for (const YAML::Node& item : items) {
    const YAML::Node meta = item["metadata"];
    const YAML::Node spec = item["spec"];
    std::vector<std::string> row;
    if (with_namespace) row.push_back(Scalar(meta["namespace"]));
    row.push_back(Scalar(meta["name"]));
    if (kind == "Service") {
      std::vector<std::string> ports;
      for (const auto& p : spec["ports"]) {
        std::string text = Scalar(p["port"]);
        if (p["targetPort"]) absl::StrAppend(&text, ":", Scalar(p["targetPort"]));
        absl::StrAppend(&text, "/", p["protocol"] ? Scalar(p["protocol"]) : "HTTP");
        ports.push_back(text);
      }
      std::vector<std::string> selector;
      for (auto it = spec["selector"].begin(); it != spec["selector"].end(); ++it) {
        selector.push_back(absl::StrCat(it->first.Scalar(), "=", Scalar(it->second)));
      }
      row.push_back(ports.empty() ? "<none>" : absl::StrJoin(ports, ","));
      const Addresses addresses = ServiceAddresses(item);
      row.push_back(addresses.list.empty() ? "<none>" : absl::StrJoin(addresses.list, ","));
      row.push_back(selector.empty() ? "<none>" : absl::StrJoin(selector, ","));
    } else if (kind == "TrafficPolicy") {
      std::vector<std::string> targets;
      for (const auto& ref : spec["targetRefs"]) {
        targets.push_back(absl::StrCat(Scalar(ref["kind"]), "/", Scalar(ref["name"])));
      }
      row.push_back(targets.empty() ? Scalar(spec["target"]) : absl::StrJoin(targets, ","));
      row.push_back(spec["loadBalancer"] ? Scalar(spec["loadBalancer"]) : "LEAST_REQUEST");
      row.push_back(spec["retries"] && spec["retries"]["attempts"]
                        ? Scalar(spec["retries"]["attempts"])
                        : "-");
      row.push_back(spec["timeouts"] && spec["timeouts"]["request"]
                        ? Scalar(spec["timeouts"]["request"])
                        : "-");
    } else if (kind == "HTTPRoute") {
      row.push_back(Scalar(spec["target"]));
      row.push_back(absl::StrCat(spec["rules"] ? spec["rules"].size() : 0));
      std::vector<std::string> backends;
      for (const auto& rule : spec["rules"]) {
        for (const auto& b : rule["backends"]) {
          std::string text = Scalar(b["service"]);
          for (auto it = b["subset"].begin(); it != b["subset"].end(); ++it) {
            absl::StrAppend(&text, "[", it->first.Scalar(), "=", Scalar(it->second), "]");
          }
          if (b["weight"]) absl::StrAppend(&text, "=", Scalar(b["weight"]));
          if (std::find(backends.begin(), backends.end(), text) == backends.end()) {
            backends.push_back(text);
          }
        }
      }
      row.push_back(backends.empty() ? "-" : absl::StrJoin(backends, ","));
    } else if (kind == "AuthorizationPolicy") {
      row.push_back(PolicyTarget(spec));
      row.push_back(spec["action"] ? Scalar(spec["action"]) : "ALLOW");
      row.push_back(absl::StrCat(spec["rules"] ? spec["rules"].size() : 0));
    } else if (kind == "RequestAuthentication") {
      row.push_back(PolicyTarget(spec));
      std::vector<std::string> issuers;
      for (const auto& rule : spec["jwtRules"]) issuers.push_back(Scalar(rule["issuer"]));
      row.push_back(issuers.empty() ? "-" : absl::StrJoin(issuers, ","));
    } else if (kind == "ExternalService") {
      std::vector<std::string> hosts, ports;
      for (const auto& host : spec["hosts"]) hosts.push_back(Scalar(host));
      for (const auto& port : spec["ports"]) {
        ports.push_back(absl::StrCat(Scalar(port["number"]), "/", Scalar(port["protocol"])));
      }
      row.push_back(hosts.empty() ? "-" : absl::StrJoin(hosts, ","));
      row.push_back(ports.empty() ? "-" : absl::StrJoin(ports, ","));
      row.push_back(spec["resolution"] ? Scalar(spec["resolution"]) : "DNS");
    } else if (kind == "MeshConfig") {
      row.push_back(spec["mtls"] ? Scalar(spec["mtls"]) : "PERMISSIVE");
      row.push_back(spec["trustDomain"] ? Scalar(spec["trustDomain"]) : "cluster.local");
      row.push_back(spec["scopeToDependencies"] ? Scalar(spec["scopeToDependencies"]) : "false");
    } else if (kind == "GatewayHTTPRoute" || kind == "GatewayGRPCRoute") {
      std::vector<std::string> parents, hostnames;
      for (const auto& p : spec["parentRefs"]) {
        std::string text =
            absl::StrCat(p["kind"] ? Scalar(p["kind"]) : "Gateway", "/",
                         p["namespace"] ? Scalar(p["namespace"]) + "/" : "", Scalar(p["name"]));
        if (p["port"]) absl::StrAppend(&text, ":", Scalar(p["port"]));
        parents.push_back(text);
      }
      for (const auto& h : spec["hostnames"]) hostnames.push_back(Scalar(h));
      row.push_back(parents.empty() ? "<none>" : absl::StrJoin(parents, ","));
      row.push_back(hostnames.empty() ? "*" : absl::StrJoin(hostnames, ","));
      row.push_back(absl::StrCat(spec["rules"] ? spec["rules"].size() : 0));
    } else if (kind == "GatewayReferenceGrant") {
      std::vector<std::string> from, to;
      for (const auto& f : spec["from"]) {
        from.push_back(absl::StrCat(Scalar(f["kind"]), "/", Scalar(f["namespace"])));
      }
      for (const auto& t : spec["to"]) {
        to.push_back(absl::StrCat(Scalar(t["kind"]), t["name"] ? "/" + Scalar(t["name"]) : ""));
      }
      row.push_back(from.empty() ? "<none>" : absl::StrJoin(from, ","));
      row.push_back(to.empty() ? "<none>" : absl::StrJoin(to, ","));
    } else if (kind == "GatewayBackendTLSPolicy") {
      std::vector<std::string> targets;
      for (const auto& t : spec["targetRefs"]) {
        targets.push_back(absl::StrCat(Scalar(t["kind"]), "/", Scalar(t["name"]),
                                       t["sectionName"] ? ":" + Scalar(t["sectionName"]) : ""));
      }
      row.push_back(targets.empty() ? "<none>" : absl::StrJoin(targets, ","));
      row.push_back(Scalar(spec["validation"]["hostname"]));
      // Accepted for each Gateway it reaches: True, or the first refusal's reason; "-" when no
      // meshlet Gateway routes to its Services.
      std::string accepted = "-";
      const YAML::Node status = item["status"];
      const YAML::Node ancestors = status ? status["ancestors"] : YAML::Node();
      for (const auto& a : ancestors) {
        for (const auto& c : a["conditions"]) {
          if (Scalar(c["type"]) != "Accepted") continue;
          if (Scalar(c["status"]) == "True") {
            if (accepted == "-") accepted = "True";
          } else if (accepted == "-" || accepted == "True") {
            accepted = absl::StrCat("False (", Scalar(c["reason"]), ")");
          }
        }
      }
      row.push_back(accepted);
    } else if (kind == "GatewayGatewayClass" || kind == "GatewayGateway") {
      // The status the API computed (docs/gateway.md), as kubectl's columns show it.
      const YAML::Node status = item["status"];
      auto condition = [&](absl::string_view type) {
        for (const auto& c : status["conditions"]) {
          if (Scalar(c["type"]) == type) return Scalar(c["status"]);
        }
        return std::string("Unknown");
      };
      if (kind == "GatewayGatewayClass") {
        row.push_back(Scalar(spec["controllerName"]));
        row.push_back(condition("Accepted"));
      } else {
        std::vector<std::string> addresses;
        for (const auto& a : status["addresses"]) addresses.push_back(Scalar(a["value"]));
        row.push_back(Scalar(spec["gatewayClassName"]));
        row.push_back(addresses.empty() ? "" : absl::StrJoin(addresses, ","));
        row.push_back(condition("Programmed"));
      }
    }
    row.push_back(Scalar(meta["resourceVersion"]));
    row.push_back(Age(Scalar(meta["creationTimestamp"]), now));
    rows.push_back(std::move(row));
  }
  return FormatTable(rows);
}

class Get final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {NamespaceFlag(&namespace_),
            Switch("--all-namespaces", "-A", &all_namespaces_, "list every namespace"),
            OutputFlag(&output_, {"table", "yaml", "json"},
                       "table (default), YAML documents, or the API's JSON")};
  }

  int Run(Session& session) override {
    const std::vector<std::string>& args = session.positional();
    if (!args.empty() && (args[0] == "workloads" || args[0] == "workload" || args[0] == "wl")) {
      return Workloads(session);
    }
    int exit_code = kExitOk;
    const policy::KindInfo* info = session.KindArg(&exit_code);
    if (info == nullptr) return exit_code;
    const std::string ns = session.Namespace(namespace_);
    const std::string name = args.size() > 1 ? args[1] : "";
    std::string path;
    if (!name.empty()) {
      path = ResourcePath(*info, ns, name);
    } else if (all_namespaces_ || !info->namespaced) {
      path = absl::StrCat(info->ApiPath(), "/", info->plural);
    } else {
      path = ResourcePath(*info, ns, "");
    }
    std::optional<ApiReply> reply = session.api().Call("GET", path, "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
    std::ostream& out = session.io().out;
    if (output_ == "json") {
      out << reply->http.body;
      return kExitOk;
    }
    YAML::Node root;
    try {
      root = YAML::Load(reply->http.body);
    } catch (const YAML::Exception& e) {
      return session.Fail({kExitFailed, absl::StrCat("unreadable response: ", e.what())});
    }
    std::vector<YAML::Node> items;
    if (!name.empty()) {
      items.push_back(root);
    } else {
      for (const auto& item : root["items"]) items.push_back(item);
    }
    if (output_ == "yaml") {
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out << "---\n";
        out << NodeToYaml(items[i]);
      }
      return kExitOk;
    }
    if (items.empty()) {
      session.io().err << "No " << info->plural << " found"
                       << (info->namespaced && !all_namespaces_ ? absl::StrCat(" in namespace ", ns)
                                                                : "")
                       << ".\n";
      return kExitOk;
    }
    out << ResourceTable(*info, items, all_namespaces_ && info->namespaced);
    return kExitOk;
  }

 private:
  // get workloads: the registry.
  int Workloads(Session& session) {
    int exit_code = kExitOk;
    std::optional<ApiReply> reply = session.api().Call("GET", "/api/v1/workloads", "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
    if (std::optional<int> printed = session.PrintStructured(output_, reply->http.body)) {
      return *printed;
    }
    YAML::Node root = YAML::Load(reply->http.body);
    std::vector<std::vector<std::string>> rows = {
        {"ID", "NAMESPACE", "SERVICE", "ADDRESSES", "PORTS", "READY", "STATUS", "REGISTERED"}};
    // Several control-plane replicas: which one each sidecar is connected to.
    bool replicas = false;
    for (const auto& w : root["items"]) replicas = replicas || w["replica"].IsDefined();
    if (replicas) rows[0].push_back("REPLICA");
    const absl::Time now = absl::Now();
    const std::string ns = session.Namespace(namespace_);
    for (const auto& w : root["items"]) {
      if (!all_namespaces_ && namespace_.set && Scalar(w["namespace"]) != ns) continue;
      std::vector<std::string> addresses, ports;
      for (const auto& a : w["addresses"]) addresses.push_back(Scalar(a));
      for (const auto& p : w["ports"]) ports.push_back(Scalar(p));
      std::string status = Scalar(w["connected"]) == "true"
                               ? "connected"
                               : absl::StrCat("disconnected (removal in ",
                                              Scalar(w["deregisterInSeconds"]).substr(0, 4), "s)");
      rows.push_back({Scalar(w["id"]), Scalar(w["namespace"]), Scalar(w["service"]),
                      absl::StrJoin(addresses, ","), absl::StrJoin(ports, ","), Scalar(w["ready"]),
                      status, Age(Scalar(w["registeredAt"]), now)});
      if (replicas) rows.back().push_back(Scalar(w["replica"]));
    }
    if (rows.size() == 1) {
      session.io().err << "No workloads registered.\n";
      return kExitOk;
    }
    session.io().out << FormatTable(rows);
    return kExitOk;
  }

  NamespaceOption namespace_;
  bool all_namespaces_ = false;
  std::string output_ = "table";
};

class Describe final : public Command {
 public:
  std::vector<flags::Flag> Flags() override { return {NamespaceFlag(&namespace_)}; }

  int Run(Session& session) override {
    int exit_code = kExitOk;
    const policy::KindInfo* info = session.KindArg(&exit_code);
    if (info == nullptr) return exit_code;
    const std::vector<std::string>& args = session.positional();
    if (args.size() < 2) return session.Fail({kExitUsage, "describe needs KIND NAME"});
    const std::string& name = args[1];
    const std::string ns = session.Namespace(namespace_);
    std::ostream& out = session.io().out;
    std::optional<ApiReply> reply =
        session.api().Call("GET", ResourcePath(*info, ns, name), "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return session.Fail({kExitFailed, reply->ErrorMessage()});
    absl::StatusOr<std::string> yaml = JsonToYaml(reply->http.body);
    if (!yaml.ok()) return session.Fail({kExitFailed, std::string(yaml.status().message())});
    out << *yaml;
    YAML::Node object = YAML::Load(reply->http.body);
    if (info->kind == "Service") {
      const Addresses addresses = ServiceAddresses(object);
      out << "\nAddresses: "
          << (addresses.list.empty() ? "<none>" : absl::StrJoin(addresses.list, ", "))
          << (addresses.allocated ? " (allocated from the MeshConfig ranges)" : "") << "\n";
    }
    std::string service = info->kind == "Service" ? name : Scalar(object["spec"]["target"]);
    if (service.empty()) return kExitOk;
    const std::string kind(info->kind);
    // What else refers to the same Service.
    std::vector<std::vector<std::string>> related = {{"KIND", "NAME"}};
    for (const char* other : {"TrafficPolicy", "HTTPRoute", "AuthorizationPolicy"}) {
      const policy::KindInfo* other_info = policy::FindKind(other);
      std::optional<ApiReply> list =
          session.api().Call("GET", ResourcePath(*other_info, ns, ""), "", &exit_code);
      if (!list.has_value()) return exit_code;
      if (list->http.status != 200) continue;
      for (const auto& item : YAML::Load(list->http.body)["items"]) {
        const std::string item_name = Scalar(item["metadata"]["name"]);
        if (other == kind && item_name == name) continue;
        bool refers = Scalar(item["spec"]["target"]) == service;
        for (const auto& rule : item["spec"]["rules"]) {
          for (const auto& b : rule["backends"]) refers |= Scalar(b["service"]) == service;
        }
        if (refers) related.push_back({other, item_name});
      }
    }
    out << "\nPolicies for Service " << service << ":\n";
    if (related.size() == 1) {
      out << "  <none>\n";
    } else {
      out << FormatTable(related);
    }
    std::optional<ApiReply> workloads =
        session.api().Call("GET", "/api/v1/workloads", "", &exit_code);
    if (!workloads.has_value()) return exit_code;
    if (workloads->http.status == 200) {
      std::vector<std::vector<std::string>> rows = {{"WORKLOAD", "ADDRESSES", "READY", "STATUS"}};
      for (const auto& w : YAML::Load(workloads->http.body)["items"]) {
        if (Scalar(w["service"]) != service || Scalar(w["namespace"]) != ns) continue;
        std::vector<std::string> addresses;
        for (const auto& a : w["addresses"]) addresses.push_back(Scalar(a));
        rows.push_back({Scalar(w["id"]), absl::StrJoin(addresses, ","), Scalar(w["ready"]),
                        Scalar(w["connected"]) == "true" ? "connected" : "disconnected"});
      }
      out << "\nWorkloads of Service " << service << ":\n";
      if (rows.size() == 1) {
        out << "  <none registered>\n";
      } else {
        out << FormatTable(rows);
      }
    }
    return kExitOk;
  }

 private:
  NamespaceOption namespace_;
};

}  // namespace

CommandSpec GetCommand() {
  std::vector<std::string> kinds;
  for (const policy::KindInfo& k : policy::AllKinds()) {
    if (k.group == policy::kApiGroup) {
      kinds.push_back(absl::StrCat(k.kind, " (", k.plural, ", ", k.short_name, ")"));
    } else {
      kinds.push_back(absl::StrCat(
          k.kind, " of ", k.group, " (",
          policy::FindKind(k.plural) == &k ? absl::StrCat(k.plural, ", ") : "", k.plural, ".",
          k.group, k.short_name.empty() ? "" : ", ", k.short_name, ")"));
    }
  }
  return {
      .name = "get",
      .args = "KIND [NAME]",
      .summary = "list or show resources, or the workloads in the registry",
      .about = absl::StrCat(
          "Lists the resources of a kind, or shows one. KIND is a kind, its plural or its "
          "short name, case-insensitive, optionally followed by \".\" and the API group as "
          "kubectl names them; a name two groups share means meshlet's: ",
          absl::StrJoin(kinds, ", "),
          "; or workloads: the registry (id, service, addresses, ports, ready, connected "
          "or the time left before removal). -o yaml prints documents that apply back "
          "unchanged."),
      .examples = {{"", "meshctl get tp"},
                   {"Gateway API routes", "meshctl get httproutes.gateway.networking.k8s.io -A"},
                   {"edit every route: get, edit, apply",
                    "meshctl get hr -A -o yaml > routes.yaml"}},
      .make = [] { return std::make_unique<Get>(); }};
}

CommandSpec DescribeCommand() {
  return {.name = "describe",
          .args = "KIND NAME",
          .summary = "a resource with the policies for the same Service and its workloads",
          .about =
              "Shows a resource as YAML, the other policies naming the same Service, and "
              "the Service's registered workloads.",
          .examples = {{"", "meshctl describe svc reviews"}},
          .make = [] { return std::make_unique<Describe>(); }};
}

}  // namespace meshlet::controlplane::cli
