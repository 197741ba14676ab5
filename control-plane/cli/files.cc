#include "control-plane/cli/files.h"

#include <fstream>
#include <sstream>

namespace meshlet::controlplane::cli {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace meshlet::controlplane::cli
