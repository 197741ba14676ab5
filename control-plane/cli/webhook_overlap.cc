#include "control-plane/cli/webhook_overlap.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "control-plane/cli/output.h"
#include "control-plane/cli/tag.h"

namespace meshlet::controlplane::cli {
namespace {

constexpr char kNamespaceNameLabel[] = "kubernetes.io/metadata.name";
constexpr char kPartOfLabel[] = "app.kubernetes.io/part-of";
constexpr char kWebhookNameSuffix[] = ".sidecar.meshlet.io";

bool IsString(const YAML::Node& node) { return node.IsDefined() && node.IsScalar(); }

// Whether a list of a rule's entries holds one of `wanted`.
bool Names(const YAML::Node& list, std::initializer_list<absl::string_view> wanted) {
  if (!list.IsSequence()) return false;
  for (const YAML::Node& entry : list) {
    if (!entry.IsScalar()) continue;
    for (absl::string_view w : wanted) {
      if (entry.Scalar() == w) return true;
    }
  }
  return false;
}

// The webhook's rules send it pods at CREATE (a webhook without rules is sent nothing).
bool SentPods(const YAML::Node& hook) {
  const YAML::Node rules = At(hook, {"rules"});
  if (!rules.IsSequence()) return false;
  for (const YAML::Node& rule : rules) {
    if (Names(At(rule, {"apiGroups"}), {"", "*"}) &&
        Names(At(rule, {"operations"}), {"CREATE", "*"}) &&
        Names(At(rule, {"resources"}), {"pods", "*", "*/*"})) {
      return true;
    }
  }
  return false;
}

bool IsMeshlets(const YAML::Node& configuration) {
  if (Scalar(At(configuration, {"metadata", "labels", kPartOfLabel})) == "meshlet") return true;
  const YAML::Node hooks = At(configuration, {"webhooks"});
  if (!hooks.IsSequence()) return false;
  for (const YAML::Node& hook : hooks) {
    if (absl::EndsWith(Scalar(At(hook, {"name"})), kWebhookNameSuffix)) return true;
  }
  return false;
}

std::string Values(const std::set<std::string>& values) {
  return absl::StrCat("(", absl::StrJoin(values, ","), ")");
}

}  // namespace

absl::StatusOr<LabelSelector> LabelSelector::Read(const YAML::Node& selector,
                                                  absl::string_view field) {
  LabelSelector out;
  if (!selector.IsDefined() || selector.IsNull()) return out;
  auto bad = [&](absl::string_view where, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(field, where, ": ", what));
  };
  if (!selector.IsMap()) return bad("", "not a label selector (a map)");
  const YAML::Node labels = At(selector, {"matchLabels"});
  if (labels.IsDefined() && !labels.IsNull()) {
    if (!labels.IsMap()) return bad(".matchLabels", "not a map");
    for (auto it = labels.begin(); it != labels.end(); ++it) {
      if (!IsString(it->first) || !IsString(it->second)) {
        return bad(".matchLabels", "keys and values must be strings");
      }
      OneOf(out.keys_[it->first.Scalar()], {it->second.Scalar()});
    }
  }
  const YAML::Node expressions = At(selector, {"matchExpressions"});
  if (expressions.IsDefined() && !expressions.IsNull()) {
    if (!expressions.IsSequence()) return bad(".matchExpressions", "not a list");
    for (size_t i = 0; i < expressions.size(); ++i) {
      const std::string at = absl::StrCat(".matchExpressions[", i, "]");
      const YAML::Node e = expressions[i];
      const YAML::Node key_node = At(e, {"key"});
      if (!IsString(key_node) || key_node.Scalar().empty()) return bad(at, "no key");
      const std::string op = Scalar(At(e, {"operator"}));
      std::set<std::string> values;
      const YAML::Node list = At(e, {"values"});
      if (list.IsDefined() && !list.IsNull()) {
        if (!list.IsSequence()) return bad(at, "values: not a list");
        for (const YAML::Node& v : list) {
          if (!IsString(v)) return bad(at, "values must be strings");
          values.insert(v.Scalar());
        }
      }
      const bool listed = op == "In" || op == "NotIn";
      if (!listed && op != "Exists" && op != "DoesNotExist") {
        return bad(at,
                   absl::StrCat("operator \"", op, "\" is not In, NotIn, Exists or DoesNotExist"));
      }
      if (listed == values.empty()) {
        return bad(at, absl::StrCat(op, listed ? " needs values" : " takes no values"));
      }
      Key& key = out.keys_[key_node.Scalar()];
      if (op == "In") {
        OneOf(key, values);
      } else if (op == "NotIn") {
        key.not_in.insert(values.begin(), values.end());
      } else if (op == "Exists") {
        key.present = true;
      } else {
        key.absent = true;
      }
    }
  }
  return out;
}

