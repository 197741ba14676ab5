#pragma once

// HeldBytes: the bytes a resource was received as, kept compressed (raw deflate) in one
// allocation, for a resource the xDS client holds as its bytes (HeldMessage, translate.h) and
// reads again rarely: the translation parses it once per change, config dumps and the saved
// configuration copy it. A load assignment repeats its names, labels and identities per endpoint
// and compresses about sixfold (ADR 0086, "Amended: held bytes are compressed"); bytes that do
// not get smaller are kept as they are. Compression starts from a dictionary of text resources
// likely repeat (names common to a mesh's resources, and the resource's own name, which its
// fields spell again), which the compressed bytes refer to instead of holding: a resource of a
// few hundred bytes, most of them names, is held in about two thirds of what it takes without
// ("Amended: held bytes refer to the resource's name").
//
// Immutable once made. Compressing and expanding use one deflate and one inflate state per
// thread (about 40 KB, made on first use and kept while the thread lives), so neither allocates
// beyond what it returns; any thread may read a HeldBytes, one at a time per object as for any
// const object.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/message_lite.h"

namespace meshlet::sidecar::config {

class HeldBytes {
 public:
  HeldBytes() = default;
  // Keeps `bytes`, compressed when that makes them smaller, with `name` (the resource's, not
  // kept) in the dictionary: reading them takes the same `name`. Resources are far below 4 GiB
  // (the xDS stream's message limit); larger bytes abort.
  HeldBytes(absl::string_view bytes, absl::string_view name);

  // The bytes as received; `name` as when made.
  std::string Expand(absl::string_view name) const;
  // Parses the bytes as received into `message`; false when they do not parse as one. `name` as
  // when made.
  bool ParseInto(google::protobuf::MessageLite& message, absl::string_view name) const;

  // The size of the bytes as received.
  size_t size() const { return header().size; }
  // What is kept for them: the allocation's payload (header included), 0 when empty.
  size_t held_size() const { return data_ == nullptr ? 0 : sizeof(Header) + header().stored; }
  // Whether they are kept compressed.
  bool compressed() const { return header().stored < header().size; }

 private:
  struct Header {
    uint32_t size = 0;    // the bytes as received
    uint32_t stored = 0;  // the bytes kept after the header: `size` when kept as they are
  };
  Header header() const;
  const char* stored_data() const { return data_.get() + sizeof(Header); }
  // Expands into `out` (exactly size() bytes).
  void ExpandTo(char* out, absl::string_view name) const;

  std::unique_ptr<char[]> data_;  // a Header, then `stored` bytes; null when empty
};

}  // namespace meshlet::sidecar::config
