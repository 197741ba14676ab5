// context set | show: writes the context file (where the control plane is, its pinned CA, the
// token to use, the default namespace) and shows what meshctl would connect with.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/atomic_file.h"
#include "common/base/file.h"
#include "common/config/yaml_proto.h"
#include "common/tls/certificate.h"
#include "control-plane/cli/commands.h"
#include "control-plane/cli/pin.h"
#include "control-plane/inject/revision.h"

namespace meshlet::controlplane::cli {
namespace {

using ::meshlet::cli::MeshctlContext;

// `path` made absolute against the working directory (a context file may be read from anywhere).
std::string Absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return absl::StrCat(cwd, "/", path);
}

// "sha256:..., sha256:..." of every certificate in `pem` (which parses).
std::string Fingerprints(const std::string& pem) {
  absl::StatusOr<tls::CertificateChain> certificates = tls::ParsePemCertificates(pem);
  if (!certificates.ok()) return "(unreadable)";
  std::vector<std::string> out;
  for (const auto& certificate : *certificates) {
    out.push_back(tls::Sha256Fingerprint(*certificate));
  }
  return absl::StrJoin(out, ", ");
}

class ContextRun final : public Command {
 public:
  std::vector<flags::Flag> Flags() override {
    return {flags::StringFlag("--ca-fingerprint", "SHA256", &fingerprint_,
                              "set: pin the control plane's CA whose SHA-256 fingerprint this is "
                              "(sha256:HEX, or as openssl x509 -fingerprint -sha256 prints it), "
                              "fetched from the server and checked"),
            NamespaceFlag(&namespace_, "set: the default namespace to write")};
  }

  int Run(Session& session) override {
    const std::vector<std::string>& args = session.positional();
    if (args.size() != 1 || (args[0] != "set" && args[0] != "show")) {
      return session.Fail(session.UsageFailure());
    }
    if (args[0] == "show") {
      if (!fingerprint_.empty() || namespace_.set) {
        return session.Fail({kExitUsage, "--ca-fingerprint and -n go with context set"});
      }
      return Show(session);
    }
    return Set(session);
  }

 private:
  int Show(Session& session) {
    absl::StatusOr<Connection> connection =
        LoadConnection(session.connection_flags(), session.environment());
    if (!connection.ok())
      return session.Fail({kExitUsage, std::string(connection.status().message())});
    const ContextPath path = FindContextFile(session.connection_flags(), session.environment());
    std::ostream& out = session.io().out;
    out << "context file     " << (path.path.empty() ? "(none)" : path.path) << "\n"
        << "server           " << connection->server << "\n"
        << "token            " << (connection->token.empty() ? "(none)" : "(set)") << "\n"
        << "CA               "
        << (connection->ca_pem.empty()
                ? std::string("(none: pin one with meshctl context set --ca-fingerprint)")
                : absl::StrCat(Fingerprints(connection->ca_pem), " (", connection->ca_source, ")"))
        << "\n"
        << "server identity  " << connection->server_identity
        << (connection->revision.empty() ? ""
                                         : absl::StrCat(" (revision ", connection->revision, ")"))
        << "\n"
        << "namespace        "
        << (connection->namespace_.empty() ? "(default)" : connection->namespace_) << "\n";
    return kExitOk;
  }

