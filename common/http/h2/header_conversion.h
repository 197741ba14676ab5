#pragma once

// Header conversion between HeaderMap and nghttp2's field lists for the HTTP/2 codec (internal to
// common/http/h2; codec.h is the interface): the fields a HEADERS frame carries for a message,
// the fields HTTP/2 forbids, and the checks a request's header fields must pass before it
// reaches the user. Pure functions, but for VaryingNames, which a connection keeps.

#include <nghttp2/nghttp2.h>

#include <array>
#include <cstdint>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "common/http/header_map.h"

namespace meshlet::http::h2::codec_internal {

using NvArray = absl::InlinedVector<nghttp2_nv, 32>;

// A field for nghttp2, pointing into `name` and `value`: they must stay alive until the frame is
// submitted (nghttp2 copies them then).
inline nghttp2_nv MakeNv(absl::string_view name, absl::string_view value) {
  // The casts only satisfy nghttp2's non-const signature.
  return nghttp2_nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
                    const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

// Connection-specific fields are forbidden in HTTP/2 (RFC 9113 8.2.2); a message translated
// from HTTP/1 may still carry them. `name` is lowercase, as in a HeaderMap.
bool IsConnectionSpecific(absl::string_view name, absl::string_view value);

// Fields whose values differ in every message (request ids, trace and span ids, deadlines):
// b3, traceparent, x-b3-spanid, x-b3-traceid, x-b3-parentspanid, x-request-id, grpc-timeout,
// x-meshlet-deadline. `name` is lowercase.
inline constexpr int kVaryingNames = 8;
// Which of them `name` is (0 to kVaryingNames - 1), or -1 for any other name.
int VaryingNameIndex(absl::string_view name);
inline bool DifferentInEveryMessage(absl::string_view name) { return VaryingNameIndex(name) >= 0; }

// Per connection: which of those names to send with incremental indexing next. The values are
// never worth indexing, but a name that is in HPACK's dynamic table is sent as a reference to
// it (one byte) instead of a literal that the encoder Huffman-codes and the decoder decodes and
// copies for every message. So the first field of each name on a connection, and every
// kReindexEvery-th after it (in case other fields have pushed it out of the table since), is
// indexed; the others are never-indexed and reuse the indexed entry's name.
class VaryingNames {
 public:
  static constexpr uint32_t kReindexEvery = 256;
  // True when this field of name `index` goes into the dynamic table.
  bool IndexNext(int index) {
    uint32_t& countdown = countdown_[static_cast<size_t>(index)];
    if (countdown == 0) {
      countdown = kReindexEvery - 1;
      return true;
    }
    --countdown;
    return false;
  }

 private:
  std::array<uint32_t, kVaryingNames> countdown_{};
};

// Replaces `nv` with the field list for `headers` (pointing into `headers`), connection-specific
// fields left out. For requests, adds :scheme (`default_scheme`) when missing and turns Host into
// :authority when there is none. Fields DifferentInEveryMessage are marked not to be indexed
// (NGHTTP2_NV_FLAG_NO_INDEX) unless `varying` (the connection's; null: never) says one goes
// into the dynamic table for its name: entered in HPACK's dynamic table every time, each would
// only evict the fields that do repeat, and nghttp2's table keeps entries of one name in one
// hash chain, which it walks comparing names and values for every field it encodes.
void BuildNv(const HeaderMap& headers, bool request, absl::string_view default_scheme, NvArray& nv,
             VaryingNames* varying = nullptr);

// An interim response: :status 1xx other than 101.
bool Is1xx(const HeaderMap& headers);

// RFC 9113 8.3.1: a request whose :authority is not `uri-host [ ":" port ]` (userinfo included)
// is malformed. A Host field sent over HTTP/2 gets the same check, and more than one is refused
// as in HTTP/1 (RFC 9112 3.2), so neither reaches an HTTP/1 upstream. So is a :path with a byte
// a URI cannot hold (outside visible ASCII: raw UTF-8, controls, space) or a fragment ('#'), as
// the HTTP/1 parser refuses in a request-target. What is wrong, or empty.
absl::string_view MalformedRequest(const HeaderMap& headers);

}  // namespace meshlet::http::h2::codec_internal
