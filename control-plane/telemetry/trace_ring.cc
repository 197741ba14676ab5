#include "control-plane/telemetry/trace_ring.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/file.h"
#include "common/base/status.h"

namespace meshlet::controlplane::telemetry {

namespace {

// The magic names the span encoding of the segment's records: "MLTR" segments (written before
// spans had a tracestate and flags) are still read back.
constexpr char kMagic[4] = {'M', 'L', 'T', '2'};
constexpr char kMagicV1[4] = {'M', 'L', 'T', 'R'};
constexpr size_t kHeaderBytes = sizeof(kMagic) + sizeof(uint64_t);
constexpr size_t kMaxRecordBytes = 64 << 20;

void PutU32(std::string* out, uint32_t v) { out->append(reinterpret_cast<const char*>(&v), 4); }
void PutU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), 8); }
void PutString(std::string* out, absl::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}

class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  bool U32(uint32_t* v) { return Raw(v, 4); }
  bool U64(uint64_t* v) { return Raw(v, 8); }
  bool String(std::string* s) {
    uint32_t n = 0;
    if (!U32(&n) || n > data_.size()) return false;
    s->assign(data_.data(), n);
    data_.remove_prefix(n);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  bool Raw(void* v, size_t n) {
    if (data_.size() < n) return false;
    std::memcpy(v, data_.data(), n);
    data_.remove_prefix(n);
    return true;
  }
  absl::string_view data_;
};

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

void EncodeSpans(const std::vector<SpanRecord>& spans, std::string* out, int format) {
  PutU32(out, static_cast<uint32_t>(spans.size()));
  for (const SpanRecord& s : spans) {
    for (const std::string* field :
         {&s.trace_id, &s.span_id, &s.parent_span_id, &s.name, &s.service, &s.status_message}) {
      PutString(out, *field);
    }
    if (format >= 2) {
      PutString(out, s.trace_state);
      PutU32(out, s.flags);
    }
    PutU32(out, static_cast<uint32_t>(s.kind));
    PutU64(out, static_cast<uint64_t>(s.start_unix_nanos));
    PutU64(out, static_cast<uint64_t>(s.end_unix_nanos));
    PutU32(out, s.error ? 1 : 0);
    PutU32(out, static_cast<uint32_t>(s.attributes.size()));
    for (const auto& [key, value] : s.attributes) {
      PutString(out, key);
      PutString(out, value);
    }
  }
}

bool DecodeSpans(absl::string_view payload, std::vector<SpanRecord>* out, int format) {
  Reader r(payload);
  uint32_t count = 0;
  if (!r.U32(&count)) return false;
  for (uint32_t i = 0; i < count; ++i) {
    SpanRecord s;
    for (std::string* field :
         {&s.trace_id, &s.span_id, &s.parent_span_id, &s.name, &s.service, &s.status_message}) {
      if (!r.String(field)) return false;
    }
    if (format >= 2 && (!r.String(&s.trace_state) || !r.U32(&s.flags))) return false;
    uint32_t kind = 0, error = 0, attributes = 0;
    uint64_t start = 0, end = 0;
    if (!r.U32(&kind) || kind > 5 || !r.U64(&start) || !r.U64(&end) || !r.U32(&error) ||
        !r.U32(&attributes)) {
      return false;
    }
    s.kind = static_cast<SpanKind>(kind);
    s.start_unix_nanos = static_cast<int64_t>(start);
    s.end_unix_nanos = static_cast<int64_t>(end);
    s.error = error != 0;
    for (uint32_t a = 0; a < attributes; ++a) {
      std::string key, value;
      if (!r.String(&key) || !r.String(&value)) return false;
      s.attributes.emplace_back(std::move(key), std::move(value));
    }
    out->push_back(std::move(s));
  }
  return r.done();
}

std::string TraceRing::SegmentPath(int index) const {
  return absl::StrCat(dir_, "/segment-", index, ".ring");
}

absl::StatusOr<std::unique_ptr<TraceRing>> TraceRing::Open(const std::string& dir, size_t max_bytes,
                                                           std::vector<SpanRecord>* replay) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Errno("cannot create", dir);
  std::unique_ptr<TraceRing> ring(
      new TraceRing(dir, std::max<size_t>(max_bytes / kSegments, 64 << 10)));
  // (generation, index, span format) of every readable segment, oldest first.
  std::vector<std::tuple<uint64_t, int, int>> segments;
  std::vector<std::string> contents(kSegments);
  for (int i = 0; i < kSegments; ++i) {
    absl::StatusOr<std::string> content = ReadFile(ring->SegmentPath(i));
    if (!content.ok()) continue;
    contents[i] = *std::move(content);
    if (contents[i].size() < kHeaderBytes) continue;
    int format = 0;
    if (std::memcmp(contents[i].data(), kMagic, sizeof(kMagic)) == 0) {
      format = kSpanFormat;
    } else if (std::memcmp(contents[i].data(), kMagicV1, sizeof(kMagicV1)) == 0) {
      format = 1;
    } else {
      continue;
    }
    uint64_t generation = 0;
    std::memcpy(&generation, contents[i].data() + sizeof(kMagic), sizeof(generation));
    segments.emplace_back(generation, i, format);
  }
  std::sort(segments.begin(), segments.end());
  for (const auto& [generation, index, format] : segments) {
    absl::string_view data(contents[index]);
    data.remove_prefix(kHeaderBytes);
    while (data.size() >= 4) {
      uint32_t n = 0;
      std::memcpy(&n, data.data(), 4);
      if (n > kMaxRecordBytes || data.size() - 4 < n) break;  // cut short
      if (!DecodeSpans(data.substr(4, n), replay, format)) break;
      data.remove_prefix(4 + n);
    }
  }
  // Continue in a fresh segment after the newest one.
  const uint64_t generation = segments.empty() ? 1 : std::get<0>(segments.back()) + 1;
  const int next = segments.empty() ? 0 : (std::get<1>(segments.back()) + 1) % kSegments;
  RETURN_IF_ERROR(ring->StartSegment(next, generation));
  return ring;
}

TraceRing::~TraceRing() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status TraceRing::StartSegment(int index, uint64_t generation) {
  if (fd_ >= 0) ::close(fd_);
  const std::string path = SegmentPath(index);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd_ < 0) return Errno("cannot open", path);
  current_ = index;
  generation_ = generation;
  std::string header(kMagic, sizeof(kMagic));
  PutU64(&header, generation);
  if (::write(fd_, header.data(), header.size()) != static_cast<ssize_t>(header.size())) {
    return Errno("cannot write", path);
  }
  current_bytes_ = header.size();
  return absl::OkStatus();
}

absl::Status TraceRing::Append(const std::vector<SpanRecord>& spans) {
  if (spans.empty()) return absl::OkStatus();
  std::string record;
  PutU32(&record, 0);
  EncodeSpans(spans, &record);
  const uint32_t n = static_cast<uint32_t>(record.size() - 4);
  std::memcpy(record.data(), &n, 4);
  if (current_bytes_ > kHeaderBytes && current_bytes_ + record.size() > segment_bytes_) {
    RETURN_IF_ERROR(StartSegment((current_ + 1) % kSegments, generation_ + 1));
  }
  if (fd_ < 0) return absl::FailedPreconditionError("trace ring: no open segment");
  if (::write(fd_, record.data(), record.size()) != static_cast<ssize_t>(record.size())) {
    return Errno("cannot write", SegmentPath(current_));
  }
  current_bytes_ += record.size();
  return absl::OkStatus();
}

}  // namespace meshlet::controlplane::telemetry
