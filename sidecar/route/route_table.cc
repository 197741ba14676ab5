#include "sidecar/route/route_table.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <optional>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/container/inlined_vector.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"

namespace meshlet::sidecar::route {

SourceName::SourceName(absl::string_view text) {
  if (text.empty()) return;
  // One allocation: the count and size, then the chars (Text::chars()).
  void* memory = ::operator new(sizeof(Text) + text.size());
  text_ = new (memory) Text{{1}, static_cast<uint32_t>(text.size())};
  std::memcpy(reinterpret_cast<char*>(text_ + 1), text.data(), text.size());
}

void SourceName::Unref() {
  if (text_ == nullptr || text_->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  text_->~Text();
  ::operator delete(static_cast<void*>(text_));
  text_ = nullptr;
}

namespace {

// Characters a domain may hold besides a leading '*': host names, IPv4 and bracketed IPv6
// literals, and a ":port" suffix.
bool IsDomainChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
         c == ':' || c == '[' || c == ']';
}

}  // namespace

absl::Status ValidateDomain(absl::string_view domain) {
  if (domain.empty()) return absl::InvalidArgumentError("must not be empty");
  if (domain == "*") return absl::OkStatus();
  absl::string_view rest = domain;
  if (rest.front() == '*') {
    rest.remove_prefix(1);
    if (rest.empty()) return absl::InvalidArgumentError("must not be empty");
  }
  for (char c : rest) {
    if (!IsDomainChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", domain, "\": ",
                       c == '*' ? "'*' is allowed only as the first character"
                                : "invalid character in a domain"));
    }
  }
  return absl::OkStatus();
}

namespace {

// The path without its query string or fragment.
absl::string_view PathOnly(absl::string_view path) {
  size_t end = path.find_first_of("?#");
  return end == absl::string_view::npos ? path : path.substr(0, end);
}

bool FullMatch(absl::string_view text, const re2::RE2& regex) {
  return re2::RE2::FullMatch(re2::StringPiece(text.data(), text.size()), regex);
}

bool PathMatches(const RouteMatch& match, absl::string_view path) {
  switch (match.path_kind) {
    case RouteMatch::PathKind::kExact:
      return match.case_insensitive ? absl::EqualsIgnoreCase(path, match.path) : path == match.path;
    case RouteMatch::PathKind::kPrefix:
      return match.case_insensitive ? absl::StartsWithIgnoreCase(path, match.path)
                                    : absl::StartsWith(path, match.path);
    case RouteMatch::PathKind::kSegmentPrefix: {
      const bool starts = match.case_insensitive ? absl::StartsWithIgnoreCase(path, match.path)
                                                 : absl::StartsWith(path, match.path);
      // The prefix ends at a segment boundary: the path's end or a '/'.
      return starts && (path.size() == match.path.size() || path[match.path.size()] == '/');
    }
    case RouteMatch::PathKind::kRegex:
      return match.regex != nullptr && FullMatch(path, *match.regex);
  }
  return false;
}

bool HeaderMatches(const HeaderMatcher& matcher, const http::HeaderMap& request) {
  bool found = false;
  bool value_matched = false;
  for (http::HeaderView header : request) {
    if (header.name != matcher.name) continue;
    found = true;
    if (value_matched) continue;
    switch (matcher.kind) {
      case HeaderMatcher::Kind::kExact:
        value_matched = header.value == matcher.value;
        break;
      case HeaderMatcher::Kind::kPrefix:
        value_matched = absl::StartsWith(header.value, matcher.value);
        break;
      case HeaderMatcher::Kind::kRegex:
        value_matched = matcher.regex != nullptr && FullMatch(header.value, *matcher.regex);
        break;
      case HeaderMatcher::Kind::kPresent:
        break;
    }
  }
  bool result =
      matcher.kind == HeaderMatcher::Kind::kPresent ? found == matcher.present : value_matched;
  return result != matcher.invert;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// `text` with its %XX escapes decoded (a '%' not followed by two hex digits stays as it is).
// Points into `text` when it has no '%'; otherwise into `storage`.
absl::string_view PercentDecode(absl::string_view text, std::string& storage) {
  if (text.find('%') == absl::string_view::npos) return text;
  storage.clear();
  storage.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
        HexValue(text[i + 2]) >= 0) {
      storage.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
      i += 2;
    } else {
      storage.push_back(text[i]);
    }
  }
  return storage;
}

