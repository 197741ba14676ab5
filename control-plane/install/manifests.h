#pragma once

// The manifests of k8s/ compiled into the binary (bazel/embed_files.sh): {"base/deployment.yaml",
// its text}, ..., ending with {nullptr, nullptr}. install.cc reads them.

namespace meshlet::controlplane::install {

struct EmbeddedFile {
  const char* name;  // the path below k8s/
  const char* content;
};
extern const EmbeddedFile kManifests[];

}  // namespace meshlet::controlplane::install
