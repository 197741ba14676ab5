// meshctl: the operator's command-line client for the control-plane API. docs/meshctl.md is the
// reference. Exit codes: 0 success, 1 the operation failed (invalid policy, refused, not found,
// differences found by `diff`), 2 usage errors, 3 the control plane could not be reached or
// refused the token.

#include <dirent.h>
#include <google/protobuf/descriptor.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/config/yaml_proto.h"
#include "control-plane/cli/context.pb.h"
#include "control-plane/cli/http_client.h"
#include "control-plane/cli/output.h"
#include "control-plane/cli/trace_view.h"
#include "control-plane/policy/codec.h"
#include "control-plane/policy/kinds.h"
#include "control-plane/policy/validate.h"

namespace meshlet::controlplane::cli {
namespace {

using ::meshlet::cli::MeshctlContext;

constexpr char kVersion[] = "0.1.0";
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

// Help text is wrapped to this many columns.
constexpr size_t kHelpWidth = 100;

struct Failure {
  int code;
  std::string message;
};

// `words` joined by spaces and wrapped at kHelpWidth; lines after the first start with `indent`
// spaces, and the first is taken to start at that column too.
std::string Wrap(const std::vector<std::string>& words, size_t indent) {
  std::string out;
  size_t column = indent;
  for (const std::string& word : words) {
    if (column > indent && column + 1 + word.size() > kHelpWidth) {
      absl::StrAppend(&out, "\n", std::string(indent, ' '));
      column = indent;
    } else if (column > indent) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
  }
  return out;
}

std::string Wrap(absl::string_view text, size_t indent) {
  return Wrap(absl::StrSplit(text, ' ', absl::SkipEmpty()), indent);
}

class Meshctl {
 public:
  int Main(std::vector<std::string> args) {
    if (std::optional<Failure> f = ParseGlobalFlags(args)) return Fail(*f);
    if (args.empty()) {
      std::cerr << GlobalHelp();
      return kExitUsage;
    }
    std::string name = args[0];
    args.erase(args.begin());
    if (name == "--help" || name == "-h") name = "help";
    command_ = FindCommand(name);
    if (command_ == nullptr) return Fail({kExitUsage, UnknownCommand(name)});
    if (std::optional<Failure> f = ParseCommandFlags(*command_, args)) return Fail(*f);
    if (help_requested_) {
      std::cout << CommandHelp(*command_);
      return kExitOk;
    }
    if (command_->needs_context) {
      if (std::optional<Failure> f = LoadContext()) return Fail(*f);
    }
    return command_->run(*this);
  }

 private:
  int Fail(const Failure& f) {
    std::cerr << "meshctl: " << f.message << "\n";
    return f.code;
  }

  // ---------------------------------------------------------------------------------------------
  // Commands and their flags, as data. The parser accepts exactly the flags in a command's table
  // and `meshctl help COMMAND` (or COMMAND --help) prints that same table, so help and parsing
  // cannot disagree. Each command's table is defined next to the command.

  // One flag: `--name VALUE`, `--name=VALUE`, or the shorthand `-s VALUE`; a switch takes none.
  struct FlagSpec {
    std::string name;       // "--namespace"
    std::string shorthand;  // "-n", or empty
    std::string value;      // what it takes, as help shows it ("NS"); empty for a switch
    std::string help;
    bool required = false;  // the command does not run without it
    // Stores the value (a switch gets "", or what follows '=' in "--switch=..."). An error is a
    // usage error; the message gets the flag's name in front.
    std::function<absl::Status(Meshctl&, const std::string& value)> set;
  };

  struct CommandSpec {
    std::string name;     // "apply"
    std::string args;     // positional arguments as the usage line shows them ("KIND [NAME]")
    std::string summary;  // one line in `meshctl help`
    std::string about;    // the first paragraph of `meshctl help COMMAND`
    std::vector<FlagSpec> flags;
    std::vector<std::pair<std::string, std::string>> examples;  // {what it shows, command line}
    std::function<int(Meshctl&)> run;
    bool needs_context = true;  // false: runs without reading the context file
  };

  // Every command, in the order `meshctl help` lists them.
  static const std::vector<CommandSpec>& Commands() {
    static const auto* commands = new std::vector<CommandSpec>{
        ApplyCommand(),     GetCommand(),         DescribeCommand(),    DeleteCommand(),
        DiffCommand(),      ProxyStatusCommand(), ProxyConfigCommand(), TokenCommand(),
        TracesCommand(),    TraceCommand(),       StatCommand(),        TopCommand(),
        DashboardCommand(), CheckCommand(),       VersionCommand(),     HelpCommand(),
    };
    return *commands;
  }

  static const CommandSpec* FindCommand(absl::string_view name) {
    for (const CommandSpec& c : Commands()) {
      if (c.name == name) return &c;
    }
    return nullptr;
  }

  static std::string UnknownCommand(absl::string_view name) {
    return absl::StrCat(
        "unknown command \"", name, "\"; known commands: ",
        absl::StrJoin(Commands(), ", ",
                      [](std::string* out, const CommandSpec& c) { out->append(c.name); }),
        " (see meshctl help)");
  }

  // The flag every command has besides its own.
  static FlagSpec HelpFlag() {
    return {.name = "--help",
            .shorthand = "-h",
            .help = "this help",
            .set = [](Meshctl& m, const std::string& value) {
              if (!value.empty()) return absl::InvalidArgumentError("takes no value");
              m.help_requested_ = true;
              return absl::OkStatus();
            }};
  }

  static std::vector<FlagSpec> FlagsOf(const CommandSpec& command) {
    std::vector<FlagSpec> flags = command.flags;
    flags.push_back(HelpFlag());
    return flags;
  }

  // Accepted anywhere on the command line, before or after the command.
  static const std::vector<FlagSpec>& GlobalFlags() {
    static const auto* flags = new std::vector<FlagSpec>{
        StringFlag("--server", "HOST:PORT", &Meshctl::server_flag_,
                   "the control-plane API (default: the context file's, else 127.0.0.1:15014)"),
        StringFlag("--token", "TOKEN", &Meshctl::token_flag_,
                   "the API token (default: the context file's)"),
        StringFlag("--token-file", "FILE", &Meshctl::token_file_flag_,
                   "read the API token from FILE"),
        StringFlag("--context-file", "FILE", &Meshctl::context_file_flag_,
                   absl::StrCat("default $MESHCTL_CONFIG, else ~/.meshlet/meshctl.yaml; its keys "
                                "(no others): ",
                                ContextKeys())),
        {.name = "--timeout",
         .value = "DURATION",
         .help = "per request (default 10s)",
         .set =
             [](Meshctl& m, const std::string& value) {
               absl::StatusOr<absl::Duration> d = config::ParseDurationText(value);
               if (!d.ok() || *d <= absl::ZeroDuration()) {
                 return absl::InvalidArgumentError(
                     absl::StrCat("\"", value, "\" is not a duration"));
               }
               m.http_options_.timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(*d));
               return absl::OkStatus();
             }},
    };
    return *flags;
  }

  static std::string ContextKeys() {
    const google::protobuf::Descriptor* d = MeshctlContext::descriptor();
    std::vector<std::string> names;
    for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->name());
    return absl::StrJoin(names, ", ");
  }

  // Flag builders for the tables.
  static FlagSpec StringFlag(std::string name, std::string value, std::string Meshctl::*member,
                             std::string help) {
    return {.name = std::move(name),
            .value = std::move(value),
            .help = std::move(help),
            .set = [member](Meshctl& m, const std::string& v) {
              m.*member = v;
              return absl::OkStatus();
            }};
  }

  static FlagSpec Switch(std::string name, std::string shorthand, bool Meshctl::*member,
                         std::string help) {
    return {.name = std::move(name),
            .shorthand = std::move(shorthand),
            .help = std::move(help),
            .set = [member](Meshctl& m, const std::string& v) {
              if (!v.empty()) return absl::InvalidArgumentError("takes no value");
              m.*member = true;
              return absl::OkStatus();
            }};
  }

  static FlagSpec NamespaceFlag(
      std::string help = "the namespace (default: the context file's, else default)",
      bool required = false) {
    return {.name = "--namespace",
            .shorthand = "-n",
            .value = "NS",
            .help = std::move(help),
            .required = required,
            .set = [](Meshctl& m, const std::string& v) {
              m.namespace_ = v;
              m.namespace_set_ = true;
              return absl::OkStatus();
            }};
  }

  static FlagSpec FileFlag(bool required) {
    return {.name = "--filename",
            .shorthand = "-f",
            .value = "FILE|DIR|-",
            .help =
                "a file, a directory (its *.yaml, *.yml and *.json files in name order) or - "
                "for stdin; may be given several times",
            .required = required,
            .set = [](Meshctl& m, const std::string& v) {
              m.files_.push_back(v);
              return absl::OkStatus();
            }};
  }

  static FlagSpec OutputFlag(std::vector<std::string> formats, std::string help) {
    std::string value = absl::StrJoin(formats, "|");
    return {.name = "--output",
            .shorthand = "-o",
            .value = std::move(value),
            .help = std::move(help),
            .set = [formats = std::move(formats)](Meshctl& m, const std::string& v) {
              if (std::find(formats.begin(), formats.end(), v) == formats.end()) {
                return absl::InvalidArgumentError(
                    absl::StrCat("\"", v, "\"; one of ", absl::StrJoin(formats, ", ")));
              }
              m.output_ = v;
              return absl::OkStatus();
            }};
  }

