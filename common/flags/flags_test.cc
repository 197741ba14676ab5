#include "common/flags/flags.h"

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "gtest/gtest.h"

namespace meshlet::flags {
namespace {

// A small command line: a required value flag with a shorthand, a repeatable one, a checked
// number, a switch, a true/false switch and --help.
struct Options {
  std::string name;
  std::vector<std::string> files;
  int count = 1;
  bool verbose = false;
  bool plaintext = false;
  bool help = false;

  std::vector<Flag> Table() {
    return {
        {.name = "--name",
         .shorthand = "-n",
         .value = "NAME",
         .help = "the name",
         .required = true,
         .set =
             [this](absl::string_view v) {
               name = std::string(v);
               return absl::OkStatus();
             }},
        {.name = "--file",
         .shorthand = "-f",
         .value = "FILE",
         .help = "a file; repeatable",
         .set =
             [this](absl::string_view v) {
               files.emplace_back(v);
               return absl::OkStatus();
             }},
        {.name = "--max-count",
         .value = "N",
         .help = "how many",
         .set =
             [this](absl::string_view v) {
               if (!absl::SimpleAtoi(v, &count) || count < 1) {
                 return absl::InvalidArgumentError("must be a positive integer");
               }
               return absl::OkStatus();
             }},
        SwitchFlag("--verbose", &verbose, "say more"),
        BoolFlag("--plaintext", &plaintext, "no TLS"),
        HelpFlag(&help, "this help"),
    };
  }
};

// The error message of parsing `args`, or "ok".
std::string Error(const std::vector<std::string>& args, const ParseOptions& parse_options = {}) {
  Options options;
  absl::StatusOr<ParsedArgs> parsed = Parse(options.Table(), args, parse_options);
  if (parsed.ok()) return "ok";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(FlagsTest, ValuesSeparateAfterEqualsOrAfterAShorthand) {
  Options options;
  absl::StatusOr<ParsedArgs> parsed =
      Parse(options.Table(), {"--name", "a", "--file=x.yaml", "-f", "y.yaml", "--max-count=3"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(options.name, "a");
  EXPECT_EQ(options.files, (std::vector<std::string>{"x.yaml", "y.yaml"}));
  EXPECT_EQ(options.count, 3);
  EXPECT_FALSE(options.verbose);
  EXPECT_FALSE(parsed->stopped);

  Options shorthand;
  ASSERT_TRUE(Parse(shorthand.Table(), {"-n", "b", "-n=c"}).ok());
  EXPECT_EQ(shorthand.name, "c");
}

TEST(FlagsTest, AValueMayStartWithADashOrBeEmpty) {
  Options options;
  ASSERT_TRUE(Parse(options.Table(), {"--name", "-", "--file", "--odd"}).ok());
  EXPECT_EQ(options.name, "-");
  EXPECT_EQ(options.files, std::vector<std::string>{"--odd"});
  ASSERT_TRUE(Parse(options.Table(), {"--name="}).ok());
  EXPECT_EQ(options.name, "");
}

TEST(FlagsTest, Switches) {
  Options options;
  ASSERT_TRUE(Parse(options.Table(), {"-n", "a", "--verbose", "--plaintext"}).ok());
  EXPECT_TRUE(options.verbose);
  EXPECT_TRUE(options.plaintext);
  ASSERT_TRUE(Parse(options.Table(), {"-n", "a", "--plaintext=false"}).ok());
  EXPECT_FALSE(options.plaintext);
  // A switch does not take the next argument as its value.
  Options next;
  absl::StatusOr<ParsedArgs> parsed =
      Parse(next.Table(), {"-n", "a", "--verbose", "true"}, {.positional = true});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->positional, std::vector<std::string>{"true"});

  EXPECT_EQ(Error({"-n", "a", "--verbose=yes"}), "--verbose=\"yes\": takes no value");
  EXPECT_EQ(Error({"-n", "a", "--plaintext=yes"}), "--plaintext=\"yes\": must be true or false");
}

TEST(FlagsTest, ErrorsNameTheFlagAndWhatWasWrong) {
  EXPECT_EQ(Error({"-n", "a", "--max-count=zero"}),
            "--max-count=\"zero\": must be a positive integer");
  EXPECT_EQ(Error({"-n", "a", "--max-count", "0"}),
            "--max-count=\"0\": must be a positive integer");
  EXPECT_EQ(Error({"-n", "a", "--colour=red"}), "unknown flag --colour (see --help)");
  EXPECT_EQ(Error({"-n", "a", "-x"}), "unknown flag -x (see --help)");
  EXPECT_EQ(Error({"-n"}), "--name needs a value (NAME)");
  EXPECT_EQ(Error({"--file", "f"}), "--name is required (see --help)");
  EXPECT_EQ(Error({"-n", "a", "extra"}), "unexpected argument \"extra\" (see --help)");
  // A command's flags: messages name the command and where its help is.
  const ParseOptions command = {.command = "get", .help_hint = "see meshctl help get"};
  EXPECT_EQ(Error({"-n", "a", "--ttl", "1h"}, command),
            "unknown flag --ttl for get (see meshctl help get)");
  EXPECT_EQ(Error({}, command), "get needs -n NAME (see meshctl help get)");
}

TEST(FlagsTest, PositionalArgumentsInOrderAmongFlags) {
  Options options;
  absl::StatusOr<ParsedArgs> parsed =
      Parse(options.Table(), {"svc", "-n", "a", "reviews", "-"}, {.positional = true});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->positional, (std::vector<std::string>{"svc", "reviews", "-"}));
}

TEST(FlagsTest, HelpStopsParsingBeforeAnythingIsChecked) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"-h", "--colour"}, {"--max-count=2", "--help", "--max-count=zero"}}) {
    Options options;
    absl::StatusOr<ParsedArgs> parsed = Parse(options.Table(), args);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_TRUE(parsed->stopped);
    EXPECT_TRUE(options.help);
  }
  EXPECT_EQ(Error({"--help=please"}), "--help=\"please\": takes no value");
}