// The query string of a request, split into its parameters once (on the first route that asks)
// and kept raw: names and values are decoded as they are compared.
class QueryParameters {
 public:
  explicit QueryParameters(absl::string_view path) {
    size_t start = path.find('?');
    if (start == absl::string_view::npos) return;
    absl::string_view query = path.substr(start + 1);
    query = query.substr(0, query.find('#'));
    while (!query.empty()) {
      size_t end = query.find('&');
      absl::string_view item = query.substr(0, end);
      query = end == absl::string_view::npos ? absl::string_view() : query.substr(end + 1);
      if (item.empty()) continue;
      size_t eq = item.find('=');
      if (eq == absl::string_view::npos) {
        items_.push_back({item, absl::string_view()});
      } else {
        items_.push_back({item.substr(0, eq), item.substr(eq + 1)});
      }
    }
  }

  // The first value of `name` (decoded into `storage` if it needs decoding), or nullopt.
  std::optional<absl::string_view> First(absl::string_view name, std::string& storage) const {
    for (const auto& [raw_name, raw_value] : items_) {
      if (PercentDecode(raw_name, storage) == name) return PercentDecode(raw_value, storage);
    }
    return std::nullopt;
  }

 private:
  absl::InlinedVector<std::pair<absl::string_view, absl::string_view>, 8> items_;
};

bool QueryMatches(const std::vector<QueryParameterMatcher>& matchers,
                  const QueryParameters& query) {
  std::string storage;
  for (const QueryParameterMatcher& matcher : matchers) {
    std::optional<absl::string_view> value = query.First(matcher.name, storage);
    if (!value.has_value()) return false;
    switch (matcher.kind) {
      case QueryParameterMatcher::Kind::kPresent:
        break;
      case QueryParameterMatcher::Kind::kExact:
        if (*value != matcher.value) return false;
        break;
      case QueryParameterMatcher::Kind::kRegex:
        if (matcher.regex == nullptr || !FullMatch(*value, *matcher.regex)) return false;
        break;
    }
  }
  return true;
}

// The path (no query) for `bare` under `match` with the matched part replaced by `replacement`:
// the matched prefix for prefix matches (segment-wise for kSegmentPrefix, as Gateway API's
// ReplacePrefixMatch), the whole path otherwise.
std::string ReplaceMatchedPrefix(const RouteMatch& match, absl::string_view bare,
                                 absl::string_view replacement) {
  switch (match.path_kind) {
    case RouteMatch::PathKind::kPrefix: {
      absl::string_view rest;
      if (bare.size() >= match.path.size()) rest = bare.substr(match.path.size());
      return absl::StrCat(replacement, rest);
    }
    case RouteMatch::PathKind::kSegmentPrefix: {
      // The rest is empty or starts with '/'; the replacement's trailing '/' goes, so that no
      // "//" appears, and an empty result is the root.
      absl::string_view rest;
      if (bare.size() >= match.path.size()) rest = bare.substr(match.path.size());
      while (!replacement.empty() && replacement.back() == '/') replacement.remove_suffix(1);
      if (replacement.empty() && rest.empty()) return "/";
      return absl::StrCat(replacement, rest);
    }
    case RouteMatch::PathKind::kExact:
    case RouteMatch::PathKind::kRegex:
      break;
  }
  return std::string(replacement);
}

// The query string of `path` with its '?' (empty when there is none).
absl::string_view QueryOf(absl::string_view path) {
  size_t start = path.find('?');
  return start == absl::string_view::npos ? absl::string_view() : path.substr(start);
}

