"""meshlet_fuzz_target: a fuzz target (common/fuzz/fuzz_target.h) and its short test run."""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_test")

def meshlet_fuzz_target(name, srcs, deps = [], runs = 2000, size = "small", **kwargs):
    """Declares `name` (the fuzz binary) and `name_test` (a deterministic run of `runs` inputs).

    `name_test` also replays fuzz_corpus/<name>/ of the package when it exists.

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
    # The committed corpus (grown and minimized by ./dev fuzz --merge) is replayed, and mutated,
    # on every test run.
    corpus = native.glob(["fuzz_corpus/%s/*" % name], allow_empty = True)
    corpus_args = ["--corpus=%s/fuzz_corpus/%s" % (native.package_name(), name)] if corpus else []
    cc_test(
        name = name + "_test",
        size = size,
        srcs = srcs,
        args = ["--runs=%d" % runs] + corpus_args,
        data = corpus,
        deps = deps + ["//common/fuzz:fuzz_target", "//common/fuzz:fuzz_main"],
        **kwargs
    )
