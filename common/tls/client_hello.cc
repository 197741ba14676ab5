#include "common/tls/client_hello.h"

#include <cstdint>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/byte_reader.h"

namespace meshlet::tls {
namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHelloType = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordPayload = (1 << 14) + 2048;  // TLSCiphertext's bound (RFC 8446 5.2)
constexpr uint16_t kServerNameExtension = 0;
constexpr uint16_t kAlpnExtension = 16;
constexpr uint8_t kHostNameType = 0;

using Reader = ByteReader;  // over one handshake message

ClientHello Fail(ClientHello::Status status, std::string error) {
  ClientHello out;
  out.status = status;
  out.error = std::move(error);
  return out;
}

// A DNS name as RFC 6066 asks (no IP literals; no trailing dot), lower-cased into `out`.
bool ValidHostName(absl::string_view name, std::string& out) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  bool all_digits_or_dots = true;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;  // empty label, leading dot, ".."
      label = 0;
      continue;
    }
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
    if (!absl::ascii_isdigit(c)) all_digits_or_dots = false;
    if (++label > 63) return false;
  }
  if (label == 0) return false;          // a trailing dot
  if (all_digits_or_dots) return false;  // an IPv4 literal (IPv6 ones fail on ':')
  out = absl::AsciiStrToLower(name);
  return true;
}

}  // namespace

absl::string_view ClientHelloStatusName(ClientHello::Status status) {
  switch (status) {
    case ClientHello::Status::kNeedMoreBytes:
      return "need_more_bytes";
    case ClientHello::Status::kOk:
      return "ok";
    case ClientHello::Status::kNotTls:
      return "not_tls";
    case ClientHello::Status::kInvalid:
      return "invalid";
    case ClientHello::Status::kTooLarge:
      return "too_large";
  }
  return "unknown";
}

