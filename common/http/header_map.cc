#include "common/http/header_map.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/logging.h"
#include "common/http/ascii_case.h"

namespace meshlet::http {
namespace {

using ascii_case::CopyLowercase;

// Calls fn(token) for each non-empty element of a comma-separated list, OWS trimmed.
template <typename Fn>
void ForEachListElement(absl::string_view list, Fn fn) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    absl::string_view element = list.substr(0, comma);
    list = comma == absl::string_view::npos ? absl::string_view() : list.substr(comma + 1);
    element = absl::StripAsciiWhitespace(element);
    if (!element.empty()) fn(element);
  }
}

}  // namespace

bool HeaderMap::IsHopByHopName(absl::string_view name) {
  switch (name.size()) {
    case 2:
      return name == "te";
    case 7:
      return name == "upgrade";
    case 10:
      return name == "connection" || name == "keep-alive";
    case 16:
      return name == "proxy-connection";
    case 17:
      return name == "transfer-encoding";
    default:
      return false;
  }
}

HeaderMap::HeaderMap(
    std::initializer_list<std::pair<absl::string_view, absl::string_view>> headers) {
  for (const auto& [name, value] : headers) Add(name, value);
}

void HeaderMap::Add(absl::string_view name, absl::string_view value) {
  // Arguments may view this map's own arena, which the growth below can reallocate.
  if (InArena(name) || InArena(value)) [[unlikely]] {
    AddCopies(name, value);
    return;
  }
  const Entry e = NewEntry(name.size(), value.size(), /*trusted=*/false);
  // One growth for both; the name is lowercased on its way in.
  char* const stored = arena_.Extend(name.size() + value.size());
  CopyLowercase(stored, name.data(), name.size());
  if (!value.empty()) std::memcpy(stored + name.size(), value.data(), value.size());
  if (IsPseudoName(name)) {
    // Known by its stored, lowercased name; it goes after the other pseudo-headers, so none of
    // theirs moves.
    const KnownPseudo known = KnownPseudoOf(absl::string_view(stored, name.size()));
    if (known != kKnown && pseudo_at_[known] == kAbsent) {
      pseudo_at_[known] = static_cast<uint32_t>(num_pseudo_);
    }
    entries_.insert(entries_.begin() + num_pseudo_, e);
    ++num_pseudo_;
  } else {
    name_filter_ |= NameFilterBit(name);
    entries_.push_back(e);
  }
}

void HeaderMap::AddCopies(absl::string_view name, absl::string_view value, bool trusted) {
  const std::string name_copy(name), value_copy(value);
  if (trusted) {
    AddTrusted(name_copy, value_copy);
  } else {
    Add(name_copy, value_copy);
  }
}

void HeaderMap::Set(absl::string_view name, absl::string_view value) {
  if (InArena(name) || InArena(value)) {
    std::string name_copy(name), value_copy(value);
    Set(name_copy, value_copy);
    return;
  }
  size_t first = Find(name, 0);
  if (first == kNotFound) {
    Add(name, value);
    return;
  }
  Replace(first, name, value);
}

void HeaderMap::Replace(size_t first, absl::string_view name, absl::string_view value) {
  // Remove later duplicates first so `first` stays valid.
  for (size_t i = Find(name, first + 1); i != kNotFound; i = Find(name, i)) EraseAt(i);
  Entry& e = entries_[first];
  CHECK(arena_.size() + value.size() < UINT32_MAX) << "header map overflow";
  dead_bytes_ += e.value_size;
  byte_size_ = byte_size_ - e.value_size + value.size();
  e.value_offset = static_cast<uint32_t>(arena_.size());
  e.value_size = static_cast<uint32_t>(value.size());
  e.trusted = 0;
  arena_.append(value.data(), value.size());
  MaybeCompact();
}

void HeaderMap::SetTrusted(absl::string_view name, absl::string_view value) {
  const size_t first = Find(name, 0);
  if (first == kNotFound) {
    AddTrusted(name, value);
    return;
  }
  Replace(first, name, value);
  entries_[first].trusted = 1;
}

