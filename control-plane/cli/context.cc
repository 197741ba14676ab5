#include "control-plane/cli/context.h"

#include <google/protobuf/descriptor.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/file.h"
#include "common/base/status.h"
#include "common/config/yaml_proto.h"
#include "common/tls/certificate.h"
#include "common/tls/spiffe.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::cli {
namespace {

using ::meshlet::cli::MeshctlContext;

std::string ContextKeys() {
  const google::protobuf::Descriptor* d = MeshctlContext::descriptor();
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->name());
  return absl::StrJoin(names, ", ");
}

// `path` as seen from the directory of `context_path` when it is relative.
std::string RelativeTo(const std::string& context_path, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  size_t slash = context_path.rfind('/');
  if (slash == std::string::npos) return path;
  return absl::StrCat(context_path.substr(0, slash + 1), path);
}

// `pem` must hold certificates and nothing that fails to parse; `where` names its source.
absl::Status CheckCaPem(absl::string_view pem, absl::string_view where) {
  absl::StatusOr<tls::CertificateChain> certificates = tls::ParsePemCertificates(pem);
  if (!certificates.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": not PEM CA certificates (", certificates.status().message(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<flags::Flag> ConnectionFlagTable(ConnectionFlags& flags) {
  return {
      flags::StringFlag(
          "--server", "HOST:PORT[,HOST:PORT...]", &flags.server,
          "the control-plane API (HTTPS; http://HOST:PORT for one started with --api-plaintext); "
          "several replicas are tried in turn (default: the context file's, else "
          "127.0.0.1:15014)"),
      flags::StringFlag("--token", "TOKEN", &flags.token,
                        "the API token (default: the context file's)"),
      flags::StringFlag("--token-file", "FILE", &flags.token_file, "read the API token from FILE"),
      flags::StringFlag("--ca-file", "FILE", &flags.ca_file,
                        "the CA certificates (PEM) the control plane's certificate must chain to "
                        "(default: the context file's, as meshctl context set pinned it)"),
      flags::StringFlag("--server-identity", "SPIFFE_ID", &flags.server_identity,
                        absl::StrCat("the identity the control plane's certificate must carry "
                                     "(default: the context file's, else ",
                                     kDefaultServerIdentity, ")")),
      {.name = "--revision",
       .value = "NAME",
       .help = "the control-plane revision to talk to: its API must carry that revision's "
               "identity, spiffe://<trust domain>/ns/meshlet-system/sa/meshlet-control-plane-NAME "
               "(\"default\": the control plane installed without one; default: the context "
               "file's); upgrade and inject take it as their --revision",
       .set =
           [&flags](absl::string_view v) {
             absl::StatusOr<std::string> revision = inject::ParseRevision(v);
             if (!revision.ok()) return revision.status();
             flags.revision = *std::move(revision);
             return absl::OkStatus();
           }},
      flags::StringFlag(
          "--context-file", "FILE", &flags.context_file,
          absl::StrCat("default $MESHCTL_CONFIG, else ~/.meshlet/meshctl.yaml; its keys (no "
                       "others): ",
                       ContextKeys())),
      {.name = "--timeout",
       .value = "DURATION",
       .help = "per request (default 10s)",
       .set =
           [&flags](absl::string_view value) {
             absl::StatusOr<absl::Duration> d = config::ParseDurationText(value);
             if (!d.ok() || *d <= absl::ZeroDuration()) {
               return absl::InvalidArgumentError("not a duration");
             }
             flags.timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(*d));
             return absl::OkStatus();
           }},
  };
}

ContextPath FindContextFile(const ConnectionFlags& flags, const Environment& env) {
  if (!flags.context_file.empty()) return {.path = flags.context_file, .must_exist = true};
  if (!env.meshctl_config.empty()) return {.path = env.meshctl_config, .must_exist = true};
  if (!env.home.empty()) return {.path = absl::StrCat(env.home, "/.meshlet/meshctl.yaml")};
  return {};
}

absl::StatusOr<MeshctlContext> ReadContextFile(const ContextPath& path) {
  MeshctlContext context;
  if (path.path.empty()) return context;
  absl::StatusOr<std::string> text = ReadFile(path.path);
  if (!text.ok()) {
    if (!path.must_exist) return context;  // the default file may be absent
    return absl::InvalidArgumentError(absl::StrCat("cannot read context file ", path.path));
  }
  // Unknown keys are errors with file, line and the known keys, as in policy files.
  config::YamlParseOptions options;
  options.source_name = path.path;
  if (absl::Status s = config::YamlToProto(*text, context, options); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("context file ", s.message()));
  }
  return context;
}

absl::StatusOr<std::string> RevisionServerIdentity(absl::string_view base,
                                                   absl::string_view revision) {
  ASSIGN_OR_RETURN(tls::SpiffeId id, tls::SpiffeId::Parse(base));
  std::vector<absl::string_view> segments = absl::StrSplit(id.path(), '/');
  // "", "ns", NS, "sa", SA
  const std::string namespace_ = segments.size() == 5 && segments[1] == "ns" && segments[3] == "sa"
                                     ? std::string(segments[2])
                                     : "meshlet-system";
  return absl::StrCat("spiffe://", id.trust_domain(), "/ns/", namespace_, "/sa/",
                      inject::ControlPlaneName(revision));
}

bool IsPlaintextServer(absl::string_view server) {
  return absl::StartsWith(absl::StripLeadingAsciiWhitespace(server), "http://");
}

absl::StatusOr<Connection> LoadConnection(const ConnectionFlags& flags, const Environment& env) {
  const ContextPath context_path = FindContextFile(flags, env);
  absl::StatusOr<MeshctlContext> context = ReadContextFile(context_path);
  if (!context.ok()) return context.status();
  const std::string& file = context_path.path;

  Connection connection{.server = "127.0.0.1:15014", .server_identity = kDefaultServerIdentity};
  if (!context->server().empty()) connection.server = context->server();
  connection.token = context->token();
  connection.namespace_ = context->namespace_();
  std::string token_file = RelativeTo(file, context->tokenfile());
  if (!context->certificateauthority().empty() && !context->certificateauthoritydata().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("context file ", file,
                     ": certificateAuthority and certificateAuthorityData exclude each "
                     "other"));
  }
  if (!context->certificateauthoritydata().empty()) {
    connection.ca_pem = context->certificateauthoritydata();
    connection.ca_source = absl::StrCat("the CA pinned in context file ", file);
    RETURN_IF_ERROR(CheckCaPem(connection.ca_pem,
                               absl::StrCat("context file ", file, ": certificateAuthorityData")));
  }
  std::string ca_file = RelativeTo(file, context->certificateauthority());
  if (!context->serveridentity().empty() && !context->revision().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("context file ", file,
                     ": serverIdentity and revision exclude each other (revision implies the "
                     "identity spiffe://.../sa/meshlet-control-plane-<revision>)"));
  }
  if (!context->serveridentity().empty()) connection.server_identity = context->serveridentity();
  if (!context->revision().empty()) {
    absl::StatusOr<std::string> revision = inject::ParseRevision(context->revision());
    if (!revision.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("context file ", file, ": revision: ", revision.status().message()));
    }
    ASSIGN_OR_RETURN(connection.server_identity,
                     RevisionServerIdentity(kDefaultServerIdentity, *revision));
    connection.revision = inject::RevisionDisplayName(*revision);
  }

  if (!flags.server.empty()) connection.server = flags.server;
  if (!flags.token_file.empty()) {
    token_file = flags.token_file;
    connection.token.clear();
  }
  if (!flags.token.empty()) connection.token = flags.token;
  if (connection.token.empty() && !token_file.empty()) {
    absl::StatusOr<std::string> text = ReadFile(token_file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read token file ", token_file));
    }
    connection.token = std::string(absl::StripAsciiWhitespace(*text));
  }
  if (!flags.ca_file.empty()) ca_file = flags.ca_file;
  if (!ca_file.empty()) {
    absl::StatusOr<std::string> pem = ReadFile(ca_file);
    if (!pem.ok()) return absl::InvalidArgumentError(absl::StrCat("cannot read CA file ", ca_file));
    RETURN_IF_ERROR(CheckCaPem(*pem, absl::StrCat("CA file ", ca_file)));
    connection.ca_pem = *std::move(pem);
    connection.ca_source = flags.ca_file.empty()
                               ? absl::StrCat("the CA file ", ca_file, " (context file ", file, ")")
                               : absl::StrCat("the CA file ", ca_file, " (--ca-file)");
  }
  if (!flags.server_identity.empty()) {
    connection.server_identity = flags.server_identity;
    connection.revision.clear();
  } else if (flags.revision.has_value()) {
    // In the trust domain and namespace the context names, if it names an identity.
    const std::string base =
        context->serveridentity().empty() ? kDefaultServerIdentity : context->serveridentity();
    absl::StatusOr<std::string> identity = RevisionServerIdentity(base, *flags.revision);
    if (!identity.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("context file ", file, ": serverIdentity \"",
                                                     base, "\": ", identity.status().message()));
    }
    connection.server_identity = *std::move(identity);
    connection.revision = inject::RevisionDisplayName(*flags.revision);
  }
  if (absl::Status s = tls::SpiffeId::Parse(connection.server_identity).status(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flags.server_identity.empty() ? absl::StrCat("context file ", file, ": serverIdentity")
                                      : std::string("--server-identity"),
        " \"", connection.server_identity, "\": ", s.message()));
  }
  return connection;
}

}  // namespace meshlet::controlplane::cli