// True when it added or set any header.
bool ApplyLevel(const std::vector<HeaderValueOption>& to_add,
                const std::vector<std::string>& to_remove, http::HeaderMap& headers) {
  for (const std::string& name : to_remove) headers.Remove(name);
  for (const HeaderValueOption& option : to_add) {
    if (option.append) {
      headers.Add(option.name, option.value);
    } else {
      headers.Set(option.name, option.value);
    }
  }
  return !to_add.empty();
}

uint32_t DefaultPort(absl::string_view scheme) {
  if (absl::EqualsIgnoreCase(scheme, "https")) return 443;
  if (absl::EqualsIgnoreCase(scheme, "http")) return 80;
  return 0;
}

// The port after the host, or 0 when there is none.
uint32_t PortOf(absl::string_view host) {
  absl::string_view bare = StripPort(host);
  if (bare.size() == host.size()) return 0;
  uint32_t port = 0;
  for (char c : host.substr(bare.size() + 1)) port = port * 10 + static_cast<uint32_t>(c - '0');
  return port;
}

}  // namespace

size_t RouteTable::CaseInsensitiveHash::operator()(absl::string_view s) const {
  // FNV-1a over the lowercased bytes, finished with absl::Hash to spread the bits.
  uint64_t h = 14695981039346656037ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(absl::ascii_tolower(static_cast<unsigned char>(c)));
    h *= 1099511628211ull;
  }
  return absl::Hash<uint64_t>{}(h);
}

bool RouteTable::CaseInsensitiveEq::operator()(absl::string_view a, absl::string_view b) const {
  return absl::EqualsIgnoreCase(a, b);
}

absl::StatusOr<std::unique_ptr<RouteTable>> RouteTable::Create(
    RouteConfig config, std::vector<std::shared_ptr<const VirtualHostConfig>> attached,
    const RouteTable* previous) {
  std::unique_ptr<RouteTable> table(new RouteTable(std::move(config), std::move(attached)));
  if (previous != nullptr && table->IndexFrom(*previous)) return table;
  absl::Status status = table->Index();
  if (!status.ok()) return status;
  return table;
}

std::shared_ptr<const VirtualHostConfig> ShareVirtualHost(
    VirtualHostConfig vhost, std::shared_ptr<const HeaderMutations> config_headers) {
  auto shared = std::make_shared<VirtualHostConfig>(std::move(vhost));
  shared->config_headers = std::move(config_headers);
  shared->name_hash = HashOfHostName(shared->name);
  for (RouteEntry& route : shared->routes) {
    route.virtual_host = shared.get();
    route.config_headers = shared->config_headers.get();
  }
  return shared;
}

std::string RouteTable::HostPath(size_t i) const {
  const size_t own = config_.virtual_hosts.size();
  return i < own ? absl::StrCat("virtual_hosts[", i, "]") : absl::StrCat("attached[", i - own, "]");
}

absl::Status RouteTable::PrepareHosts(size_t first_checked) {
  hosts_.clear();
  hosts_.reserve(config_.virtual_hosts.size() + attached_.size());
  for (VirtualHostConfig& vhost : config_.virtual_hosts) {
    vhost.name_hash = HashOfHostName(vhost.name);
    for (RouteEntry& route : vhost.routes) {
      route.virtual_host = &vhost;
      route.config_headers = &config_.headers;
    }
    for (std::string& domain : vhost.domains) absl::AsciiStrToLower(&domain);
    hosts_.push_back(&vhost);
  }
  for (size_t a = 0; a < attached_.size(); ++a) {
    const VirtualHostConfig* vhost = attached_[a].get();
    if (vhost == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(HostPath(hosts_.size()), ": null"));
    }
    hosts_.push_back(vhost);
    if (a < first_checked) continue;
    // Its routes apply the header mutations it was built under: they must be the table's.
    const HeaderMutations* built_under = vhost->config_headers.get();
    if (built_under != &config_.headers &&
        !(built_under == nullptr ? config_.headers.empty() : *built_under == config_.headers)) {
      return absl::InvalidArgumentError(
          absl::StrCat(HostPath(config_.virtual_hosts.size() + a), ": virtual host \"", vhost->name,
                       "\" was built under other route configuration header mutations"));
    }
  }
  return absl::OkStatus();
}

