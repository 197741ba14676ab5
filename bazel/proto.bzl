"""meshlet_cc_proto: .proto → C++ with Debian's protoc, without rules_proto's toolchains (which
would fetch a protoc of their own)."""

load("@rules_cc//cc:defs.bzl", "cc_library")

def meshlet_cc_proto(name, srcs, deps = [], visibility = None):
    """Generates <src>.pb.h/.pb.cc for every .proto in srcs and wraps them in a cc_library.

    Imports resolve from the workspace root (import "xds/base.proto") and from the system
    include directory for well-known types (import "google/protobuf/any.proto"). `deps` are
    other meshlet_cc_proto targets whose .proto files these import.
    """
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
    native.genrule(
        name = name + "_protoc",
        srcs = srcs + [d + "_srcs" for d in deps],
        outs = outs,
        tools = ["@system//:protoc"],
        cmd = ("$(location @system//:protoc) --proto_path=. --proto_path=/usr/include " +
               "--cpp_out=$(GENDIR) " +
               " ".join(["$(location %s)" % s for s in srcs])),
        visibility = ["//visibility:private"],
    )
    native.filegroup(
        name = name + "_srcs",
        srcs = srcs + [d + "_srcs" for d in deps],
        visibility = visibility,
    )
    cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:protobuf"],
        visibility = visibility,
    )
