#pragma once

// Editing a node's CNI network configuration for the node agent (docs/adr/0094, "Amended: the
// node agent"): which file of the conf dir the runtime uses, meshlet-cni appended to its plugin
// list, and taken out again. Edits are splices of the text: every byte outside meshlet-cni's
// entry stays as it was, so the primary plugin is not disturbed and removing the entry gives back
// the bytes it was inserted into.
//
// Pure functions over strings; no files, no threads.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshlet::cni {

// The file a runtime uses (libcni's rule, as kubelet, containerd and CRI-O apply it): the first
// name in byte order ending in .conf, .conflist or .json. Hidden and other names are ignored.
std::optional<std::string> SelectConfFile(std::vector<std::string> names);

struct EditedConf {
  std::string name;     // the file to write: `name`, or NAME.conflist for a converted .conf/.json
  std::string content;  // the whole file
};

// `content` of the file `name` with `plugin` (one JSON object, as written) as the last entry of
// its plugin list. A meshlet-cni entry already in the list is taken out first, so inserting twice
// gives the same bytes. A single network configuration (.conf or .json with a "type") becomes a
// conflist named like it with the extension .conflist: {"cniVersion", "name", "plugins": [the
// original object, byte for byte, then `plugin`]}. InvalidArgument (naming the file and what is
// wrong) when `content` is not JSON or not a network configuration, or `plugin` not an object.
absl::StatusOr<EditedConf> InsertPlugin(absl::string_view name, absl::string_view content,
                                        absl::string_view plugin);

// `content` (a conflist) with every meshlet-cni entry of its plugin list taken out: the entry and
// the separator InsertPlugin() wrote before it, so that RemovePlugin(InsertPlugin(x)) == x for a
// conflist x. Unchanged when it has none. InvalidArgument as for InsertPlugin().
absl::StatusOr<std::string> RemovePlugin(absl::string_view name, absl::string_view content);

// How meshlet-cni appears in `content`: not at all, last (the chain runs it after the primary
// plugin), or elsewhere. InvalidArgument as for InsertPlugin().
enum class PluginPlace { kAbsent, kLast, kNotLast };
absl::StatusOr<PluginPlace> FindPlugin(absl::string_view name, absl::string_view content);

}  // namespace meshlet::cni
