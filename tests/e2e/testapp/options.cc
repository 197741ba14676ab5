#include "tests/e2e/testapp/options.h"

#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/net/address.h"
#include "tests/e2e/testapp/failure.h"

namespace meshlet::testapp {
namespace {

absl::Status FlagError(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
}

absl::StatusOr<Duration> ParseDurationFlag(absl::string_view flag, absl::string_view text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return FlagError(flag, absl::StrCat("\"", text, "\" is not a duration such as 250ms or 1.5s"));
  }
  return absl::ToChronoNanoseconds(d);
}

absl::StatusOr<uint64_t> ParseCount(absl::string_view flag, absl::string_view text, uint64_t max) {
  uint64_t n = 0;
  if (!absl::SimpleAtoi(text, &n) || n == 0 || n > max) {
    return FlagError(flag, absl::StrCat("\"", text, "\" is not a number from 1 to ", max));
  }
  return n;
}

// A header name as HTTP allows it (a token), lower-cased.
absl::StatusOr<std::string> HeaderName(absl::string_view flag, absl::string_view name) {
  if (name.empty()) return FlagError(flag, "empty header name");
  for (char c : name) {
    if (!absl::ascii_isalnum(c) &&
        absl::string_view("!#$%&'*+-.^_`|~").find(c) == absl::string_view::npos) {
      return FlagError(flag, absl::StrCat("\"", name, "\" is not a header name"));
    }
  }
  return absl::AsciiStrToLower(name);
}

// A flag without a value is on; "true"/"false" (and 1/0, yes/no) say so.
absl::StatusOr<bool> ParseBool(absl::string_view flag, absl::string_view value) {
  bool on = true;
  if (!value.empty() && !absl::SimpleAtob(value, &on)) {
    return FlagError(flag, absl::StrCat("\"", value, "\" is not true or false"));
  }
  return on;
}

// Stores a parsed value in `field`, or passes its error on.
template <typename T>
absl::Status Set(T& field, absl::StatusOr<T> value) {
  if (!value.ok()) return value.status();
  field = *std::move(value);
  return absl::OkStatus();
}

// Flag names are compared with dashes: --fail_pattern is --fail-pattern.
std::string Normalize(absl::string_view name) { return absl::StrReplaceAll(name, {{"_", "-"}}); }

// Applies one serve flag (or the environment variable standing for it).
absl::Status ApplyServeFlag(ServeOptions& o, const std::string& flag, absl::string_view value) {
  if (flag == "--listen" || flag == "--tcp-listen") {
    absl::StatusOr<net::Address> address = net::Address::Parse(value);
    if (!address.ok() || !address->is_ip()) {
      return FlagError(flag, absl::StrCat("\"", value, "\" is not IP:PORT (0.0.0.0:9080)"));
    }
    (flag == "--listen" ? o.listen : o.tcp_listen) = std::string(value);
  } else if (flag == "--banner") {
    if (value.empty()) return FlagError(flag, "must not be empty");
    if (value.find_first_of("\r\n") != absl::string_view::npos) {
      return FlagError(flag, "must be one line (no CR or LF)");
    }
    o.banner = std::string(value);
  } else if (flag == "--service" || flag == "--service-version" || flag == "--pod") {
    if (value.empty()) return FlagError(flag, "must not be empty");
    (flag == "--service"           ? o.service
     : flag == "--service-version" ? o.version
                                   : o.pod) = std::string(value);
  } else if (flag == "--call") {
    for (absl::string_view url :
         absl::StrSplit(value, absl::ByAnyChar(", \t\n"), absl::SkipEmpty())) {
      absl::StatusOr<HttpUrl> parsed = ParseHttpUrl(url);
      if (!parsed.ok()) return FlagError(flag, parsed.status().message());
      o.calls.push_back(*std::move(parsed));
    }
  } else if (flag == "--fail-pattern") {
    absl::StatusOr<FailurePlan> plan = FailurePlan::Create(value, 0);
    if (!plan.ok()) return FlagError(flag, plan.status().message());
    o.fail_pattern = std::string(value);
  } else if (flag == "--fail-fraction") {
    double f = 0;
    if (!absl::SimpleAtod(value, &f) || !(f >= 0 && f <= 1)) {
      return FlagError(flag, absl::StrCat("\"", value, "\" is not a number from 0 to 1"));
    }
    o.fail_fraction = f;
  } else if (flag == "--fail-status") {
    int status = 0;
    if (!absl::SimpleAtoi(value, &status) || status < 200 || status > 599) {
      return FlagError(flag, absl::StrCat("\"", value, "\" is not a status from 200 to 599"));
    }
    o.fail_status = status;
  } else if (flag == "--latency" || flag == "--slow" || flag == "--call-timeout" ||
             flag == "--drain-time") {
    absl::StatusOr<Duration> d = ParseDurationFlag(flag, value);
    if (!d.ok()) return d.status();
    (flag == "--latency"        ? o.latency
     : flag == "--slow"         ? o.slow
     : flag == "--call-timeout" ? o.call_timeout
                                : o.drain_time) = *d;
  } else if (flag == "--forward-header") {
    for (absl::string_view name : absl::StrSplit(value, ',', absl::SkipEmpty())) {
      absl::StatusOr<std::string> h = HeaderName(flag, absl::StripAsciiWhitespace(name));
      if (!h.ok()) return h.status();
      o.forward_headers.push_back(*std::move(h));
    }
  } else if (flag == "--degrade" || flag == "--log-requests" || flag == "--echo") {
    return Set(flag == "--degrade"        ? o.degrade
               : flag == "--log-requests" ? o.log_requests
                                          : o.echo,
               ParseBool(flag, value));
  } else if (flag == "--namespace") {
    o.namespace_name = std::string(value);
  } else if (flag == "--max-connections") {
    absl::StatusOr<uint64_t> n = ParseCount(flag, value, 1 << 20);
    if (!n.ok()) return n.status();
    o.max_connections = *n;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown flag ", flag, " (testapp --help lists them)"));
  }
  return absl::OkStatus();
}

struct FlagValue {
  std::string flag;  // "--name", dashes for underscores; -H is --header
  std::string value;
};

// The flag at args[i] and its value: "--name=value", "--name value" (then i moves on to the
// value), or "true" for a flag that `is_bool` says takes none.
template <typename IsBool>
absl::StatusOr<FlagValue> TakeFlag(const std::vector<std::string>& args, size_t& i,
                                   IsBool is_bool) {
  absl::string_view arg = args[i];
  FlagValue out;
  out.flag = arg == "-H" ? "--header" : Normalize(arg);
  if (size_t eq = out.flag.find('='); eq != std::string::npos) {
    out.value = std::string(arg.substr(eq + 1));  // the value keeps its underscores
    out.flag.resize(eq);
  } else if (is_bool(out.flag)) {
    out.value = "true";
  } else if (i + 1 < args.size()) {
    out.value = args[++i];
  } else {
    return FlagError(out.flag, "needs a value");
  }
  return out;
}

bool IsServeBoolFlag(absl::string_view flag) {
  return flag == "--degrade" || flag == "--log-requests" || flag == "--echo";
}

// The serve flags that the environment may set, in the order they are applied.
constexpr absl::string_view kServeFlags[] = {
    "--listen",          "--service",       "--service-version", "--pod",          "--call",
    "--fail-pattern",    "--fail-fraction", "--fail-status",     "--latency",      "--slow",
    "--call-timeout",    "--degrade",       "--forward-header",  "--log-requests", "--drain-time",
    "--max-connections", "--tcp-listen",    "--banner",          "--echo",         "--namespace",
};

// serve-tcp's flags (the environment may set them too): its --listen is the banner protocol's.
constexpr absl::string_view kServeTcpFlags[] = {
    "--listen",          "--service",    "--pod",          "--banner",
    "--max-connections", "--drain-time", "--log-requests",
};

std::string EnvName(absl::string_view flag) {
  std::string name = absl::StrCat("TESTAPP_", absl::StripPrefix(flag, "--"));
  absl::AsciiStrToUpper(&name);
  absl::StrReplaceAll({{"-", "_"}}, &name);
  return name;
}

// `serve`, or `serve-tcp` (`tcp_only`).
absl::StatusOr<CommandLine> ParseServe(const std::vector<std::string>& args, size_t first,
                                       const GetEnv& getenv, bool tcp_only) {
  CommandLine out;
  ServeOptions& o = out.serve;
  absl::Span<const absl::string_view> flags = kServeFlags;
  if (tcp_only) {
    out.command = CommandLine::Command::kServeTcp;
    flags = kServeTcpFlags;
    o.listen = "0.0.0.0:3306";
  }
  // Environment first, so that flags override it; --call from flags replaces TESTAPP_CALL.
  for (absl::string_view flag : flags) {
    std::optional<std::string> value = getenv(EnvName(flag));
    if (!value.has_value()) continue;
    absl::Status s = ApplyServeFlag(o, std::string(flag), *value);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(EnvName(flag), ": ", s.message()));
    }
  }
  bool calls_from_flags = false;
  bool forward_from_flags = false;
  for (size_t i = first; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      out.command = CommandLine::Command::kHelp;
      return out;
    }
    if (arg == "--version") {
      out.command = CommandLine::Command::kVersion;
      return out;
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
    }
    absl::StatusOr<FlagValue> taken = TakeFlag(args, i, IsServeBoolFlag);
    if (!taken.ok()) return taken.status();
    const std::string& flag = taken->flag;
    const std::string& value = taken->value;
    if (tcp_only && absl::c_find(flags, flag) == flags.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", flag, " for serve-tcp (testapp --help lists them)"));
    }
    if (flag == "--call" && !calls_from_flags) {
      o.calls.clear();
      calls_from_flags = true;
    }
    if (flag == "--forward-header" && !forward_from_flags) {
      o.forward_headers.clear();
      forward_from_flags = true;
    }
    if (absl::Status s = ApplyServeFlag(o, flag, value); !s.ok()) return s;
  }
  if (o.pod.empty()) {
    std::optional<std::string> pod = getenv("POD_NAME");
    if (!pod.has_value() || pod->empty()) pod = getenv("HOSTNAME");
    o.pod = pod.has_value() && !pod->empty() ? *pod : o.service;
  }
  if (o.namespace_name.empty()) o.namespace_name = getenv("POD_NAMESPACE").value_or("");
  if (tcp_only) o.tcp_listen = std::exchange(o.listen, "");
  return out;
}

