#include "control-plane/kubernetes/fake_api_server.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/atomic_file.h"
#include "common/base/logging.h"
#include "common/tls/test_certificates.h"
#include "common/tls/tls_context.h"
#include "common/tls/tls_context_provider.h"
#include "common/tls/tls_transport.h"

namespace meshlet::controlplane::kubernetes::testing {

using tls::testing::ValueOrDie;

FakeApiServer::FakeApiServer(event::Loop& loop, std::string token, Duration idle_timeout)
    : loop_(loop) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/fake-api.XXXXXX");
  CHECK(::mkdtemp(dir.data()) != nullptr) << dir;
  dir_ = dir;
  tls::testing::TestCa ca = ValueOrDie(tls::testing::TestCa::Create("fake cluster CA"));
  tls::testing::TestCa other = ValueOrDie(tls::testing::TestCa::Create("another CA"));
  tls::testing::TestCertificate leaf =
      ValueOrDie(ca.Issue({.ip_addresses = {"127.0.0.1"}, .common_name = "kube-apiserver"}));
  ca_file_ = absl::StrCat(dir_, "/ca.crt");
  other_ca_file_ = absl::StrCat(dir_, "/other-ca.crt");
  token_file_ = absl::StrCat(dir_, "/token");
  CHECK_OK(WriteFileAtomically(ca_file_, ca.cert_pem()));
  CHECK_OK(WriteFileAtomically(other_ca_file_, other.cert_pem()));
  CHECK_OK(WriteFileAtomically(token_file_, absl::StrCat(token, "\n")));
  auto context = ValueOrDie(
      tls::TlsContext::CreateServer({.certificate_chain_pem = leaf.chain_pem,
                                     .private_key_pem = leaf.key_pem,
                                     .session_tickets = true}));  // as the API server issues them
  server_ = ValueOrDie(http::HttpServer::Create(
      loop_, ValueOrDie(net::Address::Parse("127.0.0.1:0")),
      {.transport_factory =
           tls::TlsTransport::Factory(std::make_shared<tls::TlsContextProvider>(context)),
       .idle_timeout = idle_timeout},
      http::AsyncRequestHandler(
          [this](const http::ServerRequest& request, http::Responder respond) {
            requests_.push_back(
                {.method = std::string(request.method()),
                 .path = std::string(request.headers.Get(":path").value_or("")),
                 .body = request.body,
                 .authorization = std::string(request.headers.Get("authorization").value_or("")),
                 .content_type = std::string(request.headers.Get("content-type").value_or("")),
                 .accept = std::string(request.headers.Get("accept").value_or(""))});
            if (handler_) {
              handler_(request, std::move(respond));
            } else {
              respond(http::ServerResponse::Json(404, R"({"kind":"Status","code":404})"));
            }
          })));
}

FakeApiServer::~FakeApiServer() {
  server_.reset();
  for (const std::string& file : {ca_file_, other_ca_file_, token_file_}) ::unlink(file.c_str());
  ::rmdir(dir_.c_str());
}

KubernetesApiOptions FakeApiServer::Options() const {
  KubernetesApiOptions options;
  options.api = absl::StrCat("https://", server_->address().ToString());
  options.token_file = token_file_;
  options.ca_file = ca_file_;
  options.timeout = absl::Seconds(5);
  return options;
}

std::unique_ptr<KubernetesApi> FakeApiServer::Api(
    const std::function<void(KubernetesApiOptions&)>& tweak) const {
  KubernetesApiOptions options = Options();
  if (tweak) tweak(options);
  return ValueOrDie(KubernetesApi::Create(loop_, options));
}

bool RunUntil(event::Loop& loop, const std::function<bool()>& done) {
  return loop.RunUntil(done, std::chrono::seconds(10));
}

}  // namespace meshlet::controlplane::kubernetes::testing