void RouteTable::ClearIndex() {
  hosts_indexed_ = 0;
  exact_.Clear();
  suffixes_.Clear();
  suffix_lengths_.clear();
  catch_all_ = nullptr;
  destinations_.Clear();
}

absl::Status RouteTable::Index() {
  ClearIndex();
  RETURN_IF_ERROR(PrepareHosts(0));
  for (size_t v = 0; v < hosts_.size(); ++v) RETURN_IF_ERROR(AddHost(v));
  return absl::OkStatus();
}

bool RouteTable::IndexFrom(const RouteTable& previous) {
  // Attached hosts were checked against the header mutations of `previous`: the same ones here.
  if (!(config_.headers == previous.config_.headers)) return false;
  // What differs between the two attached lists, by a walk over both: a host at the same place
  // in both is kept; one only the next step of the other list has is taken as removed or added;
  // anything else as both (a host moved is removed, then added).
  const auto& before = previous.attached_;
  const auto& now = attached_;
  std::vector<const VirtualHostConfig*> removed;
  std::vector<size_t> added;  // positions in attached_
  size_t i = 0;
  size_t j = 0;
  while (i < before.size() || j < now.size()) {
    if (i < before.size() && j < now.size() && before[i] == now[j]) {
      ++i;
      ++j;
    } else if (j == now.size() ||
               (i < before.size() && i + 1 < before.size() && before[i + 1] == now[j])) {
      removed.push_back(before[i++].get());
    } else if (i == before.size() || (j + 1 < now.size() && before[i] == now[j + 1])) {
      added.push_back(j++);
    } else {
      removed.push_back(before[i++].get());
      added.push_back(j++);
    }
  }
  // The headers of the added hosts are checked below; the kept ones were by `previous`.
  if (!PrepareHosts(attached_.size()).ok()) return false;
  for (size_t a : added) {
    const HeaderMutations* built_under = attached_[a]->config_headers.get();
    if (!(built_under == nullptr ? config_.headers.empty() : *built_under == config_.headers)) {
      return false;
    }
  }
  exact_ = previous.exact_;
  suffixes_ = previous.suffixes_;
  suffix_lengths_ = previous.suffix_lengths_;
  catch_all_ = previous.catch_all_;
  destinations_ = previous.destinations_;
  for (const VirtualHostConfig& vhost : previous.config_.virtual_hosts) RemoveHost(vhost);
  for (const VirtualHostConfig* vhost : removed) RemoveHost(*vhost);
  const size_t own = config_.virtual_hosts.size();
  bool ok = true;
  for (size_t v = 0; v < own && ok; ++v) ok = AddHost(v).ok();
  for (size_t a : added) {
    if (!ok) break;
    ok = AddHost(own + a).ok();
  }
  if (!ok) {
    ClearIndex();
    return false;
  }
  return true;
}

void RouteTable::RemoveHost(const VirtualHostConfig& vhost) {
  for (const std::string& destination : vhost.destinations) {
    const VirtualHostConfig* const* holder = destinations_.Find(destination);
    if (holder != nullptr && *holder == &vhost) destinations_.Erase(destination);
  }
  for (const std::string& domain : vhost.domains) {
    if (domain == "*") {
      if (catch_all_ == &vhost) catch_all_ = nullptr;
      continue;
    }
    const bool suffix = !domain.empty() && domain.front() == '*';
    DomainMap& map = suffix ? suffixes_ : exact_;
    const absl::string_view key = suffix ? absl::string_view(domain).substr(1) : domain;
    const VirtualHostConfig* const* holder = map.Find(key);
    if (holder == nullptr || *holder != &vhost) continue;
    map.Erase(key);
    if (!suffix) continue;
    auto length = absl::c_find_if(suffix_lengths_, [&](const std::pair<size_t, size_t>& held) {
      return held.first == key.size();
    });
    if (length != suffix_lengths_.end() && --length->second == 0) suffix_lengths_.erase(length);
  }
}

