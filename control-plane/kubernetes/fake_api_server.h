#pragma once

// FakeApiServer: a Kubernetes API server for the unit tests of this folder. HTTPS on 127.0.0.1
// (an ephemeral port) with a certificate for that address from a CA generated at test time; the
// CA and a bearer token are written to files under TEST_TMPDIR, which Options() names, so a
// KubernetesApi built from them goes through its real TLS, token and HTTP/1.1 path.
//
// Connections are kept alive between requests as a real API server keeps them (HTTP/1.1, closed
// after `idle_timeout` without a request); connections_accepted() counts them.
//
// Requests are recorded, then answered by the handler: it may answer at once or keep the
// Responder to answer later (a watch that stays open). Without a handler every request gets 404.
//
// Threading: the test's loop thread. The server, its files and held responders go with it.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/event/loop.h"
#include "common/http/server.h"
#include "control-plane/kubernetes/api_client.h"

namespace meshlet::controlplane::kubernetes::testing {

struct SeenRequest {
  std::string method;
  std::string path;  // with the query string
  std::string body;
  std::string authorization;
  std::string content_type;
  std::string accept;
};

class FakeApiServer {
 public:
  using Handler = std::function<void(const http::ServerRequest& request, http::Responder respond)>;

  // Stops the test binary if the certificates, files or listener cannot be set up.
  explicit FakeApiServer(event::Loop& loop, std::string token = "test-token",
                         Duration idle_timeout = std::chrono::seconds(120));
  ~FakeApiServer();
  FakeApiServer(const FakeApiServer&) = delete;
  FakeApiServer& operator=(const FakeApiServer&) = delete;

  void set_handler(Handler handler) { handler_ = std::move(handler); }
  // Options for a KubernetesApi that reaches this server and trusts it.
  KubernetesApiOptions Options() const;
  // A KubernetesApi built from Options() (with `tweak` applied first).
  std::unique_ptr<KubernetesApi> Api(
      const std::function<void(KubernetesApiOptions&)>& tweak = nullptr) const;

  const std::vector<SeenRequest>& requests() const { return requests_; }
  uint64_t connections_accepted() const { return server_->connections_accepted(); }
  const std::string& ca_file() const { return ca_file_; }
  const std::string& token_file() const { return token_file_; }
  // A file holding another CA, which does not sign this server's certificate.
  const std::string& other_ca_file() const { return other_ca_file_; }

 private:
  event::Loop& loop_;
  std::string dir_;
  std::string ca_file_;
  std::string other_ca_file_;
  std::string token_file_;
  std::unique_ptr<http::HttpServer> server_;
  Handler handler_;
  std::vector<SeenRequest> requests_;
};

// Runs `loop` until `done` holds or 10 s pass; false on timeout.
bool RunUntil(event::Loop& loop, const std::function<bool()>& done);

}  // namespace meshlet::controlplane::kubernetes::testing
