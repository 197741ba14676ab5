#include "common/flags/flags.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"

namespace meshlet::flags {
namespace {

// Two flags spelled alike would make the second unreachable: a mistake in the table.
void CheckTable(const std::vector<Flag>& flags) {
  std::set<absl::string_view> spellings;
  for (const Flag& flag : flags) {
    CHECK(absl::StartsWith(flag.name, "--")) << "flag " << flag.name << " must start with --";
    CHECK(spellings.insert(flag.name).second) << "flag " << flag.name << " is in the table twice";
    if (!flag.shorthand.empty()) {
      CHECK(spellings.insert(flag.shorthand).second)
          << "shorthand " << flag.shorthand << " is in the table twice";
    }
  }
}

// Whether `arg` is spelled as a flag rather than a value or positional argument ("-" is stdin).
bool LooksLikeFlag(absl::string_view arg) { return arg.size() > 1 && arg[0] == '-'; }

// The flag of `flags` that `arg` spells ("-n", "--namespace", "--namespace=x"), or null.
const Flag* FindFlag(const std::vector<Flag>& flags, absl::string_view arg,
                     const ParseOptions& options) {
  std::string spelled(arg.substr(0, arg.find('=')));
  if (options.underscores_are_dashes) spelled = absl::StrReplaceAll(spelled, {{"_", "-"}});
  for (const Flag& flag : flags) {
    if (spelled == flag.name || (!flag.shorthand.empty() && spelled == flag.shorthand)) {
      return &flag;
    }
  }
  if (options.single_dash_names && !absl::StartsWith(spelled, "--")) {
    const std::string dashed = absl::StrCat("-", spelled);
    for (const Flag& flag : flags) {
      if (dashed == flag.name) return &flag;
    }
  }
  return nullptr;
}

std::string InParentheses(absl::string_view hint) {
  return hint.empty() ? "" : absl::StrCat(" (", hint, ")");
}

// Stores `flag`'s value from args[i] ("--flag=value") or the argument after it (then `i`
// advances past it).
absl::Status SetFlag(const Flag& flag, const std::vector<std::string>& args, size_t& i) {
  const std::string& arg = args[i];
  const size_t equals = arg.find('=');
  std::string value;
  if (equals != std::string::npos) {
    value = arg.substr(equals + 1);
  } else if (!flag.value.empty()) {
    if (i + 1 >= args.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag.name, " needs a value (", flag.value, ")"));
    }
    value = args[++i];
  }
  if (absl::Status status = flag.set(value); !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag.name, "=\"", value, "\": ", status.message()));
  }
  return absl::OkStatus();
}

absl::Status UnknownFlag(absl::string_view arg, const ParseOptions& options) {
  return absl::InvalidArgumentError(
      absl::StrCat("unknown flag ", arg.substr(0, arg.find('=')),
                   options.command.empty() ? "" : absl::StrCat(" for ", options.command),
                   InParentheses(options.help_hint)));
}

}  // namespace

Flag StringFlag(std::string name, std::string value, std::string* out, std::string help) {
  return {.name = std::move(name),
          .value = std::move(value),
          .help = std::move(help),
          .set = [out](absl::string_view v) {
            *out = std::string(v);
            return absl::OkStatus();
          }};
}

Flag SwitchFlag(std::string name, bool* out, std::string help) {
  return {.name = std::move(name), .help = std::move(help), .set = [out](absl::string_view v) {
            if (!v.empty()) return absl::InvalidArgumentError("takes no value");
            *out = true;
            return absl::OkStatus();
          }};
}

namespace {

// The longest DURATION a flag takes: std::chrono::nanoseconds holds about 292 years, and a
// clock's now plus the duration must not overflow.
constexpr absl::Duration kMaxDuration = absl::Hours(24 * 365 * 100);

// A DURATION flag whose value is at least `min` and at most kMaxDuration (absl reads "inf",
// which no timeout or interval means); `needed` is the error for one that does not parse or is
// below `min`.
Flag DurationFlag(std::string name, std::string help, absl::Duration min, std::string needed,
                  std::function<void(absl::Duration)> store) {
  return {.name = std::move(name),
          .value = "DURATION",
          .help = std::move(help),
          .set = [min, needed = std::move(needed), store = std::move(store)](absl::string_view v) {
            absl::Duration d;
            if (!absl::ParseDuration(v, &d) || d < min) return absl::InvalidArgumentError(needed);
            if (d > kMaxDuration) {
              return absl::InvalidArgumentError(
                  absl::StrCat("must be at most ", absl::FormatDuration(kMaxDuration)));
            }
            store(d);
            return absl::OkStatus();
          }};
}

std::function<void(absl::Duration)> Store(absl::Duration* out) {
  return [out](absl::Duration d) { *out = d; };
}

std::function<void(absl::Duration)> Store(std::chrono::nanoseconds* out) {
  return [out](absl::Duration d) { *out = absl::ToChronoNanoseconds(d); };
}

std::string PositiveNeeded(absl::string_view example) {
  return absl::StrCat("must be a positive duration such as ", example);
}

std::string NonNegativeNeeded(absl::string_view example) {
  return absl::StrCat("must be a duration of 0 or more such as ", example);
}

std::string AtLeastNeeded(absl::Duration min, absl::string_view example) {
  return absl::StrCat("must be a duration of at least ", absl::FormatDuration(min), " such as ",
                      example);
}

}  // namespace