absl::Status UnknownFlag(absl::string_view flag, absl::string_view command) {
  return absl::InvalidArgumentError(
      absl::StrCat("unknown flag ", flag, " for ", command, " (testapp --help lists them)"));
}

// A client command's arguments after its name (get, tcp): --help, one positional argument (`what`
// in errors; `take` parses it, `missing` is the error without it) and flags, each applied by
// `apply` (UnknownFlag for one the command does not have; `bool_flags` need no value).
// `out.command` is the command's, or kHelp after --help.
template <typename Take, typename Apply>
absl::Status ParseClient(const std::vector<std::string>& args, size_t first, CommandLine& out,
                         absl::string_view what, absl::string_view missing, Take take, Apply apply,
                         absl::Span<const absl::string_view> bool_flags = {}) {
  bool have_positional = false;
  for (size_t i = first; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      out.command = CommandLine::Command::kHelp;
      return absl::OkStatus();
    }
    if (!absl::StartsWith(arg, "-")) {
      if (have_positional) {
        return absl::InvalidArgumentError(absl::StrCat("a second ", what, " \"", arg, "\""));
      }
      if (absl::Status s = take(arg); !s.ok()) return s;
      have_positional = true;
      continue;
    }
    absl::StatusOr<FlagValue> taken = TakeFlag(
        args, i, [&](absl::string_view flag) { return absl::c_linear_search(bool_flags, flag); });
    if (!taken.ok()) return taken.status();
    if (absl::Status s = apply(taken->flag, taken->value); !s.ok()) return s;
  }
  if (!have_positional) return absl::InvalidArgumentError(missing);
  return absl::OkStatus();
}

