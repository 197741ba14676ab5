"""meshlet_fuzz_target: a fuzz target (common/fuzz/fuzz_target.h) and its short test run."""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_test")

def meshlet_fuzz_target(name, srcs, deps = [], runs = 2000, size = "small", **kwargs):
    """Declares `name` (the fuzz binary) and `name_test` (a deterministic run of `runs` inputs).

    Built normally, the binary links fuzz_main (replay files, mutate the seeds); with
    --config=fuzz it links libFuzzer instead (./dev fuzz finds it by its "fuzz_target" tag).
    """
    driver = select({
        "//common/fuzz:libfuzzer": ["//common/fuzz:libfuzzer_init"],
        "//conditions:default": ["//common/fuzz:fuzz_main"],
    })
    cc_binary(
        name = name,
        testonly = True,
        srcs = srcs,
        deps = deps + ["//common/fuzz:fuzz_target"] + driver,
        linkopts = select({
            "//common/fuzz:libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        tags = ["fuzz_target"],
        **kwargs
    )
    cc_test(
        name = name + "_test",
        size = size,
        srcs = srcs,
        args = ["--runs=%d" % runs],
        deps = deps + ["//common/fuzz:fuzz_target", "//common/fuzz:fuzz_main"],
        **kwargs
    )