size_t HeaderMap::RemoveListed(absl::string_view name) {
  size_t removed = 0;
  for (size_t i = Find(name, 0); i != kNotFound; i = Find(name, i)) {
    EraseAt(i);
    ++removed;
  }
  if (removed > 0) MaybeCompact();
  return removed;
}

void HeaderMap::EraseAt(size_t index) {
  const Entry& e = entries_[index];
  byte_size_ -= e.name_size + e.value_size;
  dead_bytes_ += e.name_size + e.value_size;
  const bool pseudo = index < num_pseudo_;
  if (pseudo) --num_pseudo_;
  entries_.erase(entries_.begin() + index);
  if (pseudo) IndexPseudo();
}

void HeaderMap::Clear() {
  // erase() rather than clear(): InlinedVector::clear() frees its heap storage.
  entries_.erase(entries_.begin(), entries_.end());
  arena_.clear();
  num_pseudo_ = 0;
  pseudo_at_.fill(kAbsent);
  name_filter_ = 0;
  byte_size_ = 0;
  dead_bytes_ = 0;
}

void HeaderMap::IndexPseudo() {
  pseudo_at_.fill(kAbsent);
  for (size_t i = num_pseudo_; i-- > 0;) {  // backwards: the first of a name wins
    const KnownPseudo known = KnownPseudoOf(View(entries_[i]).name);
    if (known != kKnown) pseudo_at_[known] = static_cast<uint32_t>(i);
  }
}

void HeaderMap::MaybeCompact() {
  // Amortised: compact only when dead bytes exceed the live ones (and are worth a copy).
  if (dead_bytes_ < 256 || dead_bytes_ < byte_size_) return;
  Arena fresh;
  fresh.reserve(byte_size_);
  for (Entry& e : entries_) {
    uint32_t name_offset = static_cast<uint32_t>(fresh.size());
    fresh.append(arena_.data() + e.name_offset, e.name_size);
    uint32_t value_offset = static_cast<uint32_t>(fresh.size());
    fresh.append(arena_.data() + e.value_offset, e.value_size);
    e.name_offset = name_offset;
    e.value_offset = value_offset;
  }
  arena_.swap(fresh);
  dead_bytes_ = 0;
}

size_t HeaderMap::FindInList(absl::string_view name, size_t from) const {
  // Pseudo-headers live in [0, num_pseudo_); regular names never start with ':'.
  size_t begin = from;
  size_t end = entries_.size();
  if (IsPseudoName(name)) {
    end = std::min(end, num_pseudo_);
  } else {
    begin = std::max(begin, num_pseudo_);
  }
  // Raw pointers: InlinedVector's operator[] checks where its storage is on every access.
  const Entry* entries = entries_.data();
  const char* arena = arena_.data();
  if (name.size() > UINT32_MAX) return kNotFound;
  const uint32_t size = static_cast<uint32_t>(name.size());
  for (size_t i = begin; i < end; ++i) {
    const Entry& e = entries[i];
    if (e.name_size == size && ascii_case::LowercaseEquals(arena + e.name_offset, name)) return i;
  }
  return kNotFound;
}

absl::InlinedVector<absl::string_view, 4> HeaderMap::GetAll(absl::string_view name) const {
  absl::InlinedVector<absl::string_view, 4> values;
  for (size_t i = Find(name, 0); i != kNotFound; i = Find(name, i + 1)) {
    values.push_back(View(entries_[i]).value);
  }
  return values;
}

std::string HeaderMap::GetJoined(absl::string_view name) const {
  std::string joined;
  for (size_t i = Find(name, 0); i != kNotFound; i = Find(name, i + 1)) {
    if (!joined.empty()) joined.append(", ");
    absl::StrAppend(&joined, View(entries_[i]).value);
  }
  return joined;
}

size_t HeaderMap::Count(absl::string_view name) const {
  size_t n = 0;
  for (size_t i = Find(name, 0); i != kNotFound; i = Find(name, i + 1)) ++n;
  return n;
}