absl::StatusOr<CommandLine> ParseGet(const std::vector<std::string>& args, size_t first) {
  CommandLine out;
  out.command = CommandLine::Command::kGet;
  GetOptions& o = out.get;
  auto take_url = [&o](absl::string_view arg) {
    if (absl::Status s = Set(o.url, ParseHttpUrl(arg)); !s.ok()) return s;
    if (!o.url.has_target()) o.url.target = "/";
    return absl::OkStatus();
  };
  bool count_given = false;
  auto apply = [&o, &count_given](const std::string& flag, const std::string& value) {
    if (flag == "--method") {
      if (value.empty()) return FlagError(flag, "must not be empty");
      o.method = absl::AsciiStrToUpper(value);
    } else if (flag == "--header") {
      size_t colon = value.find(':');
      if (colon == std::string::npos) {
        return FlagError(flag, absl::StrCat("\"", value, "\" is not name: value"));
      }
      absl::StatusOr<std::string> name = HeaderName(flag, value.substr(0, colon));
      if (!name.ok()) return name.status();
      o.headers.emplace_back(*name,
                             std::string(absl::StripAsciiWhitespace(value.substr(colon + 1))));
    } else if (flag == "--data") {
      o.body = value;
    } else if (flag == "--count") {
      if (o.duration > Duration(0)) return FlagError(flag, "give --count or --duration, not both");
      count_given = true;
      return Set(o.count, ParseCount(flag, value, 10000000));
    } else if (flag == "--duration") {
      if (count_given) return FlagError(flag, "give --count or --duration, not both");
      absl::StatusOr<Duration> d = ParseDurationFlag(flag, value);
      if (d.ok() && *d == Duration(0)) return FlagError(flag, "must be above zero");
      return Set(o.duration, std::move(d));
    } else if (flag == "--rate") {
      double rate = 0;
      if (!absl::SimpleAtod(value, &rate) || !(rate > 0 && rate <= 100000)) {
        return FlagError(flag, absl::StrCat("\"", value,
                                            "\" is not a number of requests per second above 0 "
                                            "and at most 100000"));
      }
      o.rate = rate;
    } else if (flag == "--concurrency") {
      return Set(o.concurrency, ParseCount(flag, value, 1000));
    } else if (flag == "--timeout") {
      return Set(o.timeout, ParseDurationFlag(flag, value));
    } else if (flag == "--trace") {
      return Set(o.trace, ParseBool(flag, value));
    } else {
      return UnknownFlag(flag, "get");
    }
    return absl::OkStatus();
  };
  constexpr absl::string_view kBoolFlags[] = {"--trace"};
  absl::Status s =
      ParseClient(args, first, out, "URL", "get: which URL? (testapp get http://HOST:PORT/PATH)",
                  take_url, apply, kBoolFlags);
  if (!s.ok()) return s;
  if (o.trace &&
      absl::c_any_of(o.headers, [](const auto& h) { return h.first == "traceparent"; })) {
    return FlagError("--trace",
                     "sends a new traceparent with each request: leave out -H traceparent");
  }
  return out;
}