  int Set(Session& session) {
    const ConnectionFlags& flags = session.connection_flags();
    const ContextPath path = FindContextFile(flags, session.environment());
    if (path.path.empty()) {
      return session.Fail({kExitUsage,
                           "no context file: give --context-file, set "
                           "$MESHCTL_CONFIG or $HOME"});
    }
    // Written over what the file holds, whether or not it exists yet.
    absl::StatusOr<MeshctlContext> context = ReadContextFile({.path = path.path});
    if (!context.ok()) return session.Fail({kExitUsage, std::string(context.status().message())});
    if (!flags.server.empty()) context->set_server(flags.server);
    if (!flags.token_file.empty()) {
      context->set_tokenfile(Absolute(flags.token_file));
      context->clear_token();
    }
    if (!flags.token.empty()) {
      context->set_token(flags.token);
      context->clear_tokenfile();
    }
    if (!flags.server_identity.empty()) {
      context->set_serveridentity(flags.server_identity);
      context->clear_revision();
    } else if (flags.revision.has_value()) {
      // As the revision's name, unless the file's identity is in another trust domain or
      // namespace: then as the revision's identity there.
      const std::string base =
          context->serveridentity().empty() ? kDefaultServerIdentity : context->serveridentity();
      absl::StatusOr<std::string> identity = RevisionServerIdentity(base, *flags.revision);
      if (!identity.ok()) {
        return session.Fail(
            {kExitUsage, absl::StrCat("context file ", path.path,
                                      ": serverIdentity: ", identity.status().message())});
      }
      if (*identity == *RevisionServerIdentity(kDefaultServerIdentity, *flags.revision)) {
        context->set_revision(inject::RevisionDisplayName(*flags.revision));
        context->clear_serveridentity();
      } else {
        context->set_serveridentity(*identity);
        context->clear_revision();
      }
    }
    if (namespace_.set) context->set_namespace_(namespace_.value);
    const std::string server = context->server().empty() ? "127.0.0.1:15014" : context->server();
    std::string identity =
        context->serveridentity().empty() ? kDefaultServerIdentity : context->serveridentity();
    if (!context->revision().empty()) {
      absl::StatusOr<std::string> revision = inject::ParseRevision(context->revision());
      if (!revision.ok()) {
        return session.Fail({kExitUsage, absl::StrCat("context file ", path.path, ": revision: ",
                                                      revision.status().message())});
      }
      identity = *RevisionServerIdentity(kDefaultServerIdentity, *revision);
    }
    if (!fingerprint_.empty() && !flags.ca_file.empty()) {
      return session.Fail({kExitUsage, "--ca-fingerprint and --ca-file exclude each other"});
    }
    const bool plaintext = IsPlaintextServer(server);
    if (plaintext && (!fingerprint_.empty() || !flags.ca_file.empty())) {
      return session.Fail(
          {kExitUsage, absl::StrCat(server, " is plain HTTP: there is no CA to pin")});
    }
    // Replicas share one CA: the first one answers for it.
    const std::string first_server = server.substr(0, server.find(','));
    // The CA to pin: the file given, the root the fingerprint names, or what the file pinned.
    if (!flags.ca_file.empty()) {
      absl::StatusOr<std::string> pem = ReadFile(flags.ca_file);
      if (!pem.ok())
        return session.Fail({kExitUsage, absl::StrCat("cannot read CA file ", flags.ca_file)});
      if (!tls::ParsePemCertificates(*pem).ok()) {
        return session.Fail(
            {kExitUsage, absl::StrCat("CA file ", flags.ca_file, ": not PEM certificates")});
      }
      context->set_certificateauthoritydata(*pem);
      context->clear_certificateauthority();
    } else if (!fingerprint_.empty()) {
      absl::StatusOr<std::string> wanted = tls::ParseSha256Fingerprint(fingerprint_);
      if (!wanted.ok()) {
        return session.Fail(
            {kExitUsage, absl::StrCat("--ca-fingerprint: ", wanted.status().message())});
      }
      absl::StatusOr<std::string> root = FetchRoot(session, first_server, *wanted);
      if (!root.ok()) return session.Fail(ServerFailure(root.status()));
      context->set_certificateauthoritydata(*root);
      context->clear_certificateauthority();
    } else if (!plaintext && context->certificateauthority().empty() &&
               context->certificateauthoritydata().empty()) {
      // Nothing pinned: say what the server presents, pin nothing.
      absl::StatusOr<std::string> bundle = FetchTrustBundleUnverified(first_server, flags.timeout);
      if (!bundle.ok()) {
        return session.Fail(ServerFailure(absl::Status(
            bundle.status().code(), absl::StrCat("no CA pinned, and fetching the control plane's: ",
                                                 bundle.status().message()))));
      }
      // No CA to verify the server with: a setting to give, as for any other command.
      return session.Fail(
          {kExitUsage,
           absl::StrCat("no CA pinned: the control plane at ", first_server, " presents ",
                        Fingerprints(*bundle),
                        "; check that against a trusted source (the control plane logs its CA's "
                        "fingerprint at start; openssl x509 -noout -fingerprint -sha256 -in "
                        "DATA_DIR/ca/root-cert.pem), then run meshctl context set "
                        "--ca-fingerprint SHA256, or give --ca-file")});
    }
    // Whatever is pinned now must verify the server before anything is written.
    std::string ca_pem = context->certificateauthoritydata();
    if (!plaintext) {
      if (ca_pem.empty()) {
        size_t slash = path.path.rfind('/');
        std::string ca_file = context->certificateauthority();
        if (ca_file[0] != '/' && slash != std::string::npos) {
          ca_file = absl::StrCat(path.path.substr(0, slash + 1), ca_file);
        }
        absl::StatusOr<std::string> pem = ReadFile(ca_file);
        if (!pem.ok())
          return session.Fail({kExitUsage, absl::StrCat("cannot read CA file ", ca_file)});
        ca_pem = *std::move(pem);
      }
      if (absl::Status verified = Verify(session, first_server, ca_pem, identity); !verified.ok()) {
        return session.Fail(ServerFailure(verified));
      }
    }
    if (absl::Status s = WriteFileAtomically(path.path, config::ProtoToYaml(*context),
                                             {.create_directory_mode = 0700});
        !s.ok()) {
      return session.Fail({kExitFailed, absl::StrCat("writing the context file: ", s.message())});
    }
    session.io().out << "context file " << path.path << ": server " << server;
    if (!plaintext) {
      session.io().out << ", CA " << Fingerprints(ca_pem) << ", server identity " << identity;
    }
    session.io().out << "\n";
    return kExitOk;
  }