  static FlagSpec DryRunFlag(std::string help) {
    return {
        .name = "--dry-run", .help = std::move(help), .set = [](Meshctl& m, const std::string& v) {
          // kubectl's spellings --dry-run=server and --dry-run=client mean the same here.
          if (!v.empty() && v != "server" && v != "client") {
            return absl::InvalidArgumentError(
                absl::StrCat("\"", v, "\"; --dry-run=server and =client are the only values"));
          }
          m.dry_run_ = true;
          return absl::OkStatus();
        }};
  }

  // ---------------------------------------------------------------------------------------------
  // Parsing and help

  // The flag of `flags` that `arg` spells ("-n", "--namespace", "--namespace=x"), or null.
  static const FlagSpec* FindFlag(const std::vector<FlagSpec>& flags, absl::string_view arg) {
    const absl::string_view spelled = arg.substr(0, arg.find('='));
    for (const FlagSpec& f : flags) {
      if (spelled == f.name || (!f.shorthand.empty() && spelled == f.shorthand)) return &f;
    }
    return nullptr;
  }

  // Stores `flag`'s value, from args[i] ("--flag=value") or the argument after it.
  std::optional<Failure> SetFlag(const FlagSpec& flag, const std::vector<std::string>& args,
                                 size_t& i) {
    const std::string& arg = args[i];
    const size_t equals = arg.find('=');
    const std::string spelled = arg.substr(0, equals);
    std::string value;
    if (equals != std::string::npos) {
      value = arg.substr(equals + 1);
    } else if (!flag.value.empty()) {
      if (i + 1 >= args.size()) {
        return Failure{kExitUsage, absl::StrCat(spelled, ": needs a value (", flag.value, ")")};
      }
      value = args[++i];
    }
    if (absl::Status s = flag.set(*this, value); !s.ok()) {
      return Failure{kExitUsage, absl::StrCat(spelled, ": ", s.message())};
    }
    return std::nullopt;
  }

  // Takes the global flags out of `args`, wherever they are.
  std::optional<Failure> ParseGlobalFlags(std::vector<std::string>& args) {
    std::vector<std::string> rest;
    for (size_t i = 0; i < args.size(); ++i) {
      if (const FlagSpec* flag = FindFlag(GlobalFlags(), args[i]); flag != nullptr) {
        if (std::optional<Failure> f = SetFlag(*flag, args, i)) return f;
      } else {
        rest.push_back(args[i]);
      }
    }
    args = std::move(rest);
    return std::nullopt;
  }

