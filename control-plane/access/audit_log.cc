#include "control-plane/access/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/json.h"
#include "common/base/logging.h"
#include "control-plane/identity/json_fields.h"

namespace meshlet::controlplane::access {
namespace {

constexpr size_t kMaxMessageBytes = 300;

}  // namespace

AuditLog::AuditLog(std::string path, int fd, const Clock& clock, StatsRegistry* stats)
    : path_(std::move(path)), fd_(fd), clock_(clock) {
  if (stats != nullptr) {
    absl::StatusOr<Counter> records = stats->shared_shard().RegisterCounter(
        "meshlet_cp_api_audit_records_total",
        "API writes recorded in the audit log (--api-audit-log), let in or refused.");
    CHECK_OK(records);
    records_ = *records;
    absl::StatusOr<Counter> errors = stats->shared_shard().RegisterCounter(
        "meshlet_cp_api_audit_errors_total",
        "Audit records that could not be written to the audit log.");
    CHECK_OK(errors);
    errors_ = *errors;
  }
}

AuditLog::~AuditLog() { ::close(fd_); }

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path,
                                                         const Clock& clock, StatsRegistry* stats) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("audit log ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat("audit log ", path, ": not a file"));
  }
  if ((st.st_mode & 0777) != 0600) {
    // Who did what is for the control plane's operators only.
    if (::fchmod(fd, 0600) != 0) {
      const int saved = errno;
      ::close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("audit log ", path, ": chmod 600: ", std::strerror(saved)));
    }
    LOG(WARN) << "audit log " << path << ": mode was " << absl::StrCat(absl::Hex(st.st_mode & 0777))
              << ", now 600";
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, fd, clock, stats));
}

AuditedObject AuditLog::ObjectOf(absl::string_view path) {
  AuditedObject object;
  std::vector<std::string> segments = absl::StrSplit(path, '/', absl::SkipEmpty());
  size_t i = 0;
  if (segments.size() >= 3 && segments[0] == "apis") {
    i = 3;  // apis/{group}/{version}: meshlet.io/v1, gateway.networking.k8s.io/v1
    if (segments.size() > i + 1 && segments[i] == "namespaces") {
      object.namespace_ = segments[i + 1];
      i += 2;
    }
  } else if (segments.size() >= 2 && segments[0] == "api" && segments[1] == "v1") {
    i = 2;
  } else {
    return object;
  }
  if (segments.size() > i) object.resource = segments[i];
  if (segments.size() > i + 1) object.name = segments[i + 1];
  return object;
}

bool AuditLog::Records(const http::ServerRequest& request) {
  // A live tap reads requests as they happen: recorded like a write, with what it asked.
  if (request.path() == kTapPath) return true;
  return request.method() != "GET" && request.method() != "HEAD";
}

void AuditLog::Record(const http::ServerRequest& request, const Principal* caller,
                      const http::ServerResponse& response) {
  AuditedObject object = ObjectOf(request.path());
  std::optional<identity::JsonObject> answer;
  if (absl::StartsWith(response.headers.Get("content-type").value_or(""), "application/json")) {
    absl::StatusOr<identity::JsonObject> parsed = identity::JsonObject::Parse(response.body);
    if (parsed.ok()) answer = *std::move(parsed);
  }
  if (object.name.empty() && response.status == 201 && answer.has_value()) {
    // A create: the name the answer gave it (a resource's, an operator token's, a join token's id).
    for (const char* field : {"metadata/name", "name", "id"}) {
      if (absl::StatusOr<std::string> name = answer->String(field); name.ok()) {
        object.name = *name;
        break;
      }
    }
  }
  const bool ok = response.status >= 200 && response.status < 300;
  std::string line = absl::StrCat(
      R"({"time":)",
      JsonQuote(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", clock_.WallNow(), absl::UTCTimeZone())),
      R"(,"principal":)", JsonQuote(caller != nullptr ? caller->name : ""), R"(,"credential":)",
      JsonQuote(caller != nullptr ? caller->credential : ""), R"(,"role":)",
      JsonQuote(caller != nullptr ? RoleName(caller->role) : ""), R"(,"method":)",
      JsonQuote(request.method()), R"(,"path":)", JsonQuote(request.path()),
      R"(,"object":{"resource":)", JsonQuote(object.resource), R"(,"namespace":)",
      JsonQuote(object.namespace_), R"(,"name":)", JsonQuote(object.name), R"(},"dryRun":)",
      request.QueryParams().count("dryRun") > 0 ? "true" : "false", R"(,"status":)",
      response.status, R"(,"result":)",
      JsonQuote(ok ? response.headers.Get("x-meshlet-result").value_or("ok") : "error"));
  if (!ok) {
    std::string message = answer.has_value() ? answer->String("message").value_or("") : "";
    if (message.empty()) message = std::string(absl::StripAsciiWhitespace(response.body));
    if (message.size() > kMaxMessageBytes) message.resize(kMaxMessageBytes);
    absl::StrAppend(&line, R"(,"error":)", JsonQuote(message));
  }
  if (request.path() == kTapPath) {
    // Who tapped what, at which rate, for how long, with or without headers.
    std::map<std::string, std::string> query = request.QueryParams();
    absl::StrAppend(&line, R"(,"tap":{"workload":)", JsonQuote(query["workload"]), R"(,"service":)",
                    JsonQuote(query["service"]), R"(,"rate":)", JsonQuote(query["rate"]),
                    R"(,"duration":)", JsonQuote(query["duration"]), R"(,"headers":)",
                    query["headers"] == "true" ? "true" : "false", "}");
  }
  absl::StrAppend(&line, R"(,"peer":)", JsonQuote(request.peer.ToString()), "}\n");
  ssize_t written;
  {
    std::lock_guard<std::mutex> lock(mu_);
    do {
      written = ::write(fd_, line.data(), line.size());
    } while (written < 0 && errno == EINTR);
  }
  if (written != static_cast<ssize_t>(line.size())) {
    errors_.Inc();
    LOG_EVERY_N_SEC(ERROR, 60) << "audit log " << path_ << ": a record was not written: "
                               << (written < 0 ? std::strerror(errno) : "short write");
    return;
  }
  records_.Inc();
}

}  // namespace meshlet::controlplane::access