TEST(FlagsTest, OptionalSpellings) {
  Options options;
  EXPECT_EQ(Error({"-n", "a", "--max_count=4"}), "unknown flag --max_count (see --help)");
  EXPECT_EQ(Error({"-name", "a"}), "unknown flag -name (see --help)");
  ASSERT_TRUE(Parse(options.Table(), {"-name=a", "-max_count", "4", "-help"},
                    {.underscores_are_dashes = true, .single_dash_names = true})
                  .ok());
  EXPECT_EQ(options.name, "a");
  EXPECT_EQ(options.count, 4);
  EXPECT_TRUE(options.help);
  // A shorthand keeps its meaning.
  Options shorthand;
  ASSERT_TRUE(Parse(shorthand.Table(), {"-n", "x"}, {.single_dash_names = true}).ok());
  EXPECT_EQ(shorthand.name, "x");
}

TEST(FlagsTest, ExtractTakesOnlyItsFlagsWherevereTheyAre) {
  std::string server;
  bool verbose = false;
  const std::vector<Flag> global = {StringFlag("--server", "HOST:PORT", &server, "where"),
                                    SwitchFlag("--verbose", &verbose, "say more")};
  std::vector<std::string> args = {"--server=a:1", "get",      "-n",  "x",      "--verbose",
                                   "svc",          "--server", "b:2", "--other"};
  ASSERT_TRUE(Extract(global, args).ok());
  EXPECT_EQ(args, (std::vector<std::string>{"get", "-n", "x", "svc", "--other"}));
  EXPECT_EQ(server, "b:2");
  EXPECT_TRUE(verbose);

  args = {"get", "--server"};
  absl::Status status = Extract(global, args);
  EXPECT_EQ(status.message(), "--server needs a value (HOST:PORT)");
}