absl::StatusOr<CommandLine> ParseTcp(const std::vector<std::string>& args, size_t first) {
  CommandLine out;
  out.command = CommandLine::Command::kTcp;
  TcpOptions& o = out.tcp;
  auto take_target = [&o](absl::string_view arg) {
    absl::StatusOr<net::HostPort> target = net::SplitHostPort(arg);
    if (!target.ok() || target->host.empty() || target->unbracketed_ipv6()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tcp: \"", arg, "\" is not HOST:PORT (mysql:3306, 10.0.0.5:25, [fd00::5]:25)"));
    }
    o.host = target->host;
    o.port = target->port;
    return absl::OkStatus();
  };
  auto apply = [&o](const std::string& flag, const std::string& value) {
    if (flag == "--send") {
      if (value.find_first_of("\r\n") != std::string::npos) {
        return FlagError(flag, "must be one line (no CR or LF)");
      }
      o.send.push_back(value);
    } else if (flag == "--count") {
      return Set(o.count, ParseCount(flag, value, 1000000));
    } else if (flag == "--timeout") {
      return Set(o.timeout, ParseDurationFlag(flag, value));
    } else {
      return UnknownFlag(flag, "tcp");
    }
    return absl::OkStatus();
  };
  absl::Status s = ParseClient(args, first, out, "HOST:PORT",
                               "tcp: where to? (testapp tcp HOST:PORT)", take_target, apply);
  if (!s.ok()) return s;
  return out;
}

}  // namespace

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args,
                                             const GetEnv& getenv) {
  if (!args.empty() && args[0] == "get") return ParseGet(args, 1);
  if (!args.empty() && args[0] == "tcp") return ParseTcp(args, 1);
  if (!args.empty() && args[0] == "serve") return ParseServe(args, 1, getenv, false);
  if (!args.empty() && args[0] == "serve-tcp") return ParseServe(args, 1, getenv, true);
  if (!args.empty() && !absl::StartsWith(args[0], "-")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown command \"", args[0], "\"; commands: serve (default), serve-tcp, get, tcp"));
  }
  return ParseServe(args, 0, getenv, false);
}

