#pragma once

// What every meshctl command is made of. A command is a CommandSpec (its name, usage, help text
// and examples) whose `make` builds a Command: the command's flag table, bound to the command's
// own fields, and Run. The dispatcher (meshctl.h) parses the command line with that table
// (common/flags), so a command accepts exactly the flags its help lists, reads the context file
// when the command needs it, and calls Run with a Session: the positional arguments, the API
// client, the output streams.
//
// Each command lives in its own file with its table (apply.cc, get.cc, ...); commands.h lists
// them. Single-threaded.

#include <functional>
#include <istream>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/flags/flags.h"
#include "control-plane/cli/api_client.h"
#include "control-plane/cli/context.h"
#include "control-plane/cli/failure.h"
#include "control-plane/policy/kinds.h"

namespace meshlet::controlplane::cli {

// Where a command reads and writes.
struct Io {
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
  bool out_is_terminal = false;  // `top` redraws in place on a terminal
};

struct CommandSpec;

// What -n, --namespace said.
struct NamespaceOption {
  std::string value;
  bool set = false;
};

// One run of one command. Owned by the dispatcher for the run; the Io streams and the transport
// must outlive it.
class Session {
 public:
  Session(Io io, ApiTransport& transport, ConnectionFlags connection, Environment env,
          const CommandSpec& command)
      : io_(io),
        api_(transport, io.err),
        connection_(std::move(connection)),
        env_(std::move(env)),
        command_(command) {
    api_.set_timeout(connection_.timeout);
  }

  Io& io() { return io_; }
  ApiClient& api() { return api_; }
  const CommandSpec& command() const { return command_; }
  // The global flags and the environment, for commands that read or write the context file
  // themselves (context set).
  const ConnectionFlags& connection_flags() const { return connection_; }
  // For a command that learns which revision's API it talks to (upgrade --revision TAG): before
  // Connect().
  ConnectionFlags& mutable_connection_flags() { return connection_; }
  const Environment& environment() const { return env_; }
  std::vector<std::string>& positional() { return positional_; }

  // Reads the context file and points the API client at the server it names. Done before Run for
  // the commands that need it (CommandSpec::needs_context).
  std::optional<Failure> Connect();

  // Prints "meshctl: MESSAGE" on stderr; returns the failure's exit code.
  int Fail(const Failure& failure) { return Report(io_.err, failure); }
  // A usage error for arguments the flag table cannot check: the command's usage line.
  Failure UsageFailure() const;

  // The namespace the command works in: -n's, else the context file's, else "default".
  std::string Namespace(const NamespaceOption& option) const;

  // With -o json the API's JSON answer as it is, with -o yaml as YAML; returns the exit code.
  // nullopt for any other output (the table), which the caller formats.
  std::optional<int> PrintStructured(absl::string_view output, const std::string& json);

  // GET `path`: the body as it is with -o json, else as `format` renders it.
  int ShowReply(absl::string_view output, const std::string& path,
                const std::function<absl::StatusOr<std::string>(absl::string_view)>& format);

  // The first positional argument as a kind (or a plural, or a short name); null after printing
  // a usage error when it is missing or unknown (`*exit_code` is then kExitUsage).
  const policy::KindInfo* KindArg(int* exit_code);

 private:
  Io io_;
  ApiClient api_;
  ConnectionFlags connection_;
  Environment env_;
  const CommandSpec& command_;
  std::vector<std::string> positional_;
  std::string context_namespace_;
};

class Command {
 public:
  virtual ~Command() = default;
  // The command's flags but --help, their setters writing into this command.
  virtual std::vector<flags::Flag> Flags() = 0;
  // After its flags are parsed (and the context file read when the spec says so).
  virtual int Run(Session& session) = 0;
};

struct CommandSpec {
  std::string name;     // "apply"
  std::string args;     // positional arguments as the usage line shows them ("KIND [NAME]")
  std::string summary;  // one line in `meshctl help`
  std::string about;    // the first paragraph of `meshctl help COMMAND`
  std::vector<std::pair<std::string, std::string>> examples;  // {what it shows, command line}
  bool needs_context = true;  // false: Run without reading the context file
  std::function<std::unique_ptr<Command>()> make;
};

// A command without flags whose Run is `run`.
std::function<std::unique_ptr<Command>()> Runs(std::function<int(Session&)> run);

// Flags several commands share.

// -n, --namespace NS.
flags::Flag NamespaceFlag(
    NamespaceOption* out,
    std::string help = "the namespace (default: the context file's, else default)",
    bool required = false);
// --revision NAME, a revision name parsed into `out` ("default" gives "", the unnamed one),
// `given` (when not null) set.
flags::Flag RevisionFlag(std::string* out, std::string help, bool required = false,
                         bool* given = nullptr);
// -o, --output, one of `formats`.
flags::Flag OutputFlag(std::string* out, std::vector<std::string> formats, std::string help);
// -f, --filename FILE|DIR|-, repeatable.
flags::Flag FileFlag(std::vector<std::string>* out, bool required);
// --dry-run (also spelled --dry-run=server and --dry-run=client, as kubectl does).
flags::Flag DryRunFlag(bool* out, std::string help);
// A switch, with a shorthand when not empty.
flags::Flag Switch(std::string name, std::string shorthand, bool* out, std::string help);

}  // namespace meshlet::controlplane::cli
