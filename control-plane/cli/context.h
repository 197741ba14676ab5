#pragma once

// Where meshctl connects, how it verifies the control plane and as whom: the global flags
// (--server, --token, --token-file, --ca-file, --server-identity, --revision, --context-file,
// --timeout, accepted before or after the command) over the context file
// (docs/meshctl.md#connecting; its keys are context.proto's), over the defaults.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flags/flags.h"
#include "control-plane/cli/context.pb.h"

namespace meshlet::controlplane::cli {

// The identity the control plane's API certificate carries unless the context says otherwise.
inline constexpr char kDefaultServerIdentity[] =
    "spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane";

struct ConnectionFlags {
  std::string server;           // --server HOST:PORT
  std::string token;            // --token TOKEN
  std::string token_file;       // --token-file FILE
  std::string ca_file;          // --ca-file FILE
  std::string server_identity;  // --server-identity SPIFFE_ID
  // --revision NAME, parsed ("" the unnamed revision): the API's identity is that revision's
  // unless --server-identity says otherwise. Commands with a --revision of their own (upgrade,
  // inject) get the value too (meshctl.cc).
  std::optional<std::string> revision;
  std::string context_file;                  // --context-file FILE
  std::chrono::milliseconds timeout{10000};  // --timeout DURATION, per request
};

// The global flags, writing into `flags`, in the order `meshctl help` lists them.
std::vector<flags::Flag> ConnectionFlagTable(ConnectionFlags& flags);

// What the process environment says: $MESHCTL_CONFIG and $HOME (empty when unset).
struct Environment {
  std::string meshctl_config;
  std::string home;
};

struct Connection {
  std::string server;      // HOST:PORT[,HOST:PORT...]; http://HOST:PORT for plain HTTP
  std::string token;       // empty: none
  std::string namespace_;  // the context file's default namespace, or empty
  // The CA certificates (PEM) that verify the API's certificate, and where they came from
  // ("--ca-file FILE", "context file FILE"), for messages; empty when nothing names any.
  std::string ca_pem;
  std::string ca_source;
  std::string server_identity;  // kDefaultServerIdentity unless set
  // The revision whose identity server_identity is, when --revision or the context's revision
  // chose it (display name: "default" for the unnamed one); empty otherwise.
  std::string revision;
};

// The identity of revision `revision`'s API ("" the unnamed one): `base`'s trust domain and
// namespace (a spiffe://TD/ns/NS/sa/SA id; another form keeps only its trust domain, with
// namespace meshlet-system), the revision's service account meshlet-control-plane[-<revision>].
absl::StatusOr<std::string> RevisionServerIdentity(absl::string_view base,
                                                   absl::string_view revision);

// The context file meshctl reads: --context-file, else $MESHCTL_CONFIG, else
// ~/.meshlet/meshctl.yaml ("" without $HOME). `must_exist` says whether it was named (the
// default file may be absent).
struct ContextPath {
  std::string path;
  bool must_exist = false;
};
ContextPath FindContextFile(const ConnectionFlags& flags, const Environment& env);

// Reads the context file at `path` (absent and !must_exist: an empty context). Errors
// (InvalidArgument) name the file: unreadable, not YAML, an unknown key (with its line and the
// known keys).
absl::StatusOr<::meshlet::cli::MeshctlContext> ReadContextFile(const ContextPath& path);

// Reads the context file and the files it names, and applies the flags over them. The server
// defaults to 127.0.0.1:15014; relative tokenFile and certificateAuthority paths are relative to
// the context file. Errors (InvalidArgument: exit code 2) name the file: unreadable, not YAML, an
// unknown key, a CA that is not PEM certificates, a serverIdentity that is not a SPIFFE id, a
// revision that is not a revision name, serverIdentity and revision both in the file.
// The identity: --server-identity, else --revision's (in the context's trust domain and
// namespace), else the context's serverIdentity or revision's, else kDefaultServerIdentity.
absl::StatusOr<Connection> LoadConnection(const ConnectionFlags& flags, const Environment& env);

// Whether `server` (one replica's HOST:PORT) is to be reached over plain HTTP: it says http://.
bool IsPlaintextServer(absl::string_view server);

}  // namespace meshlet::controlplane::cli
