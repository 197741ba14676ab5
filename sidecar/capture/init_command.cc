#include "sidecar/capture/init_command.h"

#include <cstdio>
#include <functional>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/status.h"
#include "common/flags/flags.h"

namespace meshlet::sidecar::capture {
namespace {

using Setter = std::function<absl::Status(absl::string_view)>;

absl::StatusOr<uint16_t> ParsePort(absl::string_view text) {
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text, &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a port from 1 to 65535"));
  }
  return static_cast<uint16_t>(port);
}

// "80,8080" (spaces allowed, empty items skipped) appended to `*out`.
absl::Status AppendPorts(absl::string_view list, std::vector<uint16_t>* out) {
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    ASSIGN_OR_RETURN(uint16_t port, ParsePort(absl::StripAsciiWhitespace(item)));
    out->push_back(port);
  }
  return absl::OkStatus();
}

absl::Status AppendCidrs(absl::string_view list, std::vector<Cidr>* out) {
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    ASSIGN_OR_RETURN(Cidr cidr, ParseCidr(item));
    out->push_back(std::move(cidr));
  }
  return absl::OkStatus();
}

// A list flag with a "*" (everything) default: the first use replaces the default, later uses
// add to it; "*" alone selects everything again, "" nothing.
template <typename T>
Setter Select(Selection<T>* out, bool* given,
              std::function<absl::Status(absl::string_view, std::vector<T>*)> append) {
  return [out, given, append](absl::string_view v) -> absl::Status {
    if (!*given) *out = {.all = false, .items = {}};
    *given = true;
    if (absl::StripAsciiWhitespace(v) == "*") {
      *out = {};
      return absl::OkStatus();
    }
    if (out->all) return absl::InvalidArgumentError("\"*\" was given already");
    return append(v, &out->items);
  };
}

Setter Port(uint16_t* out) {
  return [out](absl::string_view v) -> absl::Status {
    ASSIGN_OR_RETURN(*out, ParsePort(v));
    return absl::OkStatus();
  };
}

Setter Uid(uint32_t* out) {
  return [out](absl::string_view v) {
    uint32_t id = 0;
    // (uid_t)-1 means "no change" to the kernel, not a user.
    if (!absl::SimpleAtoi(v, &id) || id == std::numeric_limits<uint32_t>::max()) {
      return absl::InvalidArgumentError("must be a numeric id from 0 to 4294967294");
    }
    *out = id;
    return absl::OkStatus();
  };
}

// Flags whose meaning depends on whether they were given at all.
struct Given {
  bool include_inbound_ports = false;
  bool include_outbound_cidrs = false;
  bool cleanup = false;
};