  // `command`'s flags and positional arguments. Stops at --help/-h.
  std::optional<Failure> ParseCommandFlags(const CommandSpec& command,
                                           const std::vector<std::string>& args) {
    const std::vector<FlagSpec> flags = FlagsOf(command);
    std::set<std::string> given;
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& arg = args[i];
      if (!absl::StartsWith(arg, "-") || arg == "-") {
        positional_.push_back(arg);
        continue;
      }
      const FlagSpec* flag = FindFlag(flags, arg);
      if (flag == nullptr) {
        return Failure{kExitUsage,
                       absl::StrCat("unknown flag ", arg.substr(0, arg.find('=')), " for ",
                                    command.name, " (see meshctl help ", command.name, ")")};
      }
      if (std::optional<Failure> f = SetFlag(*flag, args, i)) return f;
      if (help_requested_) return std::nullopt;
      given.insert(flag->name);
    }
    for (const FlagSpec& flag : command.flags) {
      if (flag.required && given.count(flag.name) == 0) {
        return Failure{kExitUsage, absl::StrCat(command.name, " needs ", FlagUsage(flag),
                                                " (see meshctl help ", command.name, ")")};
      }
    }
    return std::nullopt;
  }

  // "-n NS", "--dry-run".
  static std::string FlagUsage(const FlagSpec& flag) {
    return absl::StrCat(flag.shorthand.empty() ? flag.name : flag.shorthand,
                        flag.value.empty() ? "" : " ", flag.value);
  }

  // "meshctl get KIND [NAME] [-n NS] [-A] [-o table|yaml|json]"
  static std::string UsageLine(const CommandSpec& command) {
    std::vector<std::string> words = {"meshctl", command.name};
    if (!command.args.empty()) words.push_back(command.args);
    for (const FlagSpec& flag : command.flags) {
      words.push_back(flag.required ? FlagUsage(flag) : absl::StrCat("[", FlagUsage(flag), "]"));
    }
    return Wrap(words, 4);
  }

  // A usage error for the command being run, for arguments its table cannot check.
  Failure UsageFailure() const {
    return Failure{kExitUsage, absl::StrCat("usage: ", UsageLine(*command_), " (see meshctl help ",
                                            command_->name, ")")};
  }

  // Two columns: "  -n, --namespace NS   help", the help wrapped beside the names.
  static std::string FlagTable(const std::vector<FlagSpec>& flags) {
    std::vector<std::string> names;
    size_t width = 0;
    for (const FlagSpec& f : flags) {
      names.push_back(absl::StrCat(f.shorthand.empty() ? "    " : f.shorthand + ", ", f.name,
                                   f.value.empty() ? "" : " ", f.value));
      width = std::max(width, names.back().size());
    }
    std::string out;
    for (size_t i = 0; i < flags.size(); ++i) {
      absl::StrAppend(&out, "  ", names[i], std::string(width - names[i].size() + 3, ' '),
                      Wrap(flags[i].help, width + 5), "\n");
    }
    return out;
  }

  static std::string GlobalHelp() {
    std::string out = absl::StrCat(
        "meshctl: the operator's client for the meshlet control-plane API.\n\n"
        "Usage:\n  meshctl [global flags] COMMAND [arguments] [flags]\n\nCommands:\n");
    size_t width = 0;
    for (const CommandSpec& c : Commands()) width = std::max(width, c.name.size());
    for (const CommandSpec& c : Commands()) {
      absl::StrAppend(&out, "  ", c.name, std::string(width - c.name.size() + 3, ' '),
                      Wrap(c.summary, width + 5), "\n");
    }
    absl::StrAppend(&out, "\nGlobal flags (before or after the command):\n",
                    FlagTable(GlobalFlags()), "\n",
                    Wrap("\"meshctl help COMMAND\" or \"meshctl COMMAND --help\" shows a "
                         "command's usage, flags and examples.",
                         0),
                    "\n",
                    Wrap("Exit codes: 0 success; 1 the operation failed (invalid or refused "
                         "resource, not found, diff found differences); 2 usage error (unknown "
                         "command, flag or kind, missing argument, unreadable or invalid context "
                         "file); 3 the control plane cannot be reached or refused the token.",
                         0),
                    "\n");
    return out;
  }

  static std::string CommandHelp(const CommandSpec& command) {
    std::string out = absl::StrCat(Wrap(command.about, 0), "\n\nUsage:\n  ", UsageLine(command),
                                   "\n\nFlags:\n", FlagTable(FlagsOf(command)));
    if (!command.examples.empty()) {
      out += "\nExamples:\n";
      for (const auto& [what, line] : command.examples) {
        if (!what.empty()) absl::StrAppend(&out, "  # ", what, "\n");
        absl::StrAppend(&out, "  ", line, "\n");
      }
    }
    std::vector<std::string> global;
    for (const FlagSpec& f : GlobalFlags()) global.push_back(f.name);
    absl::StrAppend(
        &out, "\n",
        Wrap(absl::StrCat("Global flags: ", absl::StrJoin(global, ", "), " (see meshctl help)."),
             0),
        "\n");
    return out;
  }

  static CommandSpec HelpCommand() {
    return {.name = "help",
            .args = "[COMMAND]",
            .summary = "a command's usage, flags and examples; without COMMAND this list",
            .about =
                "Shows a command's usage, flags and examples (the same as meshctl COMMAND "
                "--help), or without COMMAND the list of commands and the global flags.",
            .examples = {{"", "meshctl help apply"}, {"", "meshctl get --help"}},
            .run = &Meshctl::Help,
            .needs_context = false};
  }

  int Help() {
    if (positional_.empty()) {
      std::cout << GlobalHelp();
      return kExitOk;
    }
    if (positional_.size() > 1) return Fail(UsageFailure());
    const CommandSpec* command = FindCommand(positional_[0]);
    if (command == nullptr) return Fail({kExitUsage, UnknownCommand(positional_[0])});
    std::cout << CommandHelp(*command);
    return kExitOk;
  }

  // ---------------------------------------------------------------------------------------------
  // Context

  static std::optional<std::string> ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::optional<Failure> LoadContext() {
    std::string context_path = context_file_flag_;
    bool explicit_path = !context_path.empty();
    if (context_path.empty()) {
      if (const char* env = std::getenv("MESHCTL_CONFIG"); env != nullptr && *env != '\0') {
        context_path = env;
        explicit_path = true;
      } else if (const char* home = std::getenv("HOME"); home != nullptr) {
        context_path = absl::StrCat(home, "/.meshlet/meshctl.yaml");
      }
    }
    std::string server = "127.0.0.1:15014";
    std::string token, token_file;
    if (!context_path.empty()) {
      std::optional<std::string> text = ReadFile(context_path);
      if (!text.has_value() && explicit_path) {
        return Failure{kExitUsage, absl::StrCat("cannot read context file ", context_path)};
      }
      if (text.has_value()) {
        // Unknown keys are errors with file, line and the known keys, as in policy files.
        MeshctlContext context;
        config::YamlParseOptions options;
        options.source_name = context_path;
        if (absl::Status s = config::YamlToProto(*text, context, options); !s.ok()) {
          return Failure{kExitUsage, absl::StrCat("context file ", s.message())};
        }
        if (!context.server().empty()) server = context.server();
        token = context.token();
        token_file = context.tokenfile();
        if (!context.namespace_().empty() && !namespace_set_) namespace_ = context.namespace_();
        // A relative tokenFile is relative to the context file.
        if (!token_file.empty() && token_file[0] != '/') {
          size_t slash = context_path.rfind('/');
          if (slash != std::string::npos) {
            token_file = absl::StrCat(context_path.substr(0, slash + 1), token_file);
          }
        }
      }
    }
    if (!server_flag_.empty()) server = server_flag_;
    if (!token_file_flag_.empty()) {
      token_file = token_file_flag_;
      token.clear();
    }
    if (!token_flag_.empty()) token = token_flag_;
    if (token.empty() && !token_file.empty()) {
      std::optional<std::string> text = ReadFile(token_file);
      if (!text.has_value()) {
        return Failure{kExitUsage, absl::StrCat("cannot read token file ", token_file)};
      }
      token = std::string(absl::StripAsciiWhitespace(*text));
    }
    server_ = server;
    token_ = token;
    if (namespace_.empty()) namespace_ = std::string(policy::kDefaultNamespace);
    return std::nullopt;
  }

  // ---------------------------------------------------------------------------------------------
  // Requests

  struct Reply {
    HttpResponse http;
    // The API's error text ("message" of a Status body) or the body.
    std::string ErrorMessage() const {
      try {
        YAML::Node node = YAML::Load(http.body);
        if (node.IsMap() && node["message"]) return node["message"].as<std::string>();
      } catch (const YAML::Exception&) {
      }
      return std::string(absl::StripAsciiWhitespace(http.body));
    }
    std::vector<std::pair<std::string, std::string>> Causes() const {
      std::vector<std::pair<std::string, std::string>> out;
      try {
        YAML::Node node = YAML::Load(http.body);
        YAML::Node causes = node["details"]["causes"];
        if (causes.IsSequence()) {
          for (const auto& c : causes) {
            out.emplace_back(c["field"] ? c["field"].as<std::string>() : "",
                             c["message"] ? c["message"].as<std::string>() : "");
          }
        }
      } catch (const YAML::Exception&) {
      }
      return out;
    }
  };

  // Transport failures and 401 end the command (exit 3); other statuses go back to the caller.
  std::optional<Reply> Call(absl::string_view method, const std::string& path,
                            absl::string_view body = "", int* exit_code = nullptr) {
    std::vector<std::pair<std::string, std::string>> headers = {{"accept", "application/json"}};
    if (!token_.empty()) headers.emplace_back("authorization", absl::StrCat("Bearer ", token_));
    if (!body.empty()) headers.emplace_back("content-type", "application/json");
    absl::StatusOr<HttpResponse> response =
        HttpRequest(server_, method, path, headers, body, http_options_);
    if (!response.ok()) {
      Fail({kExitUnreachable, absl::StrCat("cannot reach the control plane at ", server_, ": ",
                                           response.status().message(),
                                           " (is it running? set --server or the context file)")});
      if (exit_code != nullptr) *exit_code = kExitUnreachable;
      return std::nullopt;
    }
    if (response->status == 401) {
      Fail({kExitUnreachable,
            absl::StrCat("the control plane at ", server_,
                         " refused the token: ", Reply{*response}.ErrorMessage(),
                         token_.empty() ? " (no token: pass --token/--token-file or set token in "
                                          "the context file)"
                                        : "")});
      if (exit_code != nullptr) *exit_code = kExitUnreachable;
      return std::nullopt;
    }
    for (const std::string& warning : response->HeaderValues("warning")) {
      std::string text = warning;
      if (absl::StartsWith(text, "299 - ")) text = text.substr(6);
      if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
        text = text.substr(1, text.size() - 2);
      }
      std::cerr << "Warning: " << text << "\n";
    }
    return Reply{*std::move(response)};
  }

  static std::string ResourcePath(const policy::KindInfo& info, absl::string_view namespace_,
                                  absl::string_view name) {
    std::string path = info.namespaced ? absl::StrCat("/apis/meshlet.io/v1/namespaces/", namespace_,
                                                      "/", info.plural)
                                       : absl::StrCat("/apis/meshlet.io/v1/", info.plural);
    if (!name.empty()) absl::StrAppend(&path, "/", name);
    return path;
  }

  // ---------------------------------------------------------------------------------------------
  // Documents from files

  struct Document {
    std::string source;  // "file.yaml (document 2)"
    std::string file;
    int index = 0;
    const policy::KindInfo* info = nullptr;
    std::unique_ptr<google::protobuf::Message> message;
    std::string namespace_;
    std::string name;
    std::string Label() const {
      return absl::StrCat(absl::AsciiStrToLower(info->kind), ".meshlet.io/", name);
    }
  };

  std::optional<Failure> CollectFiles(std::vector<std::string>& out) {
    for (const std::string& f : files_) {
      struct stat st;
      if (f == "-") {
        out.push_back(f);
      } else if (::stat(f.c_str(), &st) != 0) {
        return Failure{kExitFailed, absl::StrCat(f, ": no such file or directory")};
      } else if (S_ISDIR(st.st_mode)) {
        std::vector<std::string> names;
        if (DIR* dir = ::opendir(f.c_str())) {
          while (dirent* e = ::readdir(dir)) {
            std::string name = e->d_name;
            if (absl::EndsWith(name, ".yaml") || absl::EndsWith(name, ".yml") ||
                absl::EndsWith(name, ".json")) {
              names.push_back(absl::StrCat(f, absl::EndsWith(f, "/") ? "" : "/", name));
            }
          }
          ::closedir(dir);
        }
        std::sort(names.begin(), names.end());
        out.insert(out.end(), names.begin(), names.end());
      } else {
        out.push_back(f);
      }
    }
    return std::nullopt;
  }

  // Parses and validates every document of every file; prints every problem. False if any.
  bool LoadDocuments(std::vector<Document>& documents) {
    std::vector<std::string> files;
    if (std::optional<Failure> f = CollectFiles(files)) {
      Fail(*f);
      return false;
    }
    bool ok = true;
    for (const std::string& file : files) {
      std::string text;
      const std::string source_name = file == "-" ? "<stdin>" : file;
      if (file == "-") {
        std::stringstream s;
        s << std::cin.rdbuf();
        text = s.str();
      } else if (std::optional<std::string> content = ReadFile(file)) {
        text = std::move(*content);
      } else {
        std::cerr << "error: " << file << ": cannot read\n";
        ok = false;
        continue;
      }
      absl::StatusOr<std::vector<config::YamlDocument>> split =
          config::SplitYamlDocuments(text, source_name);
      if (!split.ok()) {
        std::cerr << "error: " << split.status().message() << "\n";
        ok = false;
        continue;
      }
      for (const config::YamlDocument& yaml : *split) {
        Document doc;
        doc.file = source_name;
        doc.index = yaml.index;
        doc.source = absl::StrCat(source_name, " (document ", yaml.index + 1, ")");
        config::YamlParseOptions options;
        options.source_name = source_name;
        options.line_offset = yaml.first_line - 1;
        absl::StatusOr<policy::ParsedResource> parsed = policy::ParseResource(yaml.yaml, options);
        if (!parsed.ok()) {
          std::string message(parsed.status().message());
          // Errors without a position ("kind: ...") get the document's.
          if (!absl::StartsWith(message, source_name)) {
            message = absl::StrCat(source_name, ":", yaml.first_line, ": ", message);
          }
          std::cerr << "error: " << message << " (document " << yaml.index + 1 << ")\n";
          ok = false;
          continue;
        }
        doc.info = parsed->info;
        doc.message = std::move(parsed->message);
        meshlet::policy::ObjectMeta* meta = policy::MutableMetadata(*doc.message);
        if (doc.info->namespaced && meta->namespace_().empty()) {
          meta->set_namespace_(namespace_);
        } else if (doc.info->namespaced && namespace_set_ && meta->namespace_() != namespace_) {
          std::cerr << "error: " << doc.source << ": metadata.namespace \"" << meta->namespace_()
                    << "\" differs from -n " << namespace_ << "\n";
          ok = false;
          continue;
        }
        doc.namespace_ = meta->namespace_();
        doc.name = meta->name();
        policy::ValidationResult validation = policy::Validate(*doc.message, nullptr);
        if (!validation.ok()) {
          std::cerr << "error: " << doc.source << ": " << doc.info->kind << " \"" << doc.name
                    << "\" is invalid:\n";
          for (const policy::FieldError& e : validation.errors) {
            std::cerr << "  " << (e.field.empty() ? "" : e.field + ": ") << e.message << "\n";
          }
          ok = false;
          continue;
        }
        documents.push_back(std::move(doc));
      }
    }
    if (ok && documents.empty()) {
      std::cerr << "error: no resources found in " << absl::StrJoin(files_, ", ") << "\n";
      return false;
    }
    return ok;
  }

  // ---------------------------------------------------------------------------------------------
  // Commands

  static CommandSpec ApplyCommand() {
    return {.name = "apply",
            .summary = "create or update the resources in files",
            .about =
                "Creates or replaces every resource in the files, one at a time in file "
                "order. Every document of every file is parsed and validated first (with "
                "file, line and field path); if any is invalid, every problem is printed and "
                "nothing is applied. A document with metadata.resourceVersion is applied "
                "only if the resource has not changed since.",
            .flags = {FileFlag(true),
                      DryRunFlag("the server validates and checks conflicts but stores nothing"),
                      NamespaceFlag("the namespace of documents that name none (default: the "
                                    "context file's, else default); documents naming another "
                                    "one are refused")},
            .examples = {{"every policy of a directory", "meshctl apply -f examples/policies/"},
                         {"checked by the server, nothing stored",
                          "meshctl get tp reviews -o yaml | meshctl apply -f - --dry-run"}},
            .run = &Meshctl::Apply};
  }

  int Apply() {
    std::vector<Document> documents;
    if (!LoadDocuments(documents)) {
      std::cerr << "nothing applied\n";
      return kExitFailed;
    }
    int exit_code = kExitOk;
    for (const Document& doc : documents) {
      const std::string path = absl::StrCat(ResourcePath(*doc.info, doc.namespace_, doc.name),
                                            dry_run_ ? "?dryRun=All" : "");
      int call_exit = kExitOk;
      std::optional<Reply> reply = Call("PUT", path, policy::ToJson(*doc.message), &call_exit);
      if (!reply.has_value()) return call_exit;
      const int status = reply->http.status;
      if (status == 200 || status == 201) {
        std::string result = reply->http.Header("x-meshlet-result");
        if (result == "updated") result = "configured";
        if (result == "dry_run") result = status == 201 ? "created" : "configured";
        std::cout << doc.Label() << " " << result << (dry_run_ ? " (dry run)" : "") << "\n";
        continue;
      }
      exit_code = kExitFailed;
      std::cerr << "error: " << doc.source << ": " << doc.info->kind << " \"" << doc.name
                << "\": " << ReasonFor(status) << ": " << reply->ErrorMessage() << "\n";
      for (const auto& [field, message] : reply->Causes()) {
        if (!field.empty()) std::cerr << "  " << field << ": " << message << "\n";
      }
    }
    return exit_code;
  }

  static std::string ReasonFor(int status) {
    switch (status) {
      case 400:
        return "bad request";
      case 404:
        return "not found";
      case 409:
        return "conflict";
      case 422:
        return "invalid";
      default:
        return absl::StrCat("HTTP ", status);
    }
  }

  const policy::KindInfo* KindArg(int& exit_code) {
    if (positional_.empty()) {
      exit_code = Fail({kExitUsage, absl::StrCat("needs a KIND: ", policy::KnownKindNames())});
      return nullptr;
    }
    const policy::KindInfo* info = policy::FindKind(positional_[0]);
    if (info == nullptr) {
      exit_code = Fail({kExitUsage, absl::StrCat("unknown kind \"", positional_[0], "\"; one of ",
                                                 policy::KnownKindNames(), ", workloads")});
    }
    return info;
  }

  static CommandSpec GetCommand() {
    std::vector<std::string> kinds;
    for (const policy::KindInfo& k : policy::AllKinds()) {
      kinds.push_back(absl::StrCat(k.kind, " (", k.plural, ", ", k.short_name, ")"));
    }
    return {.name = "get",
            .args = "KIND [NAME]",
            .summary = "list or show resources, or the workloads in the registry",
            .about = absl::StrCat(
                "Lists the resources of a kind, or shows one. KIND is a kind, its plural or its "
                "short name, case-insensitive: ",
                absl::StrJoin(kinds, ", "),
                "; or workloads: the registry (id, service, addresses, ports, ready, connected "
                "or the time left before removal). -o yaml prints documents that apply back "
                "unchanged."),
            .flags = {NamespaceFlag(),
                      Switch("--all-namespaces", "-A", &Meshctl::all_namespaces_,
                             "list every namespace"),
                      OutputFlag({"table", "yaml", "json"},
                                 "table (default), YAML documents, or the API's JSON")},
            .examples = {{"", "meshctl get tp"},
                         {"edit every route: get, edit, apply",
                          "meshctl get hr -A -o yaml > routes.yaml"}},
            .run = &Meshctl::Get};
  }

  int Get() {
    if (!positional_.empty() &&
        (positional_[0] == "workloads" || positional_[0] == "workload" || positional_[0] == "wl")) {
      return Workloads();
    }
    int exit_code = kExitOk;
    const policy::KindInfo* info = KindArg(exit_code);
    if (info == nullptr) return exit_code;
    const std::string name = positional_.size() > 1 ? positional_[1] : "";
    std::string path;
    if (!name.empty()) {
      path = ResourcePath(*info, namespace_, name);
    } else if (all_namespaces_ || !info->namespaced) {
      path = absl::StrCat("/apis/meshlet.io/v1/", info->plural);
    } else {
      path = ResourcePath(*info, namespace_, "");
    }
    std::optional<Reply> reply = Call("GET", path, "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) {
      return Fail({kExitFailed, reply->ErrorMessage()});
    }
    if (output_ == "json") {
      std::cout << reply->http.body;
      return kExitOk;
    }
    YAML::Node root;
    try {
      root = YAML::Load(reply->http.body);
    } catch (const YAML::Exception& e) {
      return Fail({kExitFailed, absl::StrCat("unreadable response: ", e.what())});
    }
    std::vector<YAML::Node> items;
    if (!name.empty()) {
      items.push_back(root);
    } else {
      for (const auto& item : root["items"]) items.push_back(item);
    }
    if (output_ == "yaml") {
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) std::cout << "---\n";
        std::cout << NodeToYaml(items[i]);
      }
      return kExitOk;
    }
    if (items.empty()) {
      std::cerr << "No " << info->plural << " found"
                << (info->namespaced && !all_namespaces_
                        ? absl::StrCat(" in namespace ", namespace_)
                        : "")
                << ".\n";
      return kExitOk;
    }
    std::cout << Table(*info, items, all_namespaces_ && info->namespaced);
    return kExitOk;
  }

  static std::string Str(const YAML::Node& node) {
    if (!node || node.IsNull()) return "";
    if (node.IsScalar()) return node.Scalar();
    return "";
  }

  static std::string Table(const policy::KindInfo& info, const std::vector<YAML::Node>& items,
                           bool with_namespace) {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> header;
    if (with_namespace) header.push_back("NAMESPACE");
    header.push_back("NAME");
    const std::string kind(info.kind);
    if (kind == "Service") {
      header.insert(header.end(), {"PORTS", "SELECTOR"});
    } else if (kind == "TrafficPolicy") {
      header.insert(header.end(), {"TARGET", "LB", "RETRIES", "TIMEOUT"});
    } else if (kind == "HTTPRoute") {
      header.insert(header.end(), {"TARGET", "RULES", "BACKENDS"});
    } else if (kind == "AuthorizationPolicy") {
      header.insert(header.end(), {"TARGET", "ACTION", "RULES"});
    } else if (kind == "MeshConfig") {
      header.insert(header.end(), {"MTLS", "TRUST DOMAIN", "SCOPED"});
    }
    header.insert(header.end(), {"VERSION", "AGE"});
    rows.push_back(header);
    const absl::Time now = absl::Now();
    for (const YAML::Node& item : items) {
      const YAML::Node meta = item["metadata"];
      const YAML::Node spec = item["spec"];
      std::vector<std::string> row;
      if (with_namespace) row.push_back(Str(meta["namespace"]));
      row.push_back(Str(meta["name"]));
      if (kind == "Service") {
        std::vector<std::string> ports;
        for (const auto& p : spec["ports"]) {
          std::string text = Str(p["port"]);
          if (p["targetPort"]) absl::StrAppend(&text, ":", Str(p["targetPort"]));
          absl::StrAppend(&text, "/", p["protocol"] ? Str(p["protocol"]) : "HTTP");
          ports.push_back(text);
        }
        std::vector<std::string> selector;
        for (auto it = spec["selector"].begin(); it != spec["selector"].end(); ++it) {
          selector.push_back(absl::StrCat(it->first.Scalar(), "=", Str(it->second)));
        }
        row.push_back(ports.empty() ? "<none>" : absl::StrJoin(ports, ","));
        row.push_back(selector.empty() ? "<none>" : absl::StrJoin(selector, ","));
      } else if (kind == "TrafficPolicy") {
        row.push_back(Str(spec["target"]));
        row.push_back(spec["loadBalancer"] ? Str(spec["loadBalancer"]) : "LEAST_REQUEST");
        row.push_back(spec["retries"] && spec["retries"]["attempts"]
                          ? Str(spec["retries"]["attempts"])
                          : "-");
        row.push_back(spec["timeouts"] && spec["timeouts"]["request"]
                          ? Str(spec["timeouts"]["request"])
                          : "-");
      } else if (kind == "HTTPRoute") {
        row.push_back(Str(spec["target"]));
        row.push_back(absl::StrCat(spec["rules"] ? spec["rules"].size() : 0));
        std::vector<std::string> backends;
        for (const auto& rule : spec["rules"]) {
          for (const auto& b : rule["backends"]) {
            std::string text = Str(b["service"]);
            for (auto it = b["subset"].begin(); it != b["subset"].end(); ++it) {
              absl::StrAppend(&text, "[", it->first.Scalar(), "=", Str(it->second), "]");
            }
            if (b["weight"]) absl::StrAppend(&text, "=", Str(b["weight"]));
            if (std::find(backends.begin(), backends.end(), text) == backends.end()) {
              backends.push_back(text);
            }
          }
        }
        row.push_back(backends.empty() ? "-" : absl::StrJoin(backends, ","));
      } else if (kind == "AuthorizationPolicy") {
        row.push_back(spec["target"] ? Str(spec["target"]) : "<namespace>");
        row.push_back(spec["action"] ? Str(spec["action"]) : "ALLOW");
        row.push_back(absl::StrCat(spec["rules"] ? spec["rules"].size() : 0));
      } else if (kind == "MeshConfig") {
        row.push_back(spec["mtls"] ? Str(spec["mtls"]) : "PERMISSIVE");
        row.push_back(spec["trustDomain"] ? Str(spec["trustDomain"]) : "cluster.local");
        row.push_back(spec["scopeToDependencies"] ? Str(spec["scopeToDependencies"]) : "false");
      }
      row.push_back(Str(meta["resourceVersion"]));
      row.push_back(Age(Str(meta["creationTimestamp"]), now));
      rows.push_back(std::move(row));
    }
    return FormatTable(rows);
  }

  // -o json / -o yaml: prints the API's JSON answer as it is, or as YAML, and returns the exit
  // code; nullopt for the table output, which the caller formats.
  std::optional<int> PrintStructured(const std::string& json) {
    if (output_ == "json") {
      std::cout << json;
      return kExitOk;
    }
    if (output_ != "yaml") return std::nullopt;
    absl::StatusOr<std::string> yaml = JsonToYaml(json);
    if (!yaml.ok()) return Fail({kExitFailed, std::string(yaml.status().message())});
    std::cout << *yaml;
    return kExitOk;
  }

  int Workloads() {
    int exit_code = kExitOk;
    std::optional<Reply> reply = Call("GET", "/api/v1/workloads", "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return Fail({kExitFailed, reply->ErrorMessage()});
    if (std::optional<int> printed = PrintStructured(reply->http.body)) return *printed;
    YAML::Node root = YAML::Load(reply->http.body);
    std::vector<std::vector<std::string>> rows = {
        {"ID", "NAMESPACE", "SERVICE", "ADDRESSES", "PORTS", "READY", "STATUS", "REGISTERED"}};
    const absl::Time now = absl::Now();
    for (const auto& w : root["items"]) {
      if (!all_namespaces_ && namespace_set_ && Str(w["namespace"]) != namespace_) continue;
      std::vector<std::string> addresses, ports;
      for (const auto& a : w["addresses"]) addresses.push_back(Str(a));
      for (const auto& p : w["ports"]) ports.push_back(Str(p));
      std::string status = Str(w["connected"]) == "true"
                               ? "connected"
                               : absl::StrCat("disconnected (removal in ",
                                              Str(w["deregisterInSeconds"]).substr(0, 4), "s)");
      rows.push_back({Str(w["id"]), Str(w["namespace"]), Str(w["service"]),
                      absl::StrJoin(addresses, ","), absl::StrJoin(ports, ","), Str(w["ready"]),
                      status, Age(Str(w["registeredAt"]), now)});
    }
    if (rows.size() == 1) {
      std::cerr << "No workloads registered.\n";
      return kExitOk;
    }
    std::cout << FormatTable(rows);
    return kExitOk;
  }

  static CommandSpec DescribeCommand() {
    return {.name = "describe",
            .args = "KIND NAME",
            .summary = "a resource with the policies for the same Service and its workloads",
            .about =
                "Shows a resource as YAML, the other policies naming the same Service, and "
                "the Service's registered workloads.",
            .flags = {NamespaceFlag()},
            .examples = {{"", "meshctl describe svc reviews"}},
            .run = &Meshctl::Describe};
  }

  int Describe() {
    int exit_code = kExitOk;
    const policy::KindInfo* info = KindArg(exit_code);
    if (info == nullptr) return exit_code;
    if (positional_.size() < 2) return Fail({kExitUsage, "describe needs KIND NAME"});
    const std::string& name = positional_[1];
    std::optional<Reply> reply = Call("GET", ResourcePath(*info, namespace_, name), "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return Fail({kExitFailed, reply->ErrorMessage()});
    absl::StatusOr<std::string> yaml = JsonToYaml(reply->http.body);
    if (!yaml.ok()) return Fail({kExitFailed, std::string(yaml.status().message())});
    std::cout << *yaml;
    YAML::Node object = YAML::Load(reply->http.body);
    std::string service = info->kind == "Service" ? name : Str(object["spec"]["target"]);
    if (service.empty()) return kExitOk;
    const std::string kind(info->kind);
    // What else refers to the same Service.
    std::vector<std::vector<std::string>> related = {{"KIND", "NAME"}};
    for (const char* other : {"TrafficPolicy", "HTTPRoute", "AuthorizationPolicy"}) {
      const policy::KindInfo* other_info = policy::FindKind(other);
      std::optional<Reply> list =
          Call("GET", ResourcePath(*other_info, namespace_, ""), "", &exit_code);
      if (!list.has_value()) return exit_code;
      if (list->http.status != 200) continue;
      for (const auto& item : YAML::Load(list->http.body)["items"]) {
        const std::string item_name = Str(item["metadata"]["name"]);
        if (other == kind && item_name == name) continue;
        bool refers = Str(item["spec"]["target"]) == service;
        for (const auto& rule : item["spec"]["rules"]) {
          for (const auto& b : rule["backends"]) refers |= Str(b["service"]) == service;
        }
        if (refers) related.push_back({other, item_name});
      }
    }
    std::cout << "\nPolicies for Service " << service << ":\n";
    if (related.size() == 1) {
      std::cout << "  <none>\n";
    } else {
      std::cout << FormatTable(related);
    }
    std::optional<Reply> workloads = Call("GET", "/api/v1/workloads", "", &exit_code);
    if (!workloads.has_value()) return exit_code;
    if (workloads->http.status == 200) {
      std::vector<std::vector<std::string>> rows = {{"WORKLOAD", "ADDRESSES", "READY", "STATUS"}};
      for (const auto& w : YAML::Load(workloads->http.body)["items"]) {
        if (Str(w["service"]) != service || Str(w["namespace"]) != namespace_) continue;
        std::vector<std::string> addresses;
        for (const auto& a : w["addresses"]) addresses.push_back(Str(a));
        rows.push_back({Str(w["id"]), absl::StrJoin(addresses, ","), Str(w["ready"]),
                        Str(w["connected"]) == "true" ? "connected" : "disconnected"});
      }
      std::cout << "\nWorkloads of Service " << service << ":\n";
      if (rows.size() == 1) {
        std::cout << "  <none registered>\n";
      } else {
        std::cout << FormatTable(rows);
      }
    }
    return kExitOk;
  }

  static CommandSpec DeleteCommand() {
    return {.name = "delete",
            .args = "[KIND NAME...]",
            .summary = "delete resources by kind and name, or those in files",
            .about =
                "Deletes the named resources of a kind, or (with -f) every resource in the "
                "files.",
            .flags = {FileFlag(false), NamespaceFlag(),
                      DryRunFlag("the server checks but deletes nothing")},
            .examples = {{"", "meshctl delete httproute reviews -n shop"},
                         {"", "meshctl delete -f examples/policies/ --dry-run"}},
            .run = &Meshctl::Delete};
  }

  int Delete() {
    int exit_code = kExitOk;
    std::vector<std::tuple<const policy::KindInfo*, std::string, std::string>> targets;
    if (!files_.empty()) {
      std::vector<Document> documents;
      if (!LoadDocuments(documents)) return kExitFailed;
      for (const Document& d : documents) targets.emplace_back(d.info, d.namespace_, d.name);
    } else {
      const policy::KindInfo* info = KindArg(exit_code);
      if (info == nullptr) return exit_code;
      if (positional_.size() < 2) return Fail({kExitUsage, "delete needs KIND NAME or -f FILE"});
      for (size_t i = 1; i < positional_.size(); ++i) {
        targets.emplace_back(info, namespace_, positional_[i]);
      }
    }
    for (const auto& [info, ns, name] : targets) {
      std::optional<Reply> reply =
          Call("DELETE", absl::StrCat(ResourcePath(*info, ns, name), dry_run_ ? "?dryRun=All" : ""),
               "", &exit_code);
      if (!reply.has_value()) return exit_code;
      const std::string label =
          absl::StrCat(absl::AsciiStrToLower(info->kind), ".meshlet.io/", name);
      if (reply->http.status == 200) {
        std::cout << label << " deleted" << (dry_run_ ? " (dry run)" : "") << "\n";
      } else {
        std::cerr << "error: " << label << ": " << reply->ErrorMessage() << "\n";
        exit_code = kExitFailed;
      }
    }
    return exit_code;
  }

  // The resource as YAML without the fields the server sets, for comparisons.
  static std::string Comparable(google::protobuf::Message& message) {
    meshlet::policy::ObjectMeta* meta = policy::MutableMetadata(message);
    meta->clear_resource_version();
    meta->clear_generation();
    meta->clear_creation_timestamp();
    meta->clear_uid();
    const auto* d = message.GetDescriptor();
    message.GetReflection()->SetString(&message, d->FindFieldByName("api_version"),
                                       std::string(policy::kApiVersion));
    message.GetReflection()->SetString(&message, d->FindFieldByName("kind"),
                                       std::string(policy::InfoOf(message).kind));
    absl::StatusOr<std::string> yaml = JsonToYaml(policy::ToJson(message));
    return yaml.ok() ? *yaml : policy::ToJson(message, true);
  }

  static CommandSpec DiffCommand() {
    return {.name = "diff",
            .summary = "what apply would change (exit 1 when it would change something)",
            .about =
                "Prints a unified diff per resource between what is stored and what apply "
                "would store, without the fields the server sets; a resource that does not "
                "exist yet diffs against /dev/null. Exits 0 when nothing would change, 1 "
                "when something would (like diff(1)), 2 or 3 on errors.",
            .flags = {FileFlag(true), NamespaceFlag()},
            .examples = {{"", "meshctl diff -f examples/policies/"}},
            .run = &Meshctl::Diff};
  }

  int Diff() {
    std::vector<Document> documents;
    if (!LoadDocuments(documents)) return kExitUsage;
    bool differs = false;
    int exit_code = kExitOk;
    for (Document& doc : documents) {
      std::optional<Reply> reply =
          Call("GET", ResourcePath(*doc.info, doc.namespace_, doc.name), "", &exit_code);
      if (!reply.has_value()) return exit_code;
      std::string current;
      if (reply->http.status == 200) {
        absl::StatusOr<policy::ParsedResource> live =
            policy::ParseStoredResource(doc.info->kind, reply->http.body);
        if (!live.ok()) return Fail({kExitUsage, std::string(live.status().message())});
        current = Comparable(*live->message);
      } else if (reply->http.status != 404) {
        return Fail({kExitUsage, reply->ErrorMessage()});
      }
      const std::string wanted = Comparable(*doc.message);
      const std::string id = absl::StrCat(
          doc.info->kind, "/", doc.info->namespaced ? doc.namespace_ + "/" : "", doc.name);
      std::string diff =
          UnifiedDiff(current, wanted, current.empty() ? "/dev/null" : absl::StrCat("live ", id),
                      absl::StrCat(doc.source, " ", id));
      if (!diff.empty()) {
        differs = true;
        std::cout << diff;
      }
    }
    return differs ? kExitFailed : kExitOk;
  }

  static CommandSpec CheckCommand() {
    return {.name = "check",
            .summary = "control plane reachable, token accepted, versions, sidecars connected",
            .about =
                "Checks that the control plane answers, that it accepts the token, and "
                "shows the versions and the number of connected sidecars.",
            .examples = {{"", "meshctl check"},
                         {"", "meshctl --server 10.0.0.5:15014 --token-file ./api-token check"}},
            .run = &Meshctl::Check};
  }

  int Check() {
    int exit_code = kExitOk;
    absl::StatusOr<HttpResponse> health =
        HttpRequest(server_, "GET", "/healthz", {}, "", http_options_);
    if (!health.ok() || health->status != 200) {
      return Fail(
          {kExitUnreachable, absl::StrCat("control plane at ", server_, ": not reachable (",
                                          health.ok() ? absl::StrCat("HTTP ", health->status)
                                                      : std::string(health.status().message()),
                                          ")")});
    }
    std::cout << "control plane  " << server_ << "  reachable\n";
    absl::StatusOr<HttpResponse> version =
        HttpRequest(server_, "GET", "/version", {}, "", http_options_);
    if (version.ok() && version->status == 200) {
      YAML::Node v = YAML::Load(version->body);
      std::cout << "server version " << Str(v["server"]) << " (API " << Str(v["apiVersion"])
                << "), meshctl " << kVersion << "\n";
    }
    std::optional<Reply> api = Call("GET", "/apis/meshlet.io/v1", "", &exit_code);
    if (!api.has_value()) return exit_code;
    if (api->http.status != 200) return Fail({kExitFailed, api->ErrorMessage()});
    std::cout << "token          accepted\n";
    std::optional<Reply> proxies = Call("GET", "/api/v1/proxies", "", &exit_code);
    if (!proxies.has_value()) return exit_code;
    if (proxies->http.status == 200) {
      YAML::Node p = YAML::Load(proxies->http.body);
      std::cout << "sidecars       " << (p["items"] ? p["items"].size() : 0) << " connected\n";
    } else {
      std::cout << "sidecars       " << proxies->ErrorMessage() << "\n";
    }
    std::cout << "OK\n";
    return kExitOk;
  }

  static CommandSpec VersionCommand() {
    return {.name = "version",
            .summary = "meshctl's version and the control plane's",
            .about = "Prints meshctl's version, then asks the control plane for its own.",
            .flags = {Switch("--client", "", &Meshctl::client_only_,
                             "meshctl's version only; reads no context file")},
            .examples = {{"", "meshctl version --client"}},
            .run = &Meshctl::Version,
            .needs_context = false};
  }

  int Version() {
    std::cout << "meshctl " << kVersion << "\n";
    if (client_only_) return kExitOk;
    if (std::optional<Failure> f = LoadContext()) return Fail(*f);
    absl::StatusOr<HttpResponse> version =
        HttpRequest(server_, "GET", "/version", {}, "", http_options_);
    if (!version.ok() || version->status != 200) {
      return Fail(
          {kExitUnreachable, absl::StrCat("server ", server_, ": unreachable (",
                                          version.ok() ? absl::StrCat("HTTP ", version->status)
                                                       : std::string(version.status().message()),
                                          ")")});
    }
    YAML::Node v = YAML::Load(version->body);
    std::cout << "control-plane " << Str(v["server"]) << " at " << server_ << " (API "
              << Str(v["apiVersion"]) << ")\n";
    return kExitOk;
  }

  static std::string ShortType(absl::string_view type_url) {
    absl::string_view name = type_url.substr(type_url.rfind('.') + 1);
    if (name == "Listener") return "LDS";
    if (name == "RouteConfiguration") return "RDS";
    if (name == "Cluster") return "CDS";
    if (name == "ClusterLoadAssignment") return "EDS";
    if (name == "Secret") return "SDS";
    return std::string(name);
  }

  static CommandSpec ProxyStatusCommand() {
    return {.name = "proxy-status",
            .summary = "every sidecar: versions sent and ACKed, NACK errors",
            .about =
                "Lists every connected sidecar with the discovery server's state of each "
                "type (LDS, RDS, CDS, EDS) and the first 8 digits of its version (NACKED "
                "when the sidecar refused the latest push), then the NACK errors.",
            .flags = {OutputFlag({"json"}, "the API's JSON")},
            .examples = {{"", "meshctl proxy-status"}},
            .run = &Meshctl::ProxyStatus};
  }

  int ProxyStatus() {
    int exit_code = kExitOk;
    std::optional<Reply> reply = Call("GET", "/api/v1/proxies", "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return Fail({kExitFailed, reply->ErrorMessage()});
    if (output_ == "json") {
      std::cout << reply->http.body;
      return kExitOk;
    }
    YAML::Node root = YAML::Load(reply->http.body);
    std::vector<std::vector<std::string>> rows = {
        {"PROXY", "SERVICE", "NAMESPACE", "CONNECTED", "LDS", "RDS", "CDS", "EDS"}};
    std::vector<std::string> errors;
    const absl::Time now = absl::Now();
    for (const auto& p : root["items"]) {
      std::map<std::string, std::string> state;
      for (auto it = p["types"].begin(); it != p["types"].end(); ++it) {
        const YAML::Node t = it->second;
        const std::string type = ShortType(it->first.Scalar());
        std::string text;
        const std::string server_state = Str(t["state"]);  // SYNCED, STALE, NACKED, ...
        if (t["nack"] && !Str(t["nack"]).empty()) {
          text = "NACKED";
          errors.push_back(absl::StrCat(Str(p["id"]), " ", type, ": ", Str(t["nack"])));
        } else if (Str(t["sent"]).empty()) {
          text = server_state.empty() ? "-" : server_state;
        } else if (Str(t["sent"]) == Str(t["acked"])) {
          text = absl::StrCat(server_state.empty() ? "SYNCED" : server_state, " ",
                              Str(t["acked"]).substr(0, 8));
        } else {
          text = absl::StrCat(server_state.empty() ? "STALE" : server_state, " ",
                              Str(t["sent"]).substr(0, 8));
        }
        state[type] = text;
      }
      auto get = [&](const char* t) { return state.count(t) ? state[t] : std::string("-"); };
      rows.push_back({Str(p["id"]), Str(p["service"]), Str(p["namespace"]),
                      Age(Str(p["connectedSince"]), now), get("LDS"), get("RDS"), get("CDS"),
                      get("EDS")});
    }
    if (rows.size() == 1) {
      std::cout << "No sidecars connected.\n";
    } else {
      std::cout << FormatTable(rows);
    }
    if (!errors.empty()) {
      std::cout << "\nNACK errors:\n";
      for (const std::string& e : errors) std::cout << "  " << e << "\n";
    }
    return kExitOk;
  }

  static CommandSpec TracesCommand() {
    auto filter = [](std::string name, std::string param, std::string value, std::string help) {
      return FlagSpec{.name = std::move(name),
                      .value = std::move(value),
                      .help = std::move(help),
                      .set = [param = std::move(param)](Meshctl& m, const std::string& v) {
                        // Passed to GET /api/v1/traces, which validates it.
                        m.trace_filters_.emplace_back(param, v);
                        return absl::OkStatus();
                      }};
    };
    return {.name = "traces",
            .summary = "recent traces from the control plane's collector, newest first",
            .about =
                "Lists recent traces from the control plane's collector, newest first: "
                "trace id, root service and operation, start, duration, span count, error. "
                "The control plane checks the filter values.",
            .flags = {filter("--service", "service", "SERVICE", "traces with a span of SERVICE"),
                      filter("--operation", "operation", "NAME", "traces with this operation"),
                      filter("--min-duration", "minDuration", "DURATION",
                             "traces at least this long (e.g. 50ms)"),
                      filter("--status", "status", "error|ok", "failed or successful traces"),
                      filter("--limit", "limit", "N", "at most N traces"),
                      OutputFlag({"json"}, "the API's JSON")},
            .examples = {{"", "meshctl traces --service backend --min-duration 5ms --limit 5"},
                         {"", "meshctl traces --status error"}},
            .run = &Meshctl::Traces};
  }

  // traces: GET /api/v1/traces with the filter flags.
  int Traces() {
    if (!positional_.empty()) return Fail({kExitUsage, "traces takes only flags"});
    std::string path = "/api/v1/traces";
    for (size_t i = 0; i < trace_filters_.size(); ++i) {
      absl::StrAppend(&path, i == 0 ? "?" : "&", trace_filters_[i].first, "=",
                      QueryEscape(trace_filters_[i].second));
    }
    return ShowReply(path, [](absl::string_view body) { return FormatTraceList(body); });
  }

  // GET `path`: the body as it is with -o json, else as `format` renders it.
  int ShowReply(const std::string& path,
                const std::function<absl::StatusOr<std::string>(absl::string_view)>& format) {
    int exit_code = kExitOk;
    std::optional<Reply> reply = Call("GET", path, "", &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 200) return Fail({kExitFailed, reply->ErrorMessage()});
    if (output_ == "json") {
      std::cout << reply->http.body;
      return kExitOk;
    }
    absl::StatusOr<std::string> text = format(reply->http.body);
    if (!text.ok()) return Fail({kExitFailed, std::string(text.status().message())});
    std::cout << *text;
    return kExitOk;
  }

  static CommandSpec TraceCommand() {
    return {.name = "trace",
            .args = "ID",
            .summary = "one trace as a waterfall",
            .about =
                "Shows one trace as a text waterfall: the span tree with offsets, durations "
                "and bars, each span's attributes (retry attempts), status and parent.",
            .flags = {OutputFlag({"json"}, "the API's JSON")},
            .examples = {{"", "meshctl trace c69967343ec1c208c0a13ca28c50e2f5"}},
            .run = &Meshctl::Trace};
  }

  // trace ID: GET /api/v1/traces/{id} as a waterfall.
  int Trace() {
    if (positional_.size() != 1) return Fail(UsageFailure());
    return ShowReply(absl::StrCat("/api/v1/traces/", QueryEscape(positional_[0])),
                     [](absl::string_view body) { return FormatTraceWaterfall(body); });
  }

  // --window of stat and top.
  static FlagSpec WindowFlag() {
    return StringFlag("--window", "DURATION", &Meshctl::window_,
                      "the metrics of this last span of time (default 1m; sidecars report every "
                      "10s)");
  }

  static CommandSpec StatCommand() {
    return {.name = "stat",
            .args = "[SERVICE]",
            .summary = "golden metrics per source -> destination service",
            .about =
                "Shows the golden metrics per source -> destination service: success rate, "
                "requests/s, latency p50/p95/p99, bytes and connections per second. With "
                "SERVICE, only the edges from or to it.",
            .flags = {WindowFlag(), OutputFlag({"json"}, "the API's JSON")},
            .examples = {{"", "meshctl stat"}, {"", "meshctl stat backend.default --window 5m"}},
            .run = [](Meshctl& m) { return m.Stat(false); }};
  }

  // stat [SERVICE]: GET /api/v1/stat as a table; top: the busiest paths, refreshed.
  int Stat(bool top) {
    if (positional_.size() > 1) return Fail(UsageFailure());
    std::string path = absl::StrCat("/api/v1/stat?window=", QueryEscape(window_));
    if (!positional_.empty()) absl::StrAppend(&path, "&service=", QueryEscape(positional_[0]));
    return ShowReply(path, [top, limit = limit_](absl::string_view body) {
      return FormatStatTable(body, top, limit);
    });
  }

  static CommandSpec TopCommand() {
    return {.name = "top",
            .summary = "the busiest paths, refreshed until interrupted",
            .about =
                "Shows the busiest paths (most requests/s first), redrawn every interval on "
                "a terminal until Ctrl-C; piped, one table per interval.",
            .flags = {{.name = "--interval",
                       .value = "DURATION",
                       .help = "time between tables (default 2s, at least 100ms)",
                       .set =
                           [](Meshctl& m, const std::string& v) {
                             absl::StatusOr<absl::Duration> d = config::ParseDurationText(v);
                             if (!d.ok() || *d < absl::Milliseconds(100)) {
                               return absl::InvalidArgumentError(
                                   absl::StrCat("\"", v, "\" is not a duration >= 100ms"));
                             }
                             m.interval_ = *d;
                             return absl::OkStatus();
                           }},
                      {.name = "--limit",
                       .value = "N",
                       .help = "at most N paths",
                       .set =
                           [](Meshctl& m, const std::string& v) {
                             if (!absl::SimpleAtoi(v, &m.limit_)) {
                               return absl::InvalidArgumentError(
                                   absl::StrCat("\"", v, "\" is not a number"));
                             }
                             return absl::OkStatus();
                           }},
                      WindowFlag(),
                      Switch("--once", "", &Meshctl::once_, "print one table and exit")},
            .examples = {{"", "meshctl top"},
                         {"one table, for scripts", "meshctl top --once --limit 5"}},
            .run = &Meshctl::Top};
  }

  // top: the busiest paths, redrawn every --interval on a terminal, appended (blank-line
  // separated) otherwise; --once prints one table and exits.
  int Top() {
    const bool terminal = isatty(STDOUT_FILENO);
    for (;;) {
      if (terminal && !once_) {
        // Clear the screen and home the cursor, then what is shown and when.
        std::cout << "\x1b[H\x1b[2J"
                  << "meshctl top  (window " << window_ << ", every "
                  << absl::FormatDuration(interval_) << "; Ctrl-C quits)   "
                  << absl::FormatTime("%H:%M:%S", absl::Now(), absl::LocalTimeZone()) << "\n\n";
      }
      if (int code = Stat(true); code != kExitOk || once_) return code;
      std::cout << (terminal ? "" : "\n") << std::flush;
      absl::SleepFor(interval_);
    }
  }

  static CommandSpec DashboardCommand() {
    return {.name = "dashboard",
            .summary = "the dashboard's URL (with the token)",
            .about =
                "Prints the dashboard's URL, with the API token in its fragment (which "
                "browsers do not send to the server).",
            .examples = {{"", "meshctl dashboard"}},
            .run = &Meshctl::Dashboard};
  }

  // dashboard: where the control plane serves it, with the token in the URL's fragment (which
  // browsers do not send to the server) so the page can call the API.
  int Dashboard() {
    std::cout << "http://" << server_ << "/dashboard/#token=" << QueryEscape(token_) << "\n";
    return kExitOk;
  }

  // Percent-encodes everything but unreserved characters (RFC 3986).
  static std::string QueryEscape(absl::string_view text) {
    std::string out;
    for (unsigned char c : text) {
      if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
        out.push_back(static_cast<char>(c));
      } else {
        absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
      }
    }
    return out;
  }

  static CommandSpec ProxyConfigCommand() {
    return {.name = "proxy-config",
            .args = "NODE",
            .summary = "what the control plane sent a sidecar and what the sidecar runs",
            .about =
                "Shows the configuration the control plane last sent sidecar NODE and, side "
                "by side, what the sidecar reports it runs (asked over its ADS stream; up to "
                "5s), with the differences.",
            .flags = {OutputFlag({"yaml", "json"}, "both views in full"),
                      Switch("--control-plane-only", "", &Meshctl::control_plane_only_,
                             "do not ask the sidecar")},
            .examples = {{"", "meshctl proxy-config frontend-0"},
                         {"", "meshctl proxy-config frontend-0 -o json --control-plane-only"}},
            .run = &Meshctl::ProxyConfig};
  }

  // proxy-config NODE: what the control plane sent, and (unless --control-plane-only) what the
  // sidecar reports it runs, asked for over its ADS stream, side by side with what differs.
  int ProxyConfig() {
    if (positional_.empty()) return Fail({kExitUsage, "proxy-config needs a NODE id"});
    const std::string path = absl::StrCat("/api/v1/proxies/", QueryEscape(positional_[0]));
    int exit_code = kExitOk;
    std::string nonce;
    if (!control_plane_only_) {
      std::optional<Reply> asked = Call("POST", path + "/config-dump", "", &exit_code);
      if (!asked.has_value()) return exit_code;
      if (asked->http.status != 202) return Fail({kExitFailed, asked->ErrorMessage()});
      nonce = Str(YAML::Load(asked->http.body)["nonce"]);
    }
    // The sidecar answers on its stream; its view appears in the config once it arrived.
    std::optional<Reply> reply;
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while (true) {
      reply = Call("GET", path + "/config", "", &exit_code);
      if (!reply.has_value()) return exit_code;
      if (reply->http.status != 200) return Fail({kExitFailed, reply->ErrorMessage()});
      if (nonce.empty()) break;
      YAML::Node request = YAML::Load(reply->http.body)["sidecarRequest"];
      if (request.IsMap() && Str(request["nonce"]) == nonce && request["answered"].as<bool>()) {
        break;
      }
      if (absl::Now() > give_up) {
        std::cerr << "warning: the sidecar did not send its view within 5s; showing the control "
                     "plane's only\n";
        break;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    if (std::optional<int> printed = PrintStructured(reply->http.body)) return *printed;
    std::cout << ProxyConfigText(YAML::Load(reply->http.body), !nonce.empty());
    return kExitOk;
  }

  // Both views side by side: per type the versions, per resource its version on each side, then
  // the differences the control plane computed.
  static std::string ProxyConfigText(const YAML::Node& root, bool asked_sidecar) {
    // An earlier answer may be stored; without asking now it is not shown.
    const YAML::Node sidecar = root["sidecar"];
    const bool have_sidecar = asked_sidecar && sidecar.IsMap();
    std::map<std::string, YAML::Node> sidecar_types;
    if (have_sidecar) {
      for (const YAML::Node& t : sidecar["types"]) sidecar_types[Str(t["type"])] = t;
    }
    auto short_version = [](const std::string& v) { return v.empty() ? "-" : v.substr(0, 8); };
    std::vector<std::vector<std::string>> types = {
        {"TYPE", "CONTROL PLANE SENT", "ACKED", "SIDECAR RUNS", "SIDECAR ERROR"}};
    std::vector<std::vector<std::string>> resources = {
        {"TYPE", "RESOURCE", "CONTROL PLANE", "SIDECAR"}};
    for (const auto& t : root["types"]) {
      const std::string type = Str(t["type"]);
      const YAML::Node held = sidecar_types.count(type) ? sidecar_types[type] : YAML::Node();
      types.push_back({type, short_version(Str(t["version_sent"])),
                       short_version(Str(t["version_acked"])),
                       have_sidecar ? short_version(Str(held["version"])) : "?",
                       held.IsMap() && !Str(held["last_error"]).empty() ? "yes (see below)" : ""});
      std::map<std::string, std::pair<std::string, std::string>> by_name;
      for (const auto& r : t["resources"]) by_name[Str(r["name"])].first = Str(r["version"]);
      if (held.IsMap()) {
        for (const auto& r : held["resources"]) by_name[Str(r["name"])].second = Str(r["version"]);
      }
      for (const auto& [name, versions] : by_name) {
        resources.push_back({type, name, short_version(versions.first),
                             have_sidecar ? short_version(versions.second) : "?"});
      }
    }
    std::string out = absl::StrCat("Node ", Str(root["node"]["id"]), "\n\n", FormatTable(types),
                                   "\n", FormatTable(resources));
    if (!have_sidecar) {
      absl::StrAppend(&out, "\nThe sidecar's view: ",
                      asked_sidecar ? "not received (old sidecar, or its stream is busy)"
                                    : "not asked for (--control-plane-only)",
                      "\n");
      return out;
    }
    absl::StrAppend(&out, "\nThe sidecar's view was captured at ", Str(sidecar["capturedAt"]),
                    ". The control plane column is what it last sent and the sidecar "
                    "acknowledged holding.\n");
    if (sidecar["contentsOmitted"] && sidecar["contentsOmitted"].as<bool>()) {
      out +=
          "The sidecar's configuration is too large for one message: it sent names and "
          "versions only.\n";
    }
    const YAML::Node diff = root["diff"];
    if (!diff.IsSequence() || diff.size() == 0) {
      out += "No differences: the sidecar runs what the control plane wants it to run.\n";
      return out;
    }
    out += "\nDifferences (the control plane's current configuration against the sidecar's):\n";
    for (const auto& d : diff) {
      absl::StrAppend(&out, "  ", Str(d["type"]), ": control plane sent ",
                      short_version(Str(d["versionSent"])), ", sidecar runs ",
                      short_version(Str(d["versionSidecar"])), "\n");
      if (!Str(d["sidecarError"]).empty()) {
        absl::StrAppend(&out, "    sidecar refused the last update: ", Str(d["sidecarError"]),
                        "\n");
      }
      for (const auto& n : d["onlyControlPlane"]) {
        absl::StrAppend(&out, "    + ", Str(n), " (not on the sidecar)\n");
      }
      for (const auto& n : d["onlySidecar"]) {
        absl::StrAppend(&out, "    - ", Str(n), " (only on the sidecar)\n");
      }
      for (const auto& n : d["differ"]) {
        absl::StrAppend(&out, "    ~ ", Str(n), " (different contents)\n");
      }
    }
    return out;
  }

  static CommandSpec TokenCommand() {
    return {.name = "token",
            .args = "create",
            .summary = "a join token proving a workload identity to the CA",
            .about =
                "Creates a join token with which a workload outside Kubernetes gets a "
                "certificate for spiffe://<trust-domain>/ns/NS/sa/SA from the CA. The token "
                "alone goes to stdout, the details to stderr; it is shown only this once.",
            .flags = {NamespaceFlag("the workload's namespace", true),
                      {.name = "--service-account",
                       .value = "SA",
                       .help = "the workload's service account",
                       .required = true,
                       .set =
                           [](Meshctl& m, const std::string& v) {
                             m.service_account_ = v;
                             return absl::OkStatus();
                           }},
                      StringFlag("--ttl", "DURATION", &Meshctl::ttl_,
                                 "how long the token is valid (default 1h)"),
                      Switch("--single-use", "", &Meshctl::single_use_,
                             "valid for one certificate only"),
                      OutputFlag({"json"}, "the API's JSON")},
            .examples = {{"",
                          "TOKEN=$(meshctl token create --namespace shop --service-account "
                          "billing --ttl 10m --single-use)"}},
            .run = &Meshctl::Token};
  }

  // token create: POST /api/v1/tokens. The token goes alone to stdout (for `$(...)`), the rest
  // to stderr.
  int Token() {
    if (positional_.size() != 1 || positional_[0] != "create") return Fail(UsageFailure());
    auto quote = [](absl::string_view text) {
      std::string out = "\"";
      for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) >= 0x20) out += c;  // control characters are dropped
      }
      return out + "\"";
    };
    const std::string body = absl::StrCat(
        R"({"namespace":)", quote(namespace_), R"(,"serviceAccount":)", quote(service_account_),
        R"(,"ttl":)", quote(ttl_), R"(,"singleUse":)", single_use_ ? "true" : "false", "}");
    int exit_code = kExitOk;
    std::optional<Reply> reply = Call("POST", "/api/v1/tokens", body, &exit_code);
    if (!reply.has_value()) return exit_code;
    if (reply->http.status != 201) {
      std::string message = reply->ErrorMessage();
      // Name the flag rather than the API field.
      for (const auto& [field, why] : reply->Causes()) {
        if (field.empty()) continue;
        const std::string flag = field == "serviceAccount" ? "service-account"
                                 : field == "singleUse"    ? "single-use"
                                                           : field;
        message = absl::StrCat("--", flag, ": ", why);
      }
      return Fail({kExitFailed, message});
    }
    if (output_ == "json") {
      std::cout << reply->http.body;
      return kExitOk;
    }
    YAML::Node created = YAML::Load(reply->http.body);
    std::cout << Str(created["token"]) << "\n";
    std::cerr << "join token " << Str(created["id"]) << " for ns/" << namespace_ << "/sa/"
              << service_account_ << (single_use_ ? ", single use" : "") << ", expires "
              << Str(created["expiresAt"]) << "\n";
    return kExitOk;
  }

  const CommandSpec* command_ = nullptr;  // the command being run
  bool help_requested_ = false;
  std::string server_flag_, token_flag_, token_file_flag_, context_file_flag_;
  std::string server_, token_;
  HttpRequestOptions http_options_;
  std::vector<std::string> files_;
  std::vector<std::string> positional_;
  std::string namespace_;
  bool namespace_set_ = false;
  bool all_namespaces_ = false;
  bool dry_run_ = false;
  bool control_plane_only_ = false;
  bool client_only_ = false;
  std::string output_ = "table";
  // stat, top
  std::string window_ = "1m";
  size_t limit_ = 0;
  absl::Duration interval_ = absl::Seconds(2);
  bool once_ = false;
  // traces: query parameter, value
  std::vector<std::pair<std::string, std::string>> trace_filters_;
  // token create
  std::string service_account_;
  std::string ttl_ = "1h";
  bool single_use_ = false;
};

}  // namespace
}  // namespace meshlet::controlplane::cli

int main(int argc, char** argv) {
  meshlet::controlplane::cli::Meshctl meshctl;
  return meshctl.Main(std::vector<std::string>(argv + 1, argv + argc));
}
