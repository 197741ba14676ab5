#pragma once

// The command-line parser of every meshlet binary: a table of flags, each with its name, an
// optional one-letter shorthand, the placeholder its help shows for the value, its help text,
// whether it is required, and a setter that stores the value or says what is wrong with it. The
// same table parses the command line and prints the help, so the two cannot disagree. No global
// state: a binary (or each meshctl command) builds its table over its own options struct, which
// is why absl/flags' process-wide registry is not used (ADR 0035).
//
// Syntax: `--name VALUE`, `--name=VALUE`, `-s VALUE` (shorthand); a switch (a flag without a
// value placeholder) takes no value, though `--switch=TEXT` hands TEXT to its setter, which may
// accept it (`--xds-plaintext=false`) or refuse it. A value may start with '-'. Errors are
// InvalidArgument with a message that names the flag and what was wrong; by convention the binary
// prints it on stderr and exits with kUsageExitCode.
//
// Value types, single-threaded; a table's setters write wherever they were bound, so the target
// must outlive the parse.

#include <chrono>
#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshlet::flags {

// The exit status of a binary given a bad command line.
inline constexpr int kUsageExitCode = 2;

// The width help text is wrapped to.
inline constexpr size_t kHelpWidth = 100;

struct Flag {
  std::string name;       // "--namespace"
  std::string shorthand;  // "-n", or empty
  std::string value;      // what the flag takes, as help shows it ("NS"); empty: a switch
  std::string help;
  bool required = false;  // the command line is refused without it
  // Parsing ends at this flag (after its setter ran): the rest of the command line is neither
  // parsed nor checked, and required flags are not required. For --help and --version.
  bool stops = false;
  // Stores the value: a switch gets "" when given bare, or what follows '=' in "--switch=...".
  // An error's message says what is wrong with the value ("must be a positive integer"); the
  // parser puts the flag and the value in front: `--flag="value": must be a positive integer`.
  std::function<absl::Status(absl::string_view value)> set;
};

// Builders for the common kinds of flag.
Flag StringFlag(std::string name, std::string value, std::string* out, std::string help);
// A switch that sets `*out` to true, and refuses a value.
Flag SwitchFlag(std::string name, bool* out, std::string help);
// A switch that accepts "=true" and "=false" too.
Flag BoolFlag(std::string name, bool* out, std::string help);
// `flag`, required.
Flag Required(Flag flag);
// A DURATION ("30s", "1m30s", "500ms") greater than zero (at least 1ns) and at most 100 years
// (876000h; not "inf") into `*out`; the error names `example` ("must be a positive duration such
// as 30s").
// The std::chrono form is for options kept as common/base's Duration.
Flag PositiveDurationFlag(std::string name, absl::Duration* out, std::string help,
                          std::string example = "30s");
Flag PositiveDurationFlag(std::string name, std::chrono::nanoseconds* out, std::string help,
                          std::string example = "30s");
// The same, also taking 0 (which, by the flag's help, turns something off): "must be a duration
// of 0 or more such as 30s".
Flag NonNegativeDurationFlag(std::string name, absl::Duration* out, std::string help,
                             std::string example = "30s");
Flag NonNegativeDurationFlag(std::string name, std::chrono::nanoseconds* out, std::string help,
                             std::string example = "30s");
// The same, from `min` (a floor below which the thing timed cannot work): "must be a duration of
// at least 1s such as 30s".
Flag DurationAtLeastFlag(std::string name, absl::Duration min, absl::Duration* out,
                         std::string help, std::string example = "30s");
Flag DurationAtLeastFlag(std::string name, absl::Duration min, std::chrono::nanoseconds* out,
                         std::string help, std::string example = "30s");
// "-h, --help": stops parsing and sets `*requested`.
Flag HelpFlag(bool* requested, std::string help);
// A whole number from `min` to `max` into `*out`; the error says which ("must be a positive
// integer", "must be an integer from 1 to 256").
template <typename Int>
Flag IntFlag(std::string name, std::string value, Int* out, std::string help, Int min = 1,
             Int max = std::numeric_limits<Int>::max()) {
  return {.name = std::move(name),
          .value = std::move(value),
          .help = std::move(help),
          .set = [out, min, max](absl::string_view v) {
            Int n{};
            if (!absl::SimpleAtoi(v, &n) || n < min || n > max) {
              return absl::InvalidArgumentError(
                  max != std::numeric_limits<Int>::max()
                      ? absl::StrCat("must be an integer from ", min, " to ", max)
                  : min == 1 ? std::string("must be a positive integer")
                             : absl::StrCat("must be an integer of at least ", min));
            }
            *out = n;
            return absl::OkStatus();
          }};
}

struct ParseOptions {
  // The command whose flags these are, for messages: "unknown flag --ttl for get", "get needs
  // -f FILE". Empty for a binary's own flags.
  std::string command;
  // Where to read more, closing usage messages in parentheses.
  std::string help_hint = "see --help";
  // Arguments that are not flags are collected in order; otherwise each is an error.
  bool positional = false;
  // "--admin_address" is "--admin-address".
  bool underscores_are_dashes = false;
  // "-config" is "--config" when no shorthand is spelled that way.
  bool single_dash_names = false;
};

struct ParsedArgs {
  std::vector<std::string> positional;
  bool stopped = false;  // a `stops` flag ended parsing
};

// Parses `args` (argv without the program name) against `flags`.
absl::StatusOr<ParsedArgs> Parse(const std::vector<Flag>& flags,
                                 const std::vector<std::string>& args,
                                 const ParseOptions& options = {});

// Takes the flags of `flags` (and their values) out of `args`, wherever they are, and leaves the
// rest in order: for flags accepted anywhere on a command line that another parser reads next
// (meshctl's global flags). Required flags are not checked.
absl::Status Extract(const std::vector<Flag>& flags, std::vector<std::string>& args,
                     const ParseOptions& options = {});

// Help text.

// `words` joined by spaces and wrapped at `width`; lines after the first start with `indent`
// spaces, and the first is taken to start at that column too.
std::string Wrap(const std::vector<std::string>& words, size_t indent, size_t width = kHelpWidth);
std::string Wrap(absl::string_view text, size_t indent, size_t width = kHelpWidth);

// "-n NS", "--dry-run": how a usage line shows the flag.
std::string FlagUsage(const Flag& flag);

// Two columns, "  -n, --namespace NS   help", the help wrapped beside the names; one line per
// flag, ending in a newline.
std::string FlagTable(const std::vector<Flag>& flags, size_t width = kHelpWidth);

}  // namespace meshlet::flags