ClientHello ParseClientHello(absl::string_view bytes, const ClientHelloLimits& limits) {
  using Status = ClientHello::Status;
  // Reassemble the handshake message from as many handshake records as it takes.
  std::string message;
  size_t offset = 0;
  std::optional<size_t> wanted;  // the message's whole length once its header is in
  while (!wanted.has_value() || message.size() < *wanted) {
    if (bytes.size() - offset < kRecordHeader) {
      if (offset == 0 && !bytes.empty() && static_cast<uint8_t>(bytes[0]) != kHandshakeRecord) {
        return Fail(Status::kNotTls, "not a TLS handshake record");
      }
      return ClientHello{};
    }
    const absl::string_view header = bytes.substr(offset, kRecordHeader);
    if (static_cast<uint8_t>(header[0]) != kHandshakeRecord) {
      return offset == 0
                 ? Fail(Status::kNotTls, "not a TLS handshake record")
                 : Fail(Status::kInvalid, "a record other than handshake inside the ClientHello");
    }
    if (header[1] != 3) {
      return Fail(offset == 0 ? Status::kNotTls : Status::kInvalid,
                  "record version is not TLS (3.x)");
    }
    const size_t length =
        (size_t{static_cast<uint8_t>(header[3])} << 8) | static_cast<uint8_t>(header[4]);
    if (length == 0 || length > kMaxRecordPayload) {
      return Fail(Status::kInvalid, absl::StrCat("record length ", length, " out of range"));
    }
    if (bytes.size() - offset - kRecordHeader < length) return ClientHello{};
    message.append(bytes.data() + offset + kRecordHeader, length);
    offset += kRecordHeader + length;
    if (!wanted.has_value() && message.size() >= 4) {
      if (static_cast<uint8_t>(message[0]) != kClientHelloType) {
        return Fail(Status::kNotTls, "the handshake message is not a ClientHello");
      }
      wanted =
          4 + ((size_t{static_cast<uint8_t>(message[1])} << 16) |
               (size_t{static_cast<uint8_t>(message[2])} << 8) | static_cast<uint8_t>(message[3]));
      if (*wanted > limits.max_bytes) {
        return Fail(Status::kTooLarge,
                    absl::StrCat("ClientHello of ", *wanted, " bytes exceeds the limit of ",
                                 limits.max_bytes));
      }
    }
    if (!wanted.has_value() && message.size() > limits.max_bytes) {
      return Fail(Status::kTooLarge, "ClientHello exceeds the limit");
    }
  }
  if (message.size() != *wanted) {
    // Another handshake message after the ClientHello in the same flight: not a client's first.
    return Fail(Status::kInvalid, "bytes after the ClientHello in its last record");
  }

  ClientHello out;
  out.consumed = offset;
  Reader r(absl::string_view(message).substr(4));
  const std::optional<uint32_t> version = r.Int(2);
  if (!version.has_value() || !r.Bytes(32).has_value()) {
    return Fail(Status::kInvalid, "ClientHello too short");
  }
  const std::optional<absl::string_view> session_id = r.Vector(1);
  if (!session_id.has_value() || session_id->size() > 32) {
    return Fail(Status::kInvalid, "bad legacy_session_id");
  }
  const std::optional<absl::string_view> suites = r.Vector(2);
  if (!suites.has_value() || suites->empty() || suites->size() % 2 != 0) {
    return Fail(Status::kInvalid, "bad cipher_suites");
  }
  const std::optional<absl::string_view> compression = r.Vector(1);
  if (!compression.has_value() || compression->empty()) {
    return Fail(Status::kInvalid, "bad legacy_compression_methods");
  }
  if (r.empty()) {  // no extensions (SSL 3.0-era clients): no name, no ALPN
    out.status = Status::kOk;
    return out;
  }
  const std::optional<absl::string_view> extensions = r.Vector(2);
  if (!extensions.has_value() || !r.empty()) {
    return Fail(Status::kInvalid, "extensions do not fill the ClientHello");
  }
  Reader ext(*extensions);
  bool seen_name = false, seen_alpn = false;
  while (!ext.empty()) {
    const std::optional<uint32_t> type = ext.Int(2);
    const std::optional<absl::string_view> data = type.has_value() ? ext.Vector(2) : std::nullopt;
    if (!data.has_value()) return Fail(Status::kInvalid, "truncated extension");
    if (*type == kServerNameExtension) {
      if (seen_name) return Fail(Status::kInvalid, "server_name extension sent twice");
      seen_name = true;
      Reader names(*data);
      const std::optional<absl::string_view> list = names.Vector(2);
      if (!list.has_value() || !names.empty() || list->empty()) {
        return Fail(Status::kInvalid, "bad server_name list");
      }
      Reader entries(*list);
      while (!entries.empty()) {
        const std::optional<uint32_t> name_type = entries.Int(1);
        const std::optional<absl::string_view> name =
            name_type.has_value() ? entries.Vector(2) : std::nullopt;
        if (!name.has_value()) return Fail(Status::kInvalid, "truncated server_name entry");
        if (*name_type != kHostNameType) continue;  // unknown name types are skipped
        if (!out.server_name.empty()) {
          return Fail(Status::kInvalid, "more than one host_name in server_name");
        }
        if (!ValidHostName(*name, out.server_name)) {
          return Fail(Status::kInvalid, "server_name is not a DNS host name");
        }
      }
    } else if (*type == kAlpnExtension) {
      if (seen_alpn) return Fail(Status::kInvalid, "ALPN extension sent twice");
      seen_alpn = true;
      Reader protocols(*data);
      const std::optional<absl::string_view> list = protocols.Vector(2);
      if (!list.has_value() || !protocols.empty() || list->empty()) {
        return Fail(Status::kInvalid, "bad ALPN list");
      }
      Reader entries(*list);
      while (!entries.empty()) {
        const std::optional<absl::string_view> name = entries.Vector(1);
        if (!name.has_value() || name->empty()) return Fail(Status::kInvalid, "bad ALPN name");
        out.alpn.emplace_back(name->data(), name->size());
      }
    }
  }
  out.status = Status::kOk;
  return out;
}

}  // namespace meshlet::tls