TEST(FlagsTest, IntFlagsSayWhichNumbersTheyTake) {
  int workers = 2;
  size_t pushes = 100;
  int64_t runs = 10;
  std::vector<Flag> table = {IntFlag("--workers", "N", &workers, "threads", 1, 256),
                             Required(IntFlag<size_t>("--pushes", "N", &pushes, "at once")),
                             IntFlag<int64_t>("--runs", "N", &runs, "inputs", 0)};
  ASSERT_TRUE(Parse(table, {"--workers=256", "--pushes", "7", "--runs=0"}).ok());
  EXPECT_EQ(workers, 256);
  EXPECT_EQ(pushes, 7u);
  EXPECT_EQ(runs, 0);
  auto error = [&table](std::vector<std::string> args) {
    return std::string(Parse(table, args).status().message());
  };
  EXPECT_EQ(error({"--pushes=1", "--workers=257"}),
            "--workers=\"257\": must be an integer from 1 to 256");
  EXPECT_EQ(error({"--pushes=1", "--workers=two"}),
            "--workers=\"two\": must be an integer from 1 to 256");
  EXPECT_EQ(error({"--pushes=0"}), "--pushes=\"0\": must be a positive integer");
  EXPECT_EQ(error({"--pushes=-1"}), "--pushes=\"-1\": must be a positive integer");
  EXPECT_EQ(error({"--pushes=1", "--runs=-1"}), "--runs=\"-1\": must be an integer of at least 0");
  EXPECT_EQ(error({"--runs=1"}), "--pushes is required (see --help)");
  EXPECT_EQ(workers, 256);  // a refused value leaves the old one
}

TEST(FlagsTest, DurationFlagsSayWhatTheyTake) {
  absl::Duration timeout = absl::Seconds(30);
  std::chrono::nanoseconds interval = std::chrono::seconds(30);
  absl::Duration grace = absl::Seconds(30);
  std::chrono::nanoseconds idle = std::chrono::minutes(5);
  std::vector<Flag> table = {PositiveDurationFlag("--timeout", &timeout, "how long", "5m"),
                             PositiveDurationFlag("--interval", &interval, "how often"),
                             NonNegativeDurationFlag("--grace", &grace, "kept for"),
                             NonNegativeDurationFlag("--idle", &idle, "idle for", "5m")};
  ASSERT_TRUE(
      Parse(table, {"--timeout=1m30s", "--interval", "250ms", "--grace=0", "--idle=0s"}).ok());
  EXPECT_EQ(timeout, absl::Seconds(90));
  EXPECT_EQ(interval, std::chrono::milliseconds(250));
  EXPECT_EQ(grace, absl::ZeroDuration());
  EXPECT_EQ(idle, std::chrono::nanoseconds(0));
  auto error = [&table](std::vector<std::string> args) {
    return std::string(Parse(table, args).status().message());
  };
  EXPECT_EQ(error({"--timeout=0s"}), "--timeout=\"0s\": must be a positive duration such as 5m");
  EXPECT_EQ(error({"--timeout=-1s"}), "--timeout=\"-1s\": must be a positive duration such as 5m");
  EXPECT_EQ(error({"--interval=30"}), "--interval=\"30\": must be a positive duration such as 30s");
  EXPECT_EQ(error({"--interval=soon"}),
            "--interval=\"soon\": must be a positive duration such as 30s");
  EXPECT_EQ(error({"--grace=-1ms"}),
            "--grace=\"-1ms\": must be a duration of 0 or more such as 30s");
  EXPECT_EQ(error({"--idle="}), "--idle=\"\": must be a duration of 0 or more such as 5m");
  // Nothing unbounded: "inf" and what std::chrono cannot hold added to a clock's now.
  EXPECT_EQ(error({"--timeout=inf"}), "--timeout=\"inf\": must be at most 876000h");
  EXPECT_EQ(error({"--interval=3000000h"}), "--interval=\"3000000h\": must be at most 876000h");
  EXPECT_EQ(error({"--idle=inf"}), "--idle=\"inf\": must be at most 876000h");
  ASSERT_TRUE(Parse(table, {"--interval=876000h"}).ok());
  EXPECT_EQ(interval, std::chrono::hours(876000));
  EXPECT_EQ(timeout, absl::Seconds(90));  // a refused value leaves the old one
}

