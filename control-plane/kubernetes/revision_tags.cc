#include "control-plane/kubernetes/revision_tags.h"

#include <yaml-cpp/yaml.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "control-plane/inject/revision.h"
#include "control-plane/kubernetes/yaml_fields.h"

namespace meshlet::controlplane::kubernetes {

RevisionTags::RevisionTags(event::Loop& loop, KubernetesApi& api, StatsRegistry& stats,
                           RevisionTagsOptions options)
    : loop_(loop), api_(api), options_(std::move(options)), timer_(loop, [this] { List(); }) {
  for (auto [result, counter] : {std::pair{"ok", &ok_}, {"failed", &failed_}}) {
    absl::StatusOr<Counter> c = stats.shared_shard().RegisterCounter(
        "meshlet_cp_revision_tag_lists_total",
        "Lists of the revision tags (MutatingWebhookConfigurations labelled meshlet.io/tag), by "
        "result: ok, failed.",
        {{"result", result}});
    if (c.ok()) *counter = *c;
  }
}

RevisionTags::~RevisionTags() { *alive_ = false; }

void RevisionTags::Start() { timer_.Enable(Duration::zero()); }

void RevisionTags::OnChange(std::function<void()> on_change) {
  on_change_.push_back(std::move(on_change));
}

std::string RevisionTags::DefaultRevision() const {
  auto it = tags_.find(inject::kDefaultTag);
  return it == tags_.end() ? std::string() : it->second;
}

std::vector<std::string> RevisionTags::TagsOf(const std::string& revision) const {
  std::vector<std::string> out;
  for (const auto& [tag, to] : tags_) {
    if (to == revision) out.push_back(tag);
  }
  return out;
}

void RevisionTags::List() {
  api_.Call(
      {.method = "GET",
       .path = absl::StrCat(
           "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations?labelSelector=",
           inject::kTagLabel),
       .forbidden_hint = "the control plane needs list on mutatingwebhookconfigurations "
                         "(k8s/base/rbac.yaml) to learn the revision tags"},
      [this, alive = alive_](ApiResult result) {
        if (*alive) OnList(std::move(result));
      });
}

void RevisionTags::OnList(ApiResult result) {
  timer_.Enable(options_.interval);
  std::string failure;
  std::map<std::string, std::string> tags;
  if (!result.body.ok()) {
    failure = std::string(result.body.status().message());
  } else {
    try {
      const YAML::Node list = YAML::Load(*result.body);
      const YAML::Node items = NodeAt(list, "items");
      for (size_t i = 0; items.IsSequence() && i < items.size(); ++i) {
        const YAML::Node labels = NodeAt(NodeAt(items[i], "metadata"), "labels");
        const std::string tag = ScalarAt(labels, inject::kTagLabel);
        absl::StatusOr<std::string> revision =
            inject::ParseRevision(ScalarAt(labels, inject::kRevisionLabel));
        // A configuration without a valid revision label points nowhere we know.
        if (!inject::ParseTag(tag).ok() || !revision.ok() ||
            ScalarAt(labels, inject::kRevisionLabel).empty()) {
          continue;
        }
        tags[tag] = *std::move(revision);
      }
    } catch (const YAML::Exception& e) {
      failure = absl::StrCat("the list is not JSON: ", e.what());
    }
  }
  if (!failure.empty()) {
    failed_.Inc();
    if (failure != last_failure_) {
      LOG(WARN) << "revision tags: " << failure << "; keeping what was known";
      last_failure_ = failure;
    }
    return;
  }
  ok_.Inc();
  if (!last_failure_.empty()) LOG(INFO) << "revision tags: listed again";
  last_failure_.clear();
  const bool changed = !known_ || tags != tags_;
  known_ = true;
  if (!changed) return;
  tags_ = std::move(tags);
  std::string text;
  for (const auto& [tag, revision] : tags_) {
    absl::StrAppend(&text, text.empty() ? "" : ", ", tag, " -> ",
                    inject::RevisionDisplayName(revision));
  }
  LOG(INFO) << "revision tags: " << (text.empty() ? "none" : text);
  for (const auto& f : on_change_) f();
}

}  // namespace meshlet::controlplane::kubernetes