std::vector<flags::Flag> Flags(InitCommandLine& parsed, Given& given) {
  CaptureOptions& o = parsed.options;
  return {
      {.name = "--proxy-uid",
       .value = "UID",
       .help = "The proxy's user id: its traffic is never captured. Default 1337.",
       .set = Uid(&o.proxy_uid)},
      {.name = "--proxy-gid",
       .value = "GID",
       .help = "The proxy's group id: traffic of processes in this group is never captured either. "
               "Default 1337.",
       .set = Uid(&o.proxy_gid)},
      {.name = "--outbound-port",
       .value = "PORT",
       .help = "The sidecar's outbound capture listener. Default 15001.",
       .set = Port(&o.outbound_port)},
      {.name = "--inbound-port",
       .value = "PORT",
       .help = "The sidecar's inbound capture listener. Default 15006.",
       .set = Port(&o.inbound_port)},
      {.name = "--include-inbound-ports",
       .value = "PORTS",
       .help =
           "Inbound destination ports to capture, comma-separated; \"*\" (the default) captures "
           "all but the excluded ones, \"\" none. Repeatable.",
       .set =
           Select<uint16_t>(&o.include_inbound_ports, &given.include_inbound_ports, AppendPorts)},
      {.name = "--exclude-inbound-ports",
       .value = "PORTS",
       .help =
           "Inbound destination ports never captured, comma-separated, besides 15000, 15020 and "
           "15021 (the sidecar's admin, Prometheus/readiness and health ports), which never are. "
           "Repeatable.",
       .set = [&o](absl::string_view v) { return AppendPorts(v, &o.exclude_inbound_ports); }},
      {.name = "--exclude-outbound-ports",
       .value = "PORTS",
       .help = "Outbound destination ports never captured, comma-separated. Repeatable.",
       .set = [&o](absl::string_view v) { return AppendPorts(v, &o.exclude_outbound_ports); }},
      {.name = "--include-outbound-cidrs",
       .value = "CIDRS",
       .help =
           "Outbound destinations to capture, comma-separated address ranges of either family "
           "(10.96.0.0/12,fd00::/8); \"*\" (the default) captures all but the excluded ones, \"\" "
           "none. A family none of the ranges belongs to has no outbound capture. Repeatable.",
       .set = Select<Cidr>(&o.include_outbound_cidrs, &given.include_outbound_cidrs, AppendCidrs)},
      {.name = "--exclude-outbound-cidrs",
       .value = "CIDRS",
       .help = "Outbound destinations never captured, comma-separated address ranges of either "
               "family. Repeatable.",
       .set = [&o](absl::string_view v) { return AppendCidrs(v, &o.exclude_outbound_cidrs); }},
      {.name = "--ipv6",
       .value = "auto|true|false",
       .help =
           "Program ip6tables too: true, false, or auto (the default: when the pod has a global "
           "IPv6 address).",
       .set =
           [&o](absl::string_view v) {
             if (v == "auto") {
               o.ipv6 = Ipv6Mode::kAuto;
             } else if (v == "true") {
               o.ipv6 = Ipv6Mode::kOn;
             } else if (v == "false") {
               o.ipv6 = Ipv6Mode::kOff;
             } else {
               return absl::InvalidArgumentError("must be auto, true or false");
             }
             return absl::OkStatus();
           }},
      flags::SwitchFlag("--dry-run", &parsed.dry_run,
                        "Print the iptables-restore input for each family and change nothing. "
                        "Needs neither privileges nor the iptables tools."),
      flags::SwitchFlag("--cleanup", &given.cleanup,
                        "Remove the capture rules (exactly the chains and jumps this command "
                        "adds) instead of installing them."),
      flags::IntFlag("--lock-wait", "SECONDS", &parsed.lock_wait_seconds,
                     "How long iptables-restore waits for another program's xtables lock. "
                     "Default 10.",
                     0, 3600),
      flags::HelpFlag(&parsed.help, "Print this text and exit."),
  };
}

}  // namespace

absl::StatusOr<InitCommandLine> ParseInitCommandLine(const std::vector<std::string>& args) {
  InitCommandLine parsed;
  Given given;
  RETURN_IF_ERROR(flags::Parse(Flags(parsed, given), args,
                               {.command = "init",
                                .help_hint = "see sidecar init --help",
                                .underscores_are_dashes = true})
                      .status());
  if (given.cleanup) parsed.action = Action::kCleanup;
  return parsed;
}

std::string InitUsageText() {
  std::string out =
      "Usage: sidecar init [flags]\n"
      "\n" +
      flags::Wrap(
          "Programs the pod's traffic capture in the nat table, in one atomic iptables-restore "
          "batch per family: inbound TCP to the inbound listener, outbound TCP to the outbound "
          "listener, except the proxy's own traffic (its UID or GID), loopback, and the excluded "
          "ports and ranges. Run it in the pod's network namespace, as root with NET_ADMIN and "
          "NET_RAW (an init container). Running it again replaces the rules; --cleanup removes "
          "them. docs/operations.md (Traffic capture) explains every rule.",
          0) +
      "\n\nFlags:\n";
  InitCommandLine scratch;
  Given given;
  out += flags::FlagTable(Flags(scratch, given));
  absl::StrAppend(&out, "\n",
                  flags::Wrap("Exit status: 0 when done; 1 when the rules could not be applied "
                              "or removed (the reason on stderr); 2 for a bad command line.",
                              0),
                  "\n");
  return out;
}

int InitMain(const std::vector<std::string>& args, const System& base_system) {
  absl::StatusOr<InitCommandLine> command_line = ParseInitCommandLine(args);
  if (!command_line.ok()) {
    std::fprintf(stderr, "sidecar init: %s\n",
                 std::string(command_line.status().message()).c_str());
    return flags::kUsageExitCode;
  }
  if (command_line->help) {
    std::fputs(InitUsageText().c_str(), stdout);
    return 0;
  }
  System system = base_system;
  system.lock_wait = absl::Seconds(command_line->lock_wait_seconds);
  if (command_line->dry_run) {
    std::fputs(DryRun(command_line->options, command_line->action, system).c_str(), stdout);
    return 0;
  }
  std::string log;
  absl::Status status = Execute(command_line->options, command_line->action, system, &log);
  std::fputs(log.c_str(), stdout);
  std::fflush(stdout);
  if (!status.ok()) {
    std::fprintf(stderr, "sidecar init: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace meshlet::sidecar::capture