TEST(FlagsTest, DurationAtLeastFlagsTakeTheirFloorAndSayIt) {
  absl::Duration ttl = absl::Hours(24);
  std::chrono::nanoseconds wait = std::chrono::seconds(60);
  std::vector<Flag> table = {
      DurationAtLeastFlag("--ttl", absl::Seconds(1), &ttl, "lifetime", "24h"),
      DurationAtLeastFlag("--wait", absl::Milliseconds(100), &wait, "wait")};
  ASSERT_TRUE(Parse(table, {"--ttl=1s", "--wait", "100ms"}).ok());
  EXPECT_EQ(ttl, absl::Seconds(1));
  EXPECT_EQ(wait, std::chrono::milliseconds(100));
  auto error = [&table](std::vector<std::string> args) {
    return std::string(Parse(table, args).status().message());
  };
  EXPECT_EQ(error({"--ttl=999ms"}),
            "--ttl=\"999ms\": must be a duration of at least 1s such as 24h");
  EXPECT_EQ(error({"--ttl=-1s"}), "--ttl=\"-1s\": must be a duration of at least 1s such as 24h");
  EXPECT_EQ(error({"--ttl=a day"}),
            "--ttl=\"a day\": must be a duration of at least 1s such as 24h");
  EXPECT_EQ(error({"--wait=99ms"}),
            "--wait=\"99ms\": must be a duration of at least 100ms such as 30s");
  EXPECT_EQ(error({"--ttl=inf"}), "--ttl=\"inf\": must be at most 876000h");
  EXPECT_EQ(error({"--wait=876001h"}), "--wait=\"876001h\": must be at most 876000h");
  EXPECT_EQ(ttl, absl::Seconds(1));  // a refused value leaves the old one
  EXPECT_EQ(wait, std::chrono::milliseconds(100));
}

TEST(FlagsTest, ATableSpellingAFlagTwiceIsAMistake) {
  bool a = false, b = false;
  EXPECT_DEATH(Parse({SwitchFlag("--x", &a, ""), SwitchFlag("--x", &b, "")}, {}).IgnoreError(),
               "--x is in the table twice");
  EXPECT_DEATH(Parse({SwitchFlag("x", &a, "")}, {}).IgnoreError(), "must start with --");
}

TEST(FlagsTest, HelpTableAlignsAndWraps) {
  Options options;
  std::vector<Flag> table = options.Table();
  table[0].help =
      "a long help text that goes on and on, well past the width of the terminal it is printed "
      "on, so that it has to wrap";
  EXPECT_EQ(FlagTable(table, 60),
            "  -n, --name NAME     a long help text that goes on and on,\n"
            "                      well past the width of the terminal it\n"
            "                      is printed on, so that it has to wrap\n"
            "  -f, --file FILE     a file; repeatable\n"
            "      --max-count N   how many\n"
            "      --verbose       say more\n"
            "      --plaintext     no TLS\n"
            "  -h, --help          this help\n");
  // Without shorthands, no room is kept for them.
  std::string server;
  EXPECT_EQ(FlagTable({StringFlag("--server", "HOST:PORT", &server, "where")}),
            "  --server HOST:PORT   where\n");
  EXPECT_EQ(FlagUsage(table[0]), "-n NAME");
  EXPECT_EQ(FlagUsage(table[3]), "--verbose");
  EXPECT_EQ(Wrap(std::vector<std::string>{"meshctl", "get", "KIND", "[-n NS]"}, 4, 16),
            "meshctl get\n    KIND [-n NS]");
}

}  // namespace
}  // namespace meshlet::flags
