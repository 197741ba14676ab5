"""The .bazelrc keeps every compilation mode building.

A warning GCC reports only when it optimises (-Wrestrict's false positives in libstdc++, GCC bug
105651) was suppressed under `build:opt`, so `bazel build --config=opt` passed and the standard
`bazel build -c opt` failed. Here: a `-Wno-...` copt in a named config is allowed only when that
config also changes what the compiler sees (a sanitizer, another compiler), since a config that
only picks an optimisation level is what `-c opt`/`-c dbg` do without it.

    bazelrc_test.py .bazelrc
"""

import re
import sys
import unittest

BAZELRC = None

# What makes a config's compilation differ from a plain -c mode's: its suppressions may be its own.
INSTRUMENTING = re.compile(r"-fsanitize=|--repo_env=CC=|--repo_env=CXX=")


def parse(text):
    """{config name ('' for plain build): [options]} of the `build` lines."""
    configs = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        command, _, options = line.partition(" ")
        if command == "build":
            name = ""
        elif command.startswith("build:"):
            name = command[len("build:"):]
        else:
            continue
        configs.setdefault(name, []).extend(options.split())
    return configs


def suppressions(options):
    return {o.split("=", 1)[1] for o in options
            if o.startswith(("--copt=-Wno-", "--cxxopt=-Wno-")) and o != "--copt=-Wno-error"}


def violations(configs):
    """Suppressions only a config that merely picks a compilation mode carries."""
    plain = suppressions(configs.get("", []))
    found = []
    for name, options in sorted(configs.items()):
        if not name or any(INSTRUMENTING.search(o) for o in options):
            continue
        for flag in sorted(suppressions(options) - plain):
            found.append(f"build:{name} {flag}")
    return found


class BazelrcTest(unittest.TestCase):
    def test_no_warning_is_suppressed_only_in_a_compilation_mode_config(self):
        with open(BAZELRC) as f:
            configs = parse(f.read())
        self.assertIn("opt", configs, "the .bazelrc has no build:opt config")
        self.assertEqual(violations(configs), [],
                         "put these under plain `build` so that `bazel build -c opt` (or -c dbg) "
                         "builds too")

    def test_the_check_finds_what_it_looks_for(self):
        # The .bazelrc as it was: -Wno-restrict under build:opt only.
        configs = parse("build --copt=-Wall\n"
                        "build:opt --compilation_mode=opt\n"
                        "build:opt --copt=-O2 --copt=-Wno-restrict\n"
                        "build:asan --copt=-fsanitize=address --copt=-Wno-maybe-uninitialized\n")
        self.assertEqual(violations(configs), ["build:opt -Wno-restrict"])
        configs = parse("build --copt=-Wno-restrict  # everywhere\n"
                        "build:opt --compilation_mode=opt --copt=-Wno-restrict\n")
        self.assertEqual(violations(configs), [])


if __name__ == "__main__":
    BAZELRC = sys.argv.pop(1)
    unittest.main()
