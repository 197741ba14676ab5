"""opt_build_test: a test that passes when its targets build with --compilation_mode=opt.

`bazel build -c opt` is the standard Bazel idiom for an optimised build, with none of .bazelrc's
named configs. GCC reports some warnings only when it optimises (-Wrestrict, -Wmaybe-uninitialized
...), so a suppression or a fix that only a named config carries passes `./dev test` and fails
the user's `-c opt`. This rule builds its targets in opt mode inside the ordinary `bazel test`
(a configuration transition), without a second bazel invocation that would drop the analysis
cache.
"""

def _to_opt_impl(_settings, _attr):
    return {"//command_line_option:compilation_mode": "opt"}

_to_opt = transition(
    implementation = _to_opt_impl,
    inputs = [],
    outputs = ["//command_line_option:compilation_mode"],
)

def _opt_build_test_impl(ctx):
    script = ctx.actions.declare_file(ctx.label.name + ".sh")
    names = [str(t.label) for t in ctx.attr.targets]
    ctx.actions.write(
        output = script,
        content = "#!/bin/sh\necho 'built with -c opt: %s'\n" % " ".join(names),
        is_executable = True,
    )
    files = depset(transitive = [t[DefaultInfo].files for t in ctx.attr.targets])
    return [DefaultInfo(executable = script, runfiles = ctx.runfiles(transitive_files = files))]

opt_build_test = rule(
    implementation = _opt_build_test_impl,
    test = True,
    attrs = {
        "targets": attr.label_list(
            cfg = _to_opt,
            mandatory = True,
            doc = "built with -c opt; the test fails to build when one of them does",
        ),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
)