absl::Status RouteTable::AddHost(size_t v) {
  ++hosts_indexed_;
  const VirtualHostConfig& vhost = *hosts_[v];
  // A domain two hosts share: the maps it goes into refuse it, and the message names the host
  // that holds it (found by a search, on that error alone: a table of many hosts is indexed into
  // one map per kind of domain, not two).
  auto duplicate = [&](const std::string& path, const std::string& domain,
                       const VirtualHostConfig* holder) {
    const size_t at =
        static_cast<size_t>(std::find(hosts_.begin(), hosts_.end(), holder) - hosts_.begin());
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"", domain,
                                                   "\" is already a domain of virtual host \"",
                                                   holder->name, "\" (", HostPath(at), ")"));
  };
  for (size_t d = 0; d < vhost.destinations.size(); ++d) {
    if (const VirtualHostConfig* const* holder =
            destinations_.Insert(vhost.destinations[d], &vhost)) {
      return absl::InvalidArgumentError(
          absl::StrCat(HostPath(v), ".destinations[", d, "]: \"", vhost.destinations[d],
                       "\" is already a destination of virtual host \"", (*holder)->name, "\""));
    }
  }
  for (size_t d = 0; d < vhost.domains.size(); ++d) {
    const std::string& domain = vhost.domains[d];
    // Spelt only for an error: a table of many hosts is indexed without one per domain.
    auto path = [&] { return absl::StrCat(HostPath(v), ".domains[", d, "]"); };
    absl::Status valid = ValidateDomain(domain);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path(), ": ", valid.message()));
    }
    if (absl::c_any_of(domain, absl::ascii_isupper)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path(), ": \"", domain, "\" is not lower-case"));
    }
    if (domain == "*") {
      if (catch_all_ != nullptr) return duplicate(path(), domain, catch_all_);
      catch_all_ = &vhost;
    } else if (domain.front() == '*') {
      const absl::string_view suffix = absl::string_view(domain).substr(1);
      if (const VirtualHostConfig* const* holder = suffixes_.Insert(suffix, &vhost)) {
        return duplicate(path(), domain, *holder);
      }
      auto length = absl::c_find_if(suffix_lengths_, [&](const std::pair<size_t, size_t>& held) {
        return held.first == suffix.size();
      });
      if (length != suffix_lengths_.end()) {
        ++length->second;
      } else {
        // Longest first.
        auto at = absl::c_find_if(suffix_lengths_, [&](const std::pair<size_t, size_t>& held) {
          return held.first < suffix.size();
        });
        suffix_lengths_.insert(at, {suffix.size(), 1});
      }
    } else if (const VirtualHostConfig* const* holder = exact_.Insert(domain, &vhost)) {
      return duplicate(path(), domain, *holder);
    }
  }
  return absl::OkStatus();
}

const VirtualHostConfig* RouteTable::MatchSuffix(absl::string_view host) const {
  for (const auto& [length, count] : suffix_lengths_) {
    // The wildcard stands for at least one character.
    if (host.size() <= length) continue;
    if (const VirtualHostConfig* const* vhost = suffixes_.Find(host.substr(host.size() - length))) {
      return *vhost;
    }
  }
  return nullptr;
}

const VirtualHostConfig* RouteTable::MatchVirtualHost(absl::string_view host) const {
  const absl::string_view bare = StripPort(host);
  const bool has_port = bare.size() != host.size();
  if (!exact_.empty()) {
    if (const VirtualHostConfig* const* vhost = exact_.Find(host)) return *vhost;
    if (has_port) {
      if (const VirtualHostConfig* const* vhost = exact_.Find(bare)) return *vhost;
    }
  }
  if (!suffix_lengths_.empty()) {
    if (const VirtualHostConfig* vhost = MatchSuffix(host)) return vhost;
    if (has_port) {
      if (const VirtualHostConfig* vhost = MatchSuffix(bare)) return vhost;
    }
  }
  return catch_all_;
}

