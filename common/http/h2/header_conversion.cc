#include "common/http/h2/header_conversion.h"

#include <optional>

#include "common/http/authority.h"

namespace meshlet::http::h2::codec_internal {

bool IsConnectionSpecific(absl::string_view name, absl::string_view value) {
  if (name == "te") return value != "trailers";
  return HeaderMap::IsHopByHopName(name);
}

int VaryingNameIndex(absl::string_view name) {
  switch (name.size()) {
    case 2:
      return name == "b3" ? 0 : -1;
    case 11:
      if (name == "traceparent") return 1;
      return name == "x-b3-spanid" ? 2 : -1;
    case 12:
      if (name == "x-request-id") return 3;
      if (name == "x-b3-traceid") return 4;
      return name == "grpc-timeout" ? 5 : -1;
    case 17:
      return name == "x-b3-parentspanid" ? 6 : -1;
    case 18:
      return name == "x-meshlet-deadline" ? 7 : -1;
    default:
      return -1;
  }
}

void BuildNv(const HeaderMap& headers, bool request, absl::string_view default_scheme, NvArray& nv,
             VaryingNames* varying) {
  nv.clear();
  bool need_scheme = request && !headers.Has(":scheme");
  std::optional<absl::string_view> host;
  if (request && !headers.Has(":authority")) host = headers.Get("host");
  bool pseudo_done = false;
  auto finish_pseudo = [&] {
    if (pseudo_done) return;
    pseudo_done = true;
    if (need_scheme) nv.push_back(MakeNv(":scheme", default_scheme));
    if (host.has_value()) nv.push_back(MakeNv(":authority", *host));
  };
  for (HeaderView h : headers) {
    bool pseudo = !h.name.empty() && h.name[0] == ':';
    if (!pseudo) {
      finish_pseudo();
      if (IsConnectionSpecific(h.name, h.value)) continue;
      if (host.has_value() && h.name == "host") continue;
    }
    nv.push_back(MakeNv(h.name, h.value));
    if (pseudo) continue;
    if (const int varying_index = VaryingNameIndex(h.name); varying_index >= 0) {
      if (varying == nullptr || !varying->IndexNext(varying_index)) {
        nv.back().flags = NGHTTP2_NV_FLAG_NO_INDEX;
      }
    }
  }
  finish_pseudo();
}

bool Is1xx(const HeaderMap& headers) {
  std::optional<absl::string_view> status = headers.Get(":status");
  return status.has_value() && status->size() == 3 && (*status)[0] == '1' && *status != "101";
}

absl::string_view MalformedRequest(const HeaderMap& headers) {
  if (std::optional<absl::string_view> path = headers.Get(":path"); path.has_value()) {
    for (const char ch : *path) {
      const unsigned char c = static_cast<unsigned char>(ch);
      if (c < 0x21 || c > 0x7e || c == '#') return "invalid :path";
    }
  }
  std::optional<absl::string_view> authority = headers.Get(":authority");
  if (authority.has_value() && !ParseHostPort(*authority).has_value()) return "invalid :authority";
  std::optional<absl::string_view> host = headers.Get("host");
  if (!host.has_value()) return {};
  if (!ParseHostPort(*host).has_value()) return "invalid host";
  if (headers.Count("host") > 1) return "more than one host";
  return {};
}

}  // namespace meshlet::http::h2::codec_internal
