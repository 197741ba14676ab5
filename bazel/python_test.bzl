"""meshlet_py_test: a test written in Python, run with Debian's /usr/bin/python3.

Debian's python3-grpcio, python3-h2 and python3-protobuf belong to /usr/bin/python3; the python3
first on PATH may be another interpreter without them, so every Python test runs through
//bazel:run_python_test.sh, which starts `main` with /usr/bin/python3 and passes `args` on.
"""

def meshlet_py_test(name, main = None, args = [], data = [], **kwargs):
    """A test running `main` (default: NAME.py in this package) with /usr/bin/python3.

    Args:
      name: the test's name.
      main: the script to run; it is added to `data`.
      args: arguments after the script (locations expanded as in any test's args).
      data: files the script reads (imported modules, binaries it starts, test data).
      **kwargs: passed to sh_test (size, timeout, tags, ...).
    """
    main = main or (name + ".py")
    native.sh_test(
        name = name,
        srcs = ["//bazel:run_python_test.sh"],
        args = ["$(rootpath %s)" % main] + args,
        data = [main] + data,
        **kwargs
    )