  // How talking to the server to pin its CA failed, as the exit-code table has it: a server,
  // CA or identity meshctl cannot use (InvalidArgument) is a usage error, an answer other than
  // 200 (FailedPrecondition) a failure, anything else a server not reached or not verified.
  static Failure ServerFailure(const absl::Status& status) {
    const int code = absl::IsInvalidArgument(status)      ? kExitUsage
                     : absl::IsFailedPrecondition(status) ? kExitFailed
                                                          : kExitUnreachable;
    return {code, std::string(status.message())};
  }

  // The root of the control plane's trust bundle whose fingerprint is `wanted`, PEM; an
  // UnauthenticatedError when the server presents no such root.
  absl::StatusOr<std::string> FetchRoot(Session& session, const std::string& server,
                                        const std::string& wanted) {
    absl::StatusOr<std::string> bundle =
        FetchTrustBundleUnverified(server, session.connection_flags().timeout);
    if (!bundle.ok()) {
      return absl::Status(bundle.status().code(), absl::StrCat("fetching the control plane's CA: ",
                                                               bundle.status().message()));
    }
    absl::StatusOr<tls::CertificateChain> roots = tls::ParsePemCertificates(*bundle);
    if (!roots.ok()) {
      return absl::UnauthenticatedError(
          absl::StrCat("the control plane at ", server, " sent no PEM trust bundle"));
    }
    for (const auto& root : *roots) {
      if (tls::Sha256Fingerprint(*root) == wanted) {
        // Only this root: others the answer holds are not vouched for by the fingerprint.
        absl::StatusOr<std::string> pem = tls::CertificateToPem(*root);
        if (pem.ok()) return pem;
      }
    }
    return absl::UnauthenticatedError(
        absl::StrCat("the control plane at ", server, " presents the CA ", Fingerprints(*bundle),
                     ", not the pinned ", wanted,
                     ": pinned nothing (a wrong fingerprint, another control "
                     "plane, or someone between meshctl and it)"));
  }

  // GET /version over TLS verified with `ca_pem` and `identity`.
  absl::Status Verify(Session& session, const std::string& server, const std::string& ca_pem,
                      const std::string& identity) {
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        ServerTrustContext(ca_pem, identity);
    if (!context.ok()) return absl::InvalidArgumentError(context.status().message());
    HttpRequestOptions options;
    options.timeout = session.connection_flags().timeout;
    options.tls = *context;
    absl::StatusOr<HttpResponse> version = HttpRequest(server, "GET", "/version", {}, "", options);
    if (!version.ok()) {
      return absl::Status(
          version.status().code(),
          absl::StrCat("the control plane at ", server, " did not verify with the CA to pin (",
                       Fingerprints(ca_pem), ") and the identity ", identity, ": ",
                       version.status().message(), "; nothing written"));
    }
    if (version->status != 200) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the control plane at ", server, " answered GET /version with HTTP ", version->status));
    }
    return absl::OkStatus();
  }

  std::string fingerprint_;
  NamespaceOption namespace_;
};

}  // namespace

CommandSpec ContextCommand() {
  return {
      .name = "context",
      .args = "set|show",
      .summary = "write the context file (server, pinned CA, token), or show it",
      .about =
          "context set writes the context file (--context-file, else $MESHCTL_CONFIG, "
          "else ~/.meshlet/meshctl.yaml; mode 0600) with the global flags given: --server, "
          "--token-file or --token, --server-identity or --revision (which implies the identity of "
          "that revision's API), and -n. It pins the control plane's "
          "CA: --ca-file FILE, or --ca-fingerprint SHA256, with which meshctl fetches the "
          "CA from the server and keeps it only if its fingerprint matches; either way the "
          "server must then verify with it before anything is written. Without either and "
          "nothing pinned yet, it prints the fingerprint the server presents and pins "
          "nothing. context show prints what meshctl connects with.",
      .examples = {{"pin the CA the control plane logged at start",
                    "meshctl context set --server cp.example:15014 --token-file "
                    "~/api-token --ca-fingerprint sha256:3f9a..."},
                   {"on the control plane's host",
                    "meshctl context set --ca-file /var/lib/meshlet/ca/root-cert.pem "
                    "--token-file /var/lib/meshlet/api-token"},
                   {"", "meshctl context show"}},
      .needs_context = false,
      .make = [] { return std::make_unique<ContextRun>(); }};
}

}  // namespace meshlet::controlplane::cli
