// crdgen: prints meshlet's CustomResourceDefinitions (crds.h), the content of
// k8s/crds/crds.yaml.

#include <iostream>

#include "control-plane/policy/crds.h"

int main() {
  std::cout << meshlet::controlplane::policy::MeshletCrdsYaml();
  return 0;
}