Flag PositiveDurationFlag(std::string name, absl::Duration* out, std::string help,
                          std::string example) {
  return DurationFlag(std::move(name), std::move(help), absl::Nanoseconds(1),
                      PositiveNeeded(example), Store(out));
}

Flag PositiveDurationFlag(std::string name, std::chrono::nanoseconds* out, std::string help,
                          std::string example) {
  return DurationFlag(std::move(name), std::move(help), absl::Nanoseconds(1),
                      PositiveNeeded(example), Store(out));
}

Flag NonNegativeDurationFlag(std::string name, absl::Duration* out, std::string help,
                             std::string example) {
  return DurationFlag(std::move(name), std::move(help), absl::ZeroDuration(),
                      NonNegativeNeeded(example), Store(out));
}

Flag NonNegativeDurationFlag(std::string name, std::chrono::nanoseconds* out, std::string help,
                             std::string example) {
  return DurationFlag(std::move(name), std::move(help), absl::ZeroDuration(),
                      NonNegativeNeeded(example), Store(out));
}

Flag DurationAtLeastFlag(std::string name, absl::Duration min, absl::Duration* out,
                         std::string help, std::string example) {
  return DurationFlag(std::move(name), std::move(help), min, AtLeastNeeded(min, example),
                      Store(out));
}

Flag DurationAtLeastFlag(std::string name, absl::Duration min, std::chrono::nanoseconds* out,
                         std::string help, std::string example) {
  return DurationFlag(std::move(name), std::move(help), min, AtLeastNeeded(min, example),
                      Store(out));
}

Flag BoolFlag(std::string name, bool* out, std::string help) {
  return {.name = std::move(name), .help = std::move(help), .set = [out](absl::string_view v) {
            if (!v.empty() && v != "true" && v != "false") {
              return absl::InvalidArgumentError("must be true or false");
            }
            *out = v != "false";
            return absl::OkStatus();
          }};
}

Flag Required(Flag flag) {
  flag.required = true;
  return flag;
}

Flag HelpFlag(bool* requested, std::string help) {
  Flag flag = SwitchFlag("--help", requested, std::move(help));
  flag.shorthand = "-h";
  flag.stops = true;
  return flag;
}

absl::StatusOr<ParsedArgs> Parse(const std::vector<Flag>& flags,
                                 const std::vector<std::string>& args,
                                 const ParseOptions& options) {
  CheckTable(flags);
  ParsedArgs parsed;
  std::set<const Flag*> given;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!LooksLikeFlag(arg)) {
      if (!options.positional) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument \"", arg, "\"", InParentheses(options.help_hint)));
      }
      parsed.positional.push_back(arg);
      continue;
    }
    const Flag* flag = FindFlag(flags, arg, options);
    if (flag == nullptr) return UnknownFlag(arg, options);
    if (absl::Status status = SetFlag(*flag, args, i); !status.ok()) return status;
    if (flag->stops) {
      parsed.stopped = true;
      return parsed;
    }
    given.insert(flag);
  }
  for (const Flag& flag : flags) {
    if (!flag.required || given.count(&flag) > 0) continue;
    return absl::InvalidArgumentError(
        options.command.empty()
            ? absl::StrCat(flag.name, " is required", InParentheses(options.help_hint))
            : absl::StrCat(options.command, " needs ", FlagUsage(flag),
                           InParentheses(options.help_hint)));
  }
  return parsed;
}

absl::Status Extract(const std::vector<Flag>& flags, std::vector<std::string>& args,
                     const ParseOptions& options) {
  CheckTable(flags);
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const Flag* flag = LooksLikeFlag(args[i]) ? FindFlag(flags, args[i], options) : nullptr;
    if (flag == nullptr) {
      rest.push_back(args[i]);
      continue;
    }
    if (absl::Status status = SetFlag(*flag, args, i); !status.ok()) return status;
  }
  args = std::move(rest);
  return absl::OkStatus();
}

std::string Wrap(const std::vector<std::string>& words, size_t indent, size_t width) {
  std::string out;
  size_t column = indent;
  for (const std::string& word : words) {
    if (column > indent && column + 1 + word.size() > width) {
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

std::string Wrap(absl::string_view text, size_t indent, size_t width) {
  return Wrap(absl::StrSplit(text, ' ', absl::SkipEmpty()), indent, width);
}

std::string FlagUsage(const Flag& flag) {
  return absl::StrCat(flag.shorthand.empty() ? flag.name : flag.shorthand,
                      flag.value.empty() ? "" : " ", flag.value);
}

std::string FlagTable(const std::vector<Flag>& flags, size_t width) {
  // Long names line up when some flags have a shorthand and some do not.
  const bool shorthands =
      std::any_of(flags.begin(), flags.end(), [](const Flag& f) { return !f.shorthand.empty(); });
  std::vector<std::string> names;
  size_t name_width = 0;
  for (const Flag& f : flags) {
    const std::string prefix = !f.shorthand.empty() ? f.shorthand + ", " : shorthands ? "    " : "";
    names.push_back(absl::StrCat(prefix, f.name, f.value.empty() ? "" : " ", f.value));
    name_width = std::max(name_width, names.back().size());
  }
  std::string out;
  for (size_t i = 0; i < flags.size(); ++i) {
    absl::StrAppend(&out, "  ", names[i], std::string(name_width - names[i].size() + 3, ' '),
                    Wrap(flags[i].help, name_width + 5, width), "\n");
  }
  return out;
}

}  // namespace meshlet::flags