LabelSelector LabelSelector::Parse(absl::string_view terms) {
  LabelSelector out;
  for (absl::string_view term : absl::StrSplit(terms, ',', absl::SkipEmpty())) {
    term = absl::StripAsciiWhitespace(term);
    if (absl::ConsumePrefix(&term, "!")) {
      out.keys_[std::string(term)].absent = true;
    } else if (const size_t eq = term.find('='); eq != absl::string_view::npos) {
      Key& key = out.keys_[std::string(term.substr(0, eq))];
      key.present = true;
      key.in = std::set<std::string>{std::string(term.substr(eq + 1))};
    } else {
      out.keys_[std::string(term)].present = true;
    }
  }
  return out;
}

void LabelSelector::OneOf(Key& key, const std::set<std::string>& values) {
  key.present = true;
  if (!key.in.has_value()) {
    key.in = values;
    return;
  }
  std::set<std::string> both;
  std::set_intersection(key.in->begin(), key.in->end(), values.begin(), values.end(),
                        std::inserter(both, both.end()));
  key.in = std::move(both);
}

bool LabelSelector::Satisfiable(const Key& key) {
  if (key.absent && key.present) return false;
  if (!key.in.has_value()) return true;
  return std::any_of(key.in->begin(), key.in->end(),
                     [&](const std::string& v) { return key.not_in.count(v) == 0; });
}

bool LabelSelector::Matches(const std::map<std::string, std::string>& labels) const {
  for (const auto& [name, key] : keys_) {
    auto it = labels.find(name);
    if (it == labels.end()) {
      if (key.present) return false;
      continue;
    }
    if (key.absent || key.not_in.count(it->second) > 0) return false;
    if (key.in.has_value() && key.in->count(it->second) == 0) return false;
  }
  return true;
}

std::optional<LabelSelector> LabelSelector::Both(const LabelSelector& a, const LabelSelector& b) {
  LabelSelector out = a;
  for (const auto& [name, theirs] : b.keys_) {
    Key& key = out.keys_[name];
    key.present = key.present || theirs.present;
    key.absent = key.absent || theirs.absent;
    key.not_in.insert(theirs.not_in.begin(), theirs.not_in.end());
    if (theirs.in.has_value()) OneOf(key, *theirs.in);
  }
  for (auto& [name, key] : out.keys_) {
    if (!Satisfiable(key)) return std::nullopt;
    // Say it simply: the values In allows that NotIn does not refuse.
    if (key.in.has_value()) {
      for (const std::string& v : key.not_in) key.in->erase(v);
      key.not_in.clear();
    }
  }
  return out;
}

std::string LabelSelector::ToString() const {
  std::vector<std::string> terms;
  for (const auto& [name, key] : keys_) {
    if (key.absent) {
      terms.push_back(absl::StrCat("!", name));
    } else if (key.in.has_value()) {
      terms.push_back(key.in->size() == 1 ? absl::StrCat(name, "=", *key.in->begin())
                                          : absl::StrCat(name, " in ", Values(*key.in)));
    } else if (key.present) {
      terms.push_back(name);
    }
    if (!key.absent && !key.in.has_value() && !key.not_in.empty()) {
      terms.push_back(absl::StrCat(name, " notin ", Values(key.not_in)));
    }
  }
  return terms.empty() ? "everything" : absl::StrJoin(terms, ",");
}

absl::StatusOr<std::vector<InjectionWebhook>> InjectionWebhooks(const YAML::Node& configuration) {
  std::vector<InjectionWebhook> out;
  if (!IsMeshlets(configuration)) return out;
  const std::string name = Scalar(At(configuration, {"metadata", "name"}));
  const YAML::Node hooks = At(configuration, {"webhooks"});
  for (size_t i = 0; hooks.IsSequence() && i < hooks.size(); ++i) {
    const YAML::Node hook = hooks[i];
    if (!SentPods(hook)) continue;
    InjectionWebhook w;
    w.configuration = name;
    w.name = Scalar(At(hook, {"name"}));
    const std::string where =
        absl::StrCat("MutatingWebhookConfiguration ", name, ": webhooks[", i, "]");
    absl::StatusOr<LabelSelector> namespaces = LabelSelector::Read(
        At(hook, {"namespaceSelector"}), absl::StrCat(where, ".namespaceSelector"));
    if (!namespaces.ok()) return namespaces.status();
    absl::StatusOr<LabelSelector> pods =
        LabelSelector::Read(At(hook, {"objectSelector"}), absl::StrCat(where, ".objectSelector"));
    if (!pods.ok()) return pods.status();
    // Deactivated (tag.h): it requires a label no namespace has.
    bool deactivated = false;
    for (const YAML::Node& e : At(hook, {"namespaceSelector", "matchExpressions"})) {
      deactivated = deactivated || Scalar(At(e, {"key"})) == kDeactivatedLabel;
    }
    if (deactivated) continue;
    w.namespaces = *std::move(namespaces);
    w.pods = *std::move(pods);
    out.push_back(std::move(w));
  }
  return out;
}

