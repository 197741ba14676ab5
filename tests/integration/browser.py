"""What the browser tests need (playwright-core in tests/browser/node_modules, Debian's chromium,
node), shared by dashboard_test.py, demo_test.py and tap_test.py."""

import os
import shutil


def missing_for(script):
    """None when `script` (a tests/browser/*.js) can run, else what it needs, as a sentence. The
    caller skips the test, or fails it when MESHLET_REQUIRE_BROWSER=1 (./dev test sets it)."""
    modules = os.path.join(os.path.dirname(os.path.realpath(script)), "node_modules",
                           "playwright-core")
    missing = [what for what, ok in (("tests/browser/node_modules (npm ci)", os.path.isdir(modules)),
                                     ("/usr/bin/chromium", os.path.exists("/usr/bin/chromium")),
                                     ("node", shutil.which("node") is not None)) if not ok]
    return "needs " + ", ".join(missing) + " (./dev test installs them)" if missing else None


def required():
    return os.environ.get("MESHLET_REQUIRE_BROWSER") == "1"


def require(test, script):
    """Skips `test` (a unittest.TestCase) unless `script` can run; fails it instead under
    MESHLET_REQUIRE_BROWSER=1."""
    message = missing_for(script)
    if message:
        if required():
            test.fail(message)
        print(f"SKIP: {test.id()} {message}")
        test.skipTest(message)
