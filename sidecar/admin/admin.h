#pragma once

// The sidecar's admin API: request → response for every admin endpoint, served by an
// http::HttpServer on the main thread (127.0.0.1:15000 by default).
//
//   GET  /ready               200 "LIVE" once listeners are up; 503 before that and while draining
//   GET  /stats               text, one series per line; ?filter=substring, ?format=json
//   GET  /stats/prometheus    Prometheus text exposition, with the process metrics (process_*,
//                             common/stats/process_metrics.h) read at each request
//   GET  /config_dump         the current configuration snapshot as JSON
//   GET  /clusters            clusters: endpoints, health, breaker capacity, health checks (JSON)
//   GET  /listeners           listeners and the addresses they are bound to (JSON)
//   GET  /debug/decisions     decision records of failed and sampled requests (JSON);
//                             ?request_id=ID, ?trace_id=HEX select one request's
//   GET  /certs               the workload certificate: SPIFFE id, serial, validity, seconds to
//                             expiry, trust bundle roots, rotation state and last error (JSON)
//   GET  /hand_over           the hand-over socket (--hand-over), and what this process took over
//                             from its predecessor or handed to its successor (JSON)
//   GET  /logging             the log level; POST /logging?level=debug changes it
//   POST /drain               starts draining (inbound listeners stop, HTTP says goodbye)
//   POST /quitquitquit        exits cleanly
//
// Endpoints that change state refuse other methods with 405; unknown paths get 404 with the list.
// A POST a browser sent for a page of another origin (Origin or Sec-Fetch-Site says so) gets 403:
// a web page may post a form to 127.0.0.1:15000 without a CORS preflight. On the admin port, a
// request whose Host names neither an IP address, localhost nor one of `allowed_hosts` gets 403:
// a web page served from a name that then resolves to 127.0.0.1 (DNS rebinding) is same-origin
// with the admin in the browser's eyes and could otherwise read every GET endpoint.
// AdminHandler holds no state of its own: it reads and acts through an AdminBackend (the Server;
// tests pass a fake). Runs on the main thread only, like the HttpServer that calls it.

#include <memory>
#include <string>
#include <vector>

#include "common/http/server.h"
#include "common/stats/process_metrics.h"
#include "common/stats/stats.h"
#include "sidecar/config/snapshot.h"

namespace meshlet::sidecar::admin {

class AdminBackend {
 public:
  virtual ~AdminBackend() = default;
  virtual bool ready() const = 0;  // every listener is bound on every worker
  // Why ready() is false, when there is more to say than "NOT READY"; empty: nothing.
  virtual std::string NotReadyReason() const { return ""; }
  virtual bool draining() const = 0;  // drain started (SIGTERM or POST /drain)
  virtual const StatsRegistry& stats() const = 0;
  virtual std::shared_ptr<const config::Snapshot> snapshot() const = 0;
  virtual std::string ClustersJson() = 0;
  virtual std::string ListenersJson() = 0;
  // GET /debug/decisions: the workers' decision records whose request id is `request_id` and
  // trace id `trace_id` (empty: any), as {"workers_answered":N,"records":[...]}.
  virtual std::string DecisionsJson(const std::string& request_id, const std::string& trace_id) {
    (void)request_id;
    (void)trace_id;
    return "{\"workers_answered\":0,\"records\":[]}";
  }
  // The discovery client's state (JSON object) for /config_dump; empty without xDS.
  virtual std::string XdsStatusJson() { return ""; }
  // The workload certificate (JSON object) for /certs; the default says there is none.
  virtual std::string CertsJson() { return "{\"workload_certificate\":null}"; }
  // The hand-over (JSON object) for /hand_over; the default says there is none.
  virtual std::string HandOverJson() {
    return "{\"socket\":null,\"taken_over\":null,\"handed_over\":null}";
  }
  // Refreshes values that are read rather than pushed (circuit-breaker capacity) before /stats.
  virtual void BeforeStatsRead() {}
  virtual void StartDrain() = 0;
  // Called after the response is produced; the backend exits on a later loop turn.
  virtual void Quit() = 0;
};

// The /config_dump document: the running snapshot, led by the xDS status when there is one.
// Empty while there is no snapshot.
std::string ConfigDumpJson(AdminBackend& backend);

class AdminHandler {
 public:
  // `stats` is a shard usable from the main thread (the registry's shared shard);
  // `allowed_hosts`: names (--admin-host) the admin port answers to besides IP addresses and
  // localhost, compared without case.
  AdminHandler(AdminBackend& backend, StatsShard& stats,
               std::vector<std::string> allowed_hosts = {});

  // Which listener a request came in on: the metrics port (read-only pages, scraped under any
  // name) does not check Host.
  enum class Port { kAdmin, kMetrics };
  http::ServerResponse Handle(const http::ServerRequest& request, Port port = Port::kAdmin);

  // The text listing every endpoint (also the body of 404 responses and of GET /).
  static std::string EndpointList();

 private:
  // The host a request names when the admin port must refuse it; "" when it may answer.
  std::string RefusedHost(const http::ServerRequest& request) const;

  AdminBackend& backend_;
  const std::vector<std::string> allowed_hosts_;
  Counter requests_;
  Counter not_found_;
  Counter bad_method_;
  Counter cross_site_;
  Counter bad_host_;
  const ProcessMetrics process_metrics_;
};

}  // namespace meshlet::sidecar::admin