std::vector<WebhookOverlap> Overlaps(const std::vector<InjectionWebhook>& ours,
                                     const std::vector<InjectionWebhook>& theirs,
                                     const LabelSelector& pods_only) {
  std::vector<WebhookOverlap> out;
  for (const InjectionWebhook& a : ours) {
    for (const InjectionWebhook& b : theirs) {
      if (a.configuration == b.configuration) continue;
      std::optional<LabelSelector> namespaces = LabelSelector::Both(a.namespaces, b.namespaces);
      if (!namespaces.has_value()) continue;
      std::optional<LabelSelector> pods = LabelSelector::Both(a.pods, b.pods);
      if (pods.has_value()) pods = LabelSelector::Both(*pods, pods_only);
      if (!pods.has_value()) continue;
      out.push_back({a, b, *std::move(namespaces), *std::move(pods)});
    }
  }
  return out;
}

std::vector<WebhookOverlap> OverlapsAmong(const std::vector<InjectionWebhook>& hooks,
                                          const LabelSelector& pods_only) {
  std::vector<WebhookOverlap> out;
  for (size_t i = 0; i < hooks.size(); ++i) {
    std::vector<WebhookOverlap> found = Overlaps(
        {hooks[i]}, std::vector<InjectionWebhook>(hooks.begin() + i + 1, hooks.end()), pods_only);
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

absl::StatusOr<std::vector<NamespaceLabels>> ReadNamespaces(const YAML::Node& list) {
  const YAML::Node items = At(list, {"items"});
  if (!list.IsMap() || (items.IsDefined() && !items.IsNull() && !items.IsSequence())) {
    return absl::InvalidArgumentError("the namespace list is not a NamespaceList");
  }
  std::vector<NamespaceLabels> out;
  for (size_t i = 0; items.IsSequence() && i < items.size(); ++i) {
    NamespaceLabels ns;
    ns.name = Scalar(At(items[i], {"metadata", "name"}));
    const YAML::Node labels = At(items[i], {"metadata", "labels"});
    for (auto it = labels.begin(); labels.IsMap() && it != labels.end(); ++it) {
      ns.labels[Scalar(it->first)] = Scalar(it->second);
    }
    ns.labels.emplace(kNamespaceNameLabel, ns.name);
    out.push_back(std::move(ns));
  }
  return out;
}

std::string DescribeOverlaps(const std::vector<WebhookOverlap>& overlaps,
                             const std::vector<NamespaceLabels>& namespaces) {
  std::string out;
  for (const WebhookOverlap& o : overlaps) {
    std::vector<std::string> now;
    for (const NamespaceLabels& ns : namespaces) {
      if (o.namespaces.Matches(ns.labels)) now.push_back(ns.name);
    }
    absl::StrAppend(
        &out, "  MutatingWebhookConfiguration ", o.first.configuration, " (webhook ", o.first.name,
        ") and ", o.second.configuration, " (webhook ", o.second.name, ") both select pods (",
        o.pods.ToString(), ") in namespaces (", o.namespaces.ToString(),
        "): ", now.empty() ? "none yet" : absl::StrCat("now ", absl::StrJoin(now, ", ")), "\n");
  }
  return out;
}

absl::StatusOr<std::vector<InjectionWebhook>> ClusterInjectionWebhooks(
    const KubernetesClient& client) {
  absl::StatusOr<std::string> body = client.Fetch("GET", WebhookConfigurationPath());
  if (!body.ok()) return body.status();
  YAML::Node list;
  try {
    list = YAML::Load(*body);
  } catch (const YAML::Exception&) {
  }
  const YAML::Node items = At(list, {"items"});
  if (!list.IsMap() || (items.IsDefined() && !items.IsNull() && !items.IsSequence())) {
    return absl::FailedPreconditionError(
        "the MutatingWebhookConfiguration list is not a MutatingWebhookConfigurationList");
  }
  std::vector<InjectionWebhook> out;
  for (size_t i = 0; items.IsSequence() && i < items.size(); ++i) {
    absl::StatusOr<std::vector<InjectionWebhook>> hooks = InjectionWebhooks(items[i]);
    if (!hooks.ok()) return absl::FailedPreconditionError(hooks.status().message());
    out.insert(out.end(), hooks->begin(), hooks->end());
  }
  return out;
}

absl::StatusOr<std::vector<NamespaceLabels>> ClusterNamespaces(const KubernetesClient& client) {
  absl::StatusOr<std::string> body = client.Fetch("GET", "/api/v1/namespaces");
  if (!body.ok()) return body.status();
  YAML::Node list;
  try {
    list = YAML::Load(*body);
  } catch (const YAML::Exception&) {
  }
  absl::StatusOr<std::vector<NamespaceLabels>> namespaces = ReadNamespaces(list);
  if (!namespaces.ok()) return absl::FailedPreconditionError(namespaces.status().message());
  return namespaces;
}

}  // namespace meshlet::controlplane::cli
