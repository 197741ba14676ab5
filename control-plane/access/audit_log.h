#pragma once

// AuditLog: every write to the control-plane API (any request but GET and HEAD, the public
// paths' aside), let in or refused, as one JSON line of a file the control plane alone reads
// (created 0600; an existing file is set to 0600 too). By default DATA_DIR/audit.log
// (--api-audit-log). A line:
//
//   {"time":"2026-11-25T10:00:00.123456Z","principal":"alice","credential":"operator-token",
//    "role":"editor","method":"PUT","path":"/apis/meshlet.io/v1/namespaces/shop/httproutes/r",
//    "object":{"resource":"httproutes","namespace":"shop","name":"r"},"dryRun":false,
//    "status":200,"result":"updated","peer":"10.0.0.7:51234"}
//
// principal/credential/role: who the gate found (empty when the request had no valid token);
// object: what the path names, and for a create the name the answer gave it; result: what the
// write did (created, updated, unchanged, deleted, dry_run) when it succeeded, else "error" with
// the answer's message. Tokens and request bodies are never written. The file is opened with
// O_APPEND: rotate it by copying and truncating (logrotate's copytruncate), or by renaming it
// and restarting the control plane.
//
// Stats: meshlet_cp_api_audit_records_total, meshlet_cp_api_audit_errors_total (a record that
// could not be written: the API answer stands, the failure is logged at most once a minute).
//
// Thread-safety: Record may be called from any thread (the API answers on its loop and on its
// store worker); lines never interleave.

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/http/server.h"
#include "common/stats/stats.h"
#include "control-plane/access/roles.h"

namespace meshlet::controlplane::access {

// What an API path names: {resource (the plural: "httproutes"), namespace, name}, empty parts
// unknown.
struct AuditedObject {
  std::string resource, namespace_, name;
};

// The live tap's path (GET, streamed): recorded too, with a "tap" object (workload, service,
// rate, duration, headers as asked).
inline constexpr char kTapPath[] = "/api/v1/tap";

class AuditLog {
 public:
  // Opens (creates) `path` for appending, mode 0600. Errors name the path. `stats` may be null.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path, const Clock& clock,
                                                        StatsRegistry* stats);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Whether `request` is one the log records: a write (not GET or HEAD), or a live tap.
  static bool Records(const http::ServerRequest& request);
  // What `path` names (a create's name is in its answer, not its path).
  static AuditedObject ObjectOf(absl::string_view path);

  // Appends the record of `request`, made by `caller` (null: not authenticated), answered with
  // `response`.
  void Record(const http::ServerRequest& request, const Principal* caller,
              const http::ServerResponse& response);

  const std::string& path() const { return path_; }

 private:
  AuditLog(std::string path, int fd, const Clock& clock, StatsRegistry* stats);

  const std::string path_;
  const int fd_;
  const Clock& clock_;
  std::mutex mu_;  // one write(2) per line; the mutex keeps lines whole across threads
  Counter records_;
  Counter errors_;
};

}  // namespace meshlet::controlplane::access
