#pragma once

// Hand-made ClientHello records for tests and the fuzz target (client_hello.h): a TLS 1.3-shaped
// hello around the given extensions block, and a server_name extension with any bytes as name.

#include <string>

namespace meshlet::tls::testing {

inline std::string Length16(size_t n) {
  return std::string{static_cast<char>((n >> 8) & 0xff), static_cast<char>(n & 0xff)};
}

// One handshake record holding a ClientHello whose extensions are `extensions`.
inline std::string HandMadeClientHello(const std::string& extensions) {
  std::string body = std::string("\x03\x03", 2) + std::string(32, 'r') + std::string(1, '\0') +
                     std::string("\x00\x02\x13\x01", 4) + std::string("\x01\x00", 2) +
                     Length16(extensions.size()) + extensions;
  std::string message = std::string(1, '\x01') +
                        std::string(1, static_cast<char>(body.size() >> 16)) +
                        Length16(body.size()) + body;
  return std::string("\x16\x03\x01", 3) + Length16(message.size()) + message;
}

// A server_name extension naming `name` (host_name type).
inline std::string SniExtension(const std::string& name) {
  const std::string entry = std::string(1, '\0') + Length16(name.size()) + name;
  const std::string list = Length16(entry.size()) + entry;
  return std::string("\x00\x00", 2) + Length16(list.size()) + list;
}

}  // namespace meshlet::tls::testing