void HeaderMap::RemoveHopByHopHeaders() {
  // Most messages carry none of these: the name filter settles it for most, one pass over the
  // names for the rest.
  static constexpr uint64_t kHopByHopBits =
      NameFilterBit("connection") | NameFilterBit("keep-alive") |
      NameFilterBit("proxy-connection") | NameFilterBit("transfer-encoding") |
      NameFilterBit("upgrade") | NameFilterBit("te");
  if (!MayHaveAny(kHopByHopBits)) return;
  bool any = false;
  for (size_t i = num_pseudo_; i < entries_.size() && !any; ++i) any = IsHopByHopName(at(i).name);
  if (!any) return;
  // What Connection lists and whether TE asks for trailers, read before anything moves.
  // Connection rarely names more than a couple of headers; the tokens view the arena, which
  // nothing grows until the last pass is over.
  absl::InlinedVector<absl::string_view, 4> listed;
  bool te_trailers = false;
  for (size_t i = num_pseudo_; i < entries_.size(); ++i) {
    const HeaderView h = at(i);
    if (h.name == "connection") {
      ForEachListElement(h.value, [&](absl::string_view token) {
        // Never let Connection strip pseudo-headers or TE (handled below).
        if (IsPseudoName(token) || absl::EqualsIgnoreCase(token, "te")) return;
        listed.push_back(token);
      });
    } else if (h.name == "te") {
      ForEachListElement(h.value, [&](absl::string_view element) {
        // An element may carry parameters ("trailers;q=1" is not valid, but be lenient here).
        absl::string_view coding = absl::StripAsciiWhitespace(element.substr(0, element.find(';')));
        if (absl::EqualsIgnoreCase(coding, "trailers")) te_trailers = true;
      });
    }
  }
  // One pass keeps the rest in order; TE stays, as exactly "trailers", where it first appeared.
  size_t te_kept = kNotFound;
  size_t out = num_pseudo_;
  for (size_t i = num_pseudo_; i < entries_.size(); ++i) {
    const Entry e = entries_[i];
    const absl::string_view name = View(e).name;
    if (name == "te" && te_trailers && te_kept == kNotFound) {
      te_kept = out;
      entries_[out++] = e;
      continue;
    }
    const bool listed_name = std::any_of(listed.begin(), listed.end(), [&](absl::string_view t) {
      // Stored names are lowercase; tokens may not be.
      return ascii_case::EqualsLowercase(t, name);
    });
    if (IsHopByHopName(name) || listed_name) {
      byte_size_ -= e.name_size + e.value_size;
      dead_bytes_ += e.name_size + e.value_size;
      continue;
    }
    entries_[out++] = e;
  }
  entries_.erase(entries_.begin() + out, entries_.end());
  if (te_kept != kNotFound) {
    Entry& e = entries_[te_kept];
    byte_size_ -= e.value_size;
    dead_bytes_ += e.value_size;
    constexpr absl::string_view kTrailers = "trailers";
    e.value_offset = static_cast<uint32_t>(arena_.size());
    e.value_size = static_cast<uint32_t>(kTrailers.size());
    arena_.append(kTrailers.data(), kTrailers.size());
    byte_size_ += kTrailers.size();
  }
  MaybeCompact();
}

void HeaderMap::Arena::Reallocate(size_t capacity) {
  // The allocator serves whole blocks of 256 bytes to 4 KiB: use all of the block.
  size_t block = 256;
  while (block < capacity && block < 4096) block *= 2;
  capacity = std::max(capacity, block);
  char* const fresh = RecyclingByteAllocator<char>().allocate(capacity);
  if (size_ > 0) std::memcpy(fresh, data_, size_);
  Release();
  data_ = fresh;
  capacity_ = capacity;
}

void HeaderMap::Arena::Release() {
  if (data_ != nullptr) RecyclingByteAllocator<char>().deallocate(data_, capacity_);
  data_ = nullptr;
  capacity_ = 0;
}

bool operator==(const HeaderMap& a, const HeaderMap& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a.at(i) == b.at(i))) return false;
  }
  return true;
}

std::string HeaderMap::DebugString() const {
  std::string out;
  for (HeaderView h : *this) absl::StrAppend(&out, h.name, ": ", h.value, "\n");
  return out;
}

}  // namespace meshlet::http