const VirtualHostConfig* RouteTable::MatchDestination(absl::string_view destination) const {
  if (destinations_.empty()) return nullptr;
  const VirtualHostConfig* const* vhost = destinations_.Find(destination);
  return vhost == nullptr ? nullptr : *vhost;
}

const RouteEntry* RouteTable::MatchRoute(const VirtualHostConfig& virtual_host,
                                         const http::HeaderMap& request) {
  absl::string_view path = PathOnly(request.Get(":path").value_or(absl::string_view()));
  // Asterisk-form (OPTIONS *) asks about the server as a whole: routed as its root, and sent on
  // as "*" (RFC 9110 9.3.7, RFC 9112 3.2.4).
  if (path.size() == 1 && path[0] == '*') path = "/";
  const absl::string_view method = request.Get(":method").value_or(absl::string_view());
  // Parsed on the first route with query parameter matchers, then shared by the later ones.
  std::optional<QueryParameters> query;
  for (const RouteEntry& route : virtual_host.routes) {
    const RouteMatch& match = route.match;
    if (!PathMatches(match, path)) continue;
    if (!match.methods.empty() &&
        std::find(match.methods.begin(), match.methods.end(), method) == match.methods.end()) {
      continue;
    }
    bool headers_match = true;
    for (const HeaderMatcher& matcher : match.headers) {
      if (!HeaderMatches(matcher, request)) {
        headers_match = false;
        break;
      }
    }
    if (!headers_match) continue;
    if (!match.query_parameters.empty()) {
      if (!query.has_value()) query.emplace(request.Get(":path").value_or(absl::string_view()));
      if (!QueryMatches(match.query_parameters, *query)) continue;
    }
    return &route;
  }
  return nullptr;
}

const RouteEntry* RouteTable::Match(const http::HeaderMap& request) const {
  const VirtualHostConfig* vhost = MatchVirtualHost(RequestHost(request));
  return vhost == nullptr ? nullptr : MatchRoute(*vhost, request);
}

absl::string_view RequestHost(const http::HeaderMap& request) {
  if (auto authority = request.Get(":authority")) return *authority;
  return request.Get("host").value_or(absl::string_view());
}

absl::string_view StripPort(absl::string_view host) {
  size_t colon = host.rfind(':');
  if (colon == absl::string_view::npos) return host;
  // A bare IPv6 literal has colons but no port; a bracketed one has its port after ']'.
  if (host.front() == '[') {
    if (colon == 0 || host[colon - 1] != ']') return host;
  } else if (host.find(':') != colon) {
    return host;
  }
  absl::string_view port = host.substr(colon + 1);
  if (port.empty() || port.size() > 5) return host;
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return host;
  }
  return host.substr(0, colon);
}

const std::string& PickCluster(const RouteAction& action, Random& random) {
  if (action.weighted_clusters.empty() || action.total_weight == 0) return action.cluster;
  uint64_t point = random.Uniform(action.total_weight);
  for (const WeightedCluster& wc : action.weighted_clusters) {
    if (point < wc.weight) return wc.name;
    point -= wc.weight;
  }
  // Only reachable if total_weight disagrees with the weights; the config layer computes it.
  return action.weighted_clusters.back().name;
}

const HeaderMutations* BackendHeaders(const RouteAction& action, absl::string_view cluster) {
  if (!action.has_backend_headers) return nullptr;
  for (const WeightedCluster& wc : action.weighted_clusters) {
    if (wc.name == cluster) return wc.headers.empty() ? nullptr : &wc.headers;
  }
  return nullptr;
}

