#include "sidecar/config/held_bytes.h"

#include <zlib.h>

#include <cstring>
#include <limits>

#include "common/base/logging.h"

namespace meshlet::sidecar::config {
namespace {

// A 4 KiB window (raw deflate, no header): a held resource is a few KiB at most, and the state
// per thread is about 40 KB instead of the default's 270 KB.
constexpr int kWindowBits = 12;
constexpr int kMemLevel = 5;
// A buffer of this thread's kept between uses up to this size, released above it (a rare large
// resource does not keep its size for the thread's life).
constexpr size_t kKeptScratch = 256 * 1024;

// The start of every dictionary, before the resource's name: what the resources of a mesh spell
// over and over (cluster names, service hosts, workload identities, endpoint labels). Held bytes
// live in memory only, so it may change between releases; never within one.
constexpr absl::string_view kCommonText =
    "spiffe://cluster.local/ns/default/sa/appversion.svc.cluster.localoutbound|80||";

// The dictionary for a resource named `name`, in `scratch` (kept by the thread: no allocation
// once it has grown to a name's size).
absl::string_view Dictionary(absl::string_view name, std::string& scratch) {
  scratch.assign(kCommonText.data(), kCommonText.size());
  scratch.append(name.data(), name.size());
  return scratch;
}

class Deflater {
 public:
  Deflater() {
    CHECK(deflateInit2(&stream_, Z_BEST_SPEED, Z_DEFLATED, -kWindowBits, kMemLevel,
                       Z_DEFAULT_STRATEGY) == Z_OK);
  }
  ~Deflater() { deflateEnd(&stream_); }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  // `in` compressed into `scratch_`, from the dictionary of `name`; its size, or 0 when it does
  // not get smaller.
  size_t Compress(absl::string_view in, absl::string_view name) {
    CHECK(deflateReset(&stream_) == Z_OK);
    if (in.empty()) return 0;
    const absl::string_view dictionary = Dictionary(name, dictionary_);
    CHECK(deflateSetDictionary(&stream_, reinterpret_cast<const Bytef*>(dictionary.data()),
                               static_cast<uInt>(dictionary.size())) == Z_OK);
    if (scratch_.size() < in.size()) scratch_.resize(in.size());
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    stream_.avail_in = static_cast<uInt>(in.size());
    // Smaller or nothing: the output may not reach the input's size.
    stream_.next_out = reinterpret_cast<Bytef*>(scratch_.data());
    stream_.avail_out = static_cast<uInt>(in.size() - 1);
    const int status = deflate(&stream_, Z_FINISH);
    return status == Z_STREAM_END ? in.size() - 1 - stream_.avail_out : 0;
  }
  const char* output() const { return scratch_.data(); }
  void Trim() {
    if (scratch_.capacity() > kKeptScratch) std::string().swap(scratch_);
  }

 private:
  z_stream stream_{};
  std::string scratch_;
  std::string dictionary_;
};

class Inflater {
 public:
  Inflater() { CHECK(inflateInit2(&stream_, -kWindowBits) == Z_OK); }
  ~Inflater() { inflateEnd(&stream_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Expands `in`, compressed from the dictionary of `name`, into `out`, which takes exactly
  // `size` bytes; false when it does not.
  bool Expand(absl::string_view in, absl::string_view name, char* out, size_t size) {
    CHECK(inflateReset(&stream_) == Z_OK);
    const absl::string_view dictionary = Dictionary(name, dictionary_);
    if (inflateSetDictionary(&stream_, reinterpret_cast<const Bytef*>(dictionary.data()),
                             static_cast<uInt>(dictionary.size())) != Z_OK) {
      return false;
    }
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    stream_.avail_in = static_cast<uInt>(in.size());
    stream_.next_out = reinterpret_cast<Bytef*>(out);
    stream_.avail_out = static_cast<uInt>(size);
    return inflate(&stream_, Z_FINISH) == Z_STREAM_END && stream_.avail_out == 0;
  }
  std::string& scratch() { return scratch_; }
  void Trim() {
    if (scratch_.capacity() > kKeptScratch) std::string().swap(scratch_);
  }

 private:
  z_stream stream_{};
  std::string scratch_;
  std::string dictionary_;
};

Deflater& ThreadDeflater() {
  thread_local Deflater deflater;
  return deflater;
}

Inflater& ThreadInflater() {
  thread_local Inflater inflater;
  return inflater;
}

}  // namespace

HeldBytes::HeldBytes(absl::string_view bytes, absl::string_view name) {
  if (bytes.empty()) return;
  CHECK(bytes.size() <= std::numeric_limits<uint32_t>::max()) << "a held resource of 4 GiB";
  Deflater& deflater = ThreadDeflater();
  const size_t compressed = deflater.Compress(bytes, name);
  const absl::string_view stored =
      compressed == 0 ? bytes : absl::string_view(deflater.output(), compressed);
  const Header header{.size = static_cast<uint32_t>(bytes.size()),
                      .stored = static_cast<uint32_t>(stored.size())};
  data_.reset(new char[sizeof(Header) + stored.size()]);
  std::memcpy(data_.get(), &header, sizeof(Header));
  std::memcpy(data_.get() + sizeof(Header), stored.data(), stored.size());
  deflater.Trim();
}

HeldBytes::Header HeldBytes::header() const {
  Header header;
  if (data_ != nullptr) std::memcpy(&header, data_.get(), sizeof(Header));
  return header;
}

void HeldBytes::ExpandTo(char* out, absl::string_view name) const {
  const Header h = header();
  if (h.stored == h.size) {
    std::memcpy(out, stored_data(), h.size);
    return;
  }
  // Compressed here, from bytes that expanded: failing now is memory gone bad, not input.
  CHECK(ThreadInflater().Expand(absl::string_view(stored_data(), h.stored), name, out, h.size))
      << "held bytes that do not expand";
}

std::string HeldBytes::Expand(absl::string_view name) const {
  std::string out(size(), '\0');
  if (!out.empty()) ExpandTo(out.data(), name);
  return out;
}

bool HeldBytes::ParseInto(google::protobuf::MessageLite& message, absl::string_view name) const {
  const Header h = header();
  if (data_ == nullptr) return message.ParseFromArray("", 0);
  if (!compressed()) return message.ParseFromArray(stored_data(), static_cast<int>(h.size));
  Inflater& inflater = ThreadInflater();
  std::string& scratch = inflater.scratch();
  if (scratch.size() < h.size) scratch.resize(h.size);
  ExpandTo(scratch.data(), name);
  const bool parsed = message.ParseFromArray(scratch.data(), static_cast<int>(h.size));
  inflater.Trim();
  return parsed;
}

}  // namespace meshlet::sidecar::config