std::string Usage() {
  return R"(usage: testapp [serve] [flags]        a sample service for meshlet's end-to-end tests
       testapp serve-tcp [flags]      a TCP service that speaks first (a banner), echoes lines
       testapp get URL [flags]        send requests and print the answer (or a summary)
       testapp tcp HOST:PORT [flags]  talk to serve-tcp: print its banner and echoes (or a summary)

serve (every flag also from the environment as TESTAPP_<FLAG>, e.g. TESTAPP_FAIL_PATTERN):
  --listen IP:PORT          where to serve (default 0.0.0.0:9080)
  --service NAME            the service this instance belongs to (default testapp)
  --service-version V       its version (default v1)
  --pod NAME                this instance (default $POD_NAME, else the host name)
  --call URL                a downstream service, e.g. http://reviews:9080/reviews; repeatable,
                            TESTAPP_CALL takes a comma-separated list; called in parallel for
                            every request; a URL without a path gets the request's own
  --fail-pattern P          answer some requests with --fail-status: x fails, . succeeds, counts
                            repeat ("3x17." fails 3 of every 20, from the first)
  --fail-fraction F         answer each request with --fail-status with probability F
  --fail-status S           the failure status (default 503)
  --latency D               delay every answer by D (default 0)
  --slow D                  delay answers under /slow by D more (default 1s)
  --call-timeout D          each downstream call's time limit (default 5s)
  --degrade                 answer 200 when a downstream call failed (default: 502)
  --forward-header NAME     copy this incoming header to downstream calls too (trace headers
                            are always copied: traceparent, tracestate, x-request-id, b3, x-b3-*)
  --log-requests            one line on stderr per request
  --drain-time D            on SIGTERM, wait at most D for requests in flight (default 5s)
  --max-connections N       connections served at once (default 1024), per protocol
  --tcp-listen IP:PORT      serve serve-tcp's banner protocol here too (default: nowhere)
  --banner TEXT             that protocol's first line (default "220 SERVICE POD ready")
  --echo                    answer every request with JSON describing it (path, host, method,
                            headers, namespace, service, pod); ?delay=D, ?status=N and
                            ?uuid=U&responseCode=N&succeedAfter=K[&delayRetry=D] ask for an outcome
  --namespace NS            the namespace echo answers name (default $POD_NAMESPACE)

  Paths: /healthz answers 200 "ok" and never fails or calls; /__stats the counters as JSON;
  POST /__set?fail-pattern=P&fail-fraction=F&latency=D changes those at run time. Every other
  path answers JSON naming service, version and pod, with the downstream answers nested.

serve-tcp (flags also from the environment as TESTAPP_<FLAG>):
  --listen IP:PORT          where to serve (default 0.0.0.0:3306)
  --service NAME, --pod NAME, --max-connections N, --drain-time D   as for serve
  --banner TEXT             the first line (default "220 SERVICE POD ready")
  --log-requests            one line on stderr per closed connection

  On accept it writes the banner and CR LF before reading anything (as MySQL and SMTP servers
  do), then answers every line it reads with "echo SERVICE/POD: LINE" and CR LF, and closes when
  the client does. SIGTERM stops accepting and closes the connections.

get:
  --method M                request method (default GET)
  -H, --header 'N: V'       a request header; repeatable
  --data BODY               a request body
  --count N                 requests to send (default 1)
  --duration D              send requests for D instead of a count
  --concurrency C           requests in flight at once (default 1)
  --rate R                  send R requests per second in all, at most (default: no pacing)
  --timeout D               each request's time limit (default 5s)
  --trace                   send each request with a new random sampled W3C traceparent
                            (00-<trace id>-<span id>-01); one request prints "trace <id>" on
                            stderr, more list the first 20 trace ids in the summary ("traces")

  One request: the body on stdout; exit 0 for a 2xx answer, 1 for another status, 3 when no
  answer came. More (or --duration): one JSON line counting statuses, errors and answering pods
  (the x-testapp-pod header), with latency percentiles, the seconds taken and the first 20
  failures (when sent, status or error, pod); exit 0 when every answer was 2xx. SIGTERM or
  SIGINT stops sending, waits for the requests in flight and prints the summary ("stopped");
  a second one cancels those in flight.

tcp:
  --send LINE               a line to send after the banner; repeatable, each waits for its echo
  --timeout D               each connection's time limit (default 5s)
  --count N                 connections to make, one after another (default 1)

  Waits for the banner without sending anything first. One connection: the banner and each echo
  on stdout, a line each; exit 0 when they all came as expected, 1 for an unexpected answer, 3
  when no answer came (the reason on stderr). More: one JSON line counting connections, ok
  ones, errors and banners, with latency percentiles and the first failures; exit 0 when every
  connection went as expected.

  --help, --version         print and exit
)";
}

}  // namespace meshlet::testapp
