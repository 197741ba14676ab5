#pragma once

// Reading the files meshctl is given (context, token, policy documents).

#include <optional>
#include <string>

namespace meshlet::controlplane::cli {

// The whole content of `path`, or nullopt when it cannot be read.
std::optional<std::string> ReadFile(const std::string& path);

}  // namespace meshlet::controlplane::cli