bool ApplyRequestHeaderMutations(const RouteEntry& route, http::HeaderMap& headers,
                                 const HeaderMutations* backend) {
  bool added = false;
  if (route.config_headers != nullptr) {
    const HeaderMutations& m = *route.config_headers;
    added |= ApplyLevel(m.request_headers_to_add, m.request_headers_to_remove, headers);
  }
  if (route.virtual_host != nullptr) {
    const HeaderMutations& m = route.virtual_host->extras->headers;
    added |= ApplyLevel(m.request_headers_to_add, m.request_headers_to_remove, headers);
  }
  const HeaderMutations& own = route.extras->headers;
  added |= ApplyLevel(own.request_headers_to_add, own.request_headers_to_remove, headers);
  if (backend != nullptr) {
    added |=
        ApplyLevel(backend->request_headers_to_add, backend->request_headers_to_remove, headers);
  }
  return added;
}

void ApplyResponseHeaderMutations(const RouteEntry& route, http::HeaderMap& headers,
                                  const HeaderMutations* backend) {
  if (route.config_headers != nullptr) {
    const HeaderMutations& m = *route.config_headers;
    ApplyLevel(m.response_headers_to_add, m.response_headers_to_remove, headers);
  }
  if (route.virtual_host != nullptr) {
    const HeaderMutations& m = route.virtual_host->extras->headers;
    ApplyLevel(m.response_headers_to_add, m.response_headers_to_remove, headers);
  }
  const HeaderMutations& own = route.extras->headers;
  ApplyLevel(own.response_headers_to_add, own.response_headers_to_remove, headers);
  if (backend != nullptr) {
    ApplyLevel(backend->response_headers_to_add, backend->response_headers_to_remove, headers);
  }
}

std::string RedirectLocation(const RedirectAction& redirect, const http::HeaderMap& request,
                             const RouteMatch* match) {
  const absl::string_view request_scheme = request.Get(":scheme").value_or("http");
  const absl::string_view scheme = redirect.scheme.empty() ? request_scheme : redirect.scheme;
  const absl::string_view request_host = RequestHost(request);

  // The port, as Gateway API's RequestRedirect derives it: the action's; else the new scheme's
  // default; else the one the host names; else the request's.
  absl::string_view host = redirect.host.empty() ? request_host : redirect.host;
  uint32_t port = redirect.port;
  if (port == 0 && !redirect.scheme.empty()) port = DefaultPort(scheme);
  if (port == 0) port = PortOf(host);
  if (port == 0 && !redirect.host.empty()) port = PortOf(request_host);
  std::string host_part(StripPort(host));
  if (port != 0 && port != DefaultPort(scheme)) absl::StrAppend(&host_part, ":", port);

  const absl::string_view request_path = request.Get(":path").value_or("/");
  std::string path;
  if (!redirect.prefix_rewrite.empty() && match != nullptr) {
    const absl::string_view query = QueryOf(request_path);
    const absl::string_view bare = request_path.substr(0, request_path.size() - query.size());
    path = absl::StrCat(ReplaceMatchedPrefix(*match, bare, redirect.prefix_rewrite), query);
  } else if (redirect.path.empty()) {
    path = std::string(request_path);
  } else if (absl::StrContains(redirect.path, '?')) {
    path = redirect.path;
  } else {
    path = absl::StrCat(redirect.path, QueryOf(request_path));
  }
  return absl::StrCat(scheme, "://", host_part, path);
}

std::string RewritePath(const RouteEntry& route, absl::string_view path) {
  const RouteAction* action = route.route_action();
  if (action == nullptr) return std::string(path);
  const absl::string_view query = QueryOf(path);
  const RouteActionExtras& extras = action->extras.get();
  if (!extras.path_rewrite.empty()) return absl::StrCat(extras.path_rewrite, query);
  if (extras.prefix_rewrite.empty()) return std::string(path);
  const absl::string_view bare = path.substr(0, path.size() - query.size());
  return absl::StrCat(ReplaceMatchedPrefix(route.match, bare, extras.prefix_rewrite), query);
}

}  // namespace meshlet::sidecar::route
