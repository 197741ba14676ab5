#!/usr/bin/env python3
"""Builds meshlet's container images from Bazel-built binaries, with podman and no registry.

    build.py --bin-dir DIR --out DIR [--tag TAG] [--podman-arg ARG]... [--keep]
             [--keep-debug-info] [--context-only] [IMAGE...]

--bin-dir is a Bazel output tree (bazel-bin, or a test's runfiles directory) holding
sidecar/sidecar, control-plane/control-plane, control-plane/cli/meshctl and
tests/e2e/testapp/testapp (and cni/meshlet-cni-agent, cni/meshlet-cni for meshlet-cni). For each
image (by default meshlet-proxy, meshlet-control-plane, meshlet-testapp; meshlet-cni when named)
it fills a build context, a temporary directory, with the image's Dockerfile
and:

  bin/    the image's binaries, without their debug sections (strip --strip-debug: the symbol
          table stays, so stack traces name functions; --keep-debug-info copies them as built)
  root/   every shared library they load, found with ldd here, copied (symlinks resolved) to the
          path the dynamic loader looks for it at (/lib64/ld-linux-x86-64.so.2,
          /lib/x86_64-linux-gnu/..., BoringSSL under /usr/lib/x86_64-linux-gnu/android); for the
          proxy also iptables (xtables-nft-multi and its command names) and every xtables module
          it loads at run time, with their libraries
  etc/    passwd, group, nsswitch.conf (deploy/images/etc); the control plane's image also
          has the system's CA certificates (/etc/ssl/certs/ca-certificates.crt, under root/)
  data/   an empty directory (the control plane's image makes it its data directory)

then runs `podman build` on it, tags the image localhost/NAME:TAG (TAG: the version the sidecar
binary reports, the release in VERSION, unless --tag says otherwise), writes OUT/NAME.oci.tar with
`podman save --format oci-archive` and removes the image again, so the archive is the only
result. Prints one line per image: name, size of its files, size of the archive.

Where podman keeps the images meanwhile: by default a storage of this run's own in a temporary
directory (--root, --runroot, --tmpdir), removed at the end, so podman's own storage is never
touched and two builds never share a tag; --podman-arg gives podman's global options instead
(the e2e harness passes its run's storage); --keep builds into podman's default storage and
leaves the images there, for `podman run` by hand. Run podman with
CONTAINERS_CONF=deploy/podman/containers.conf on these machines (./dev images does).
The Dockerfiles use nothing podman-specific: with --context-only the script writes each
image's context, Dockerfile included, to OUT/IMAGE/ and builds nothing, for
`docker build OUT/IMAGE`.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"

# Binaries from the Bazel output tree, by image: (path under --bin-dir, name in bin/).
BINARIES = {
    "meshlet-proxy": [("sidecar/sidecar", "sidecar")],
    "meshlet-control-plane": [
        ("control-plane/control-plane", "control-plane"),
        ("control-plane/cli/meshctl", "meshctl"),
    ],
    "meshlet-testapp": [("tests/e2e/testapp/testapp", "testapp")],
    "meshlet-cni": [("cni/meshlet-cni-agent", "meshlet-cni-agent"), ("cni/meshlet-cni", "meshlet-cni"),
                    ("cni/meshlet-cni-launcher", "meshlet-cni-launcher")],
}
# Built when no image is named: the images every run of the e2e harness needs. meshlet-cni (CNI
# mode's node agent) only when asked for (./dev images asks for all).
DEFAULT_IMAGES = ["meshlet-proxy", "meshlet-control-plane", "meshlet-testapp"]
DOCKERFILES = {
    "meshlet-proxy": "proxy.Dockerfile",
    "meshlet-control-plane": "control-plane.Dockerfile",
    "meshlet-testapp": "testapp.Dockerfile",
    "meshlet-cni": "cni.Dockerfile",
}

# The proxy image's iptables: the nf_tables multi-call binary under the names the sidecar's init
# step and people debugging a pod use (it picks its behaviour from argv[0]).
IPTABLES_MULTI = "/usr/sbin/xtables-nft-multi"
IPTABLES_NAMES = ["iptables", "iptables-restore", "iptables-save",
                  "ip6tables", "ip6tables-restore", "ip6tables-save"]

LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(\S+)\s+\(0x[0-9a-f]+\)\s*$")


class BuildError(Exception):
    pass


def shared_libraries(path):
    """The absolute paths of the shared libraries `path` loads, as the loader finds them here
    (the dynamic loader itself included). Fails on a library ldd cannot find."""
    result = subprocess.run(["ldd", path], capture_output=True, text=True)
    out = result.stdout + result.stderr
    if "statically linked" in out or "not a dynamic executable" in out:
        return []
    if result.returncode != 0:
        raise BuildError("ldd %s failed: %s" % (path, out.strip()))
    libs = []
    for line in result.stdout.splitlines():
        if "not found" in line:
            raise BuildError("%s: a shared library is missing on this machine: %s"
                             % (path, line.strip()))
        m = LDD_LINE.match(line)
        if not m:
            continue
        lib = m.group(2)
        if lib.startswith("/"):  # linux-vdso.so.1 is the kernel's, not a file
            libs.append(lib)
    return libs


def copy_into(root, path):
    """Copies the file at `path` (following symlinks) to the same path under `root`."""
    dest = os.path.join(root, path.lstrip("/"))
    if os.path.exists(dest):
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copy2(os.path.realpath(path), dest)


def xtables_module_dir():
    """Where libxtables loads iptables' match and target modules from: `xtables/` beside the
    libxtables.so.12 that xtables-nft-multi loads."""
    for lib in shared_libraries(IPTABLES_MULTI):
        if os.path.basename(lib).startswith("libxtables.so"):
            d = os.path.join(os.path.dirname(os.path.realpath(lib)), "xtables")
            if os.path.isdir(d):
                return d
    raise BuildError("no xtables module directory beside libxtables (is iptables installed?)")


def fill_context(image, bin_dir, context, strip_debug=True):
    """Writes bin/, root/ and etc/ of `image` into `context`; returns the files' total size.
    With strip_debug the binaries lose their DWARF sections (--config=opt's -g1 line tables,
    some 80 % of their size) but keep their symbol table, so stack traces still name functions."""
    for sub in ("bin", "root", "etc", "data", "bundle"):
        shutil.rmtree(os.path.join(context, sub), ignore_errors=True)
    bin_out = os.path.join(context, "bin")
    root = os.path.join(context, "root")
    os.makedirs(bin_out)
    os.makedirs(root)
    shutil.copytree(os.path.join(HERE, "etc"), os.path.join(context, "etc"))
    # An empty directory, the control plane's --data-dir, owned by its user in the image.
    os.makedirs(os.path.join(context, "data"))

    elves = []
    for rel, name in BINARIES[image]:
        src = os.path.join(bin_dir, rel)
        if not os.path.isfile(src):
            raise BuildError("%s: %s not found (build it first)" % (image, src))
        dest = os.path.join(bin_out, name)
        shutil.copyfile(src, dest)
        os.chmod(dest, 0o755)
        if strip_debug:
            run(["strip", "--strip-debug", dest])
        elves.append(src)
    if image == "meshlet-proxy":
        if not os.path.isfile(IPTABLES_MULTI):
            raise BuildError("%s not found: the proxy image needs Debian's iptables package"
                             % IPTABLES_MULTI)
        copy_into(root, IPTABLES_MULTI)
        sbin = os.path.join(root, "usr/sbin")
        for name in IPTABLES_NAMES:
            os.symlink(os.path.basename(IPTABLES_MULTI), os.path.join(sbin, name))
        elves.append(IPTABLES_MULTI)
        # Modules are dlopen()ed by absolute path, so ldd of the binary does not list them.
        modules = xtables_module_dir()
        for name in sorted(os.listdir(modules)):
            if name.endswith(".so"):
                path = os.path.join(modules, name)
                copy_into(root, path)
                elves.append(path)
    for elf in elves:
        for lib in shared_libraries(elf):
            copy_into(root, lib)
    if image == "meshlet-control-plane":
        # The system's CA certificates: the default --system-ca-file (BackendTLSPolicies'
        # wellKnownCACertificates: System), --jwks-ca-file and --federation-endpoint-ca.
        if not os.path.isfile(SYSTEM_CA_FILE):
            raise BuildError("%s not found: the control plane's image needs Debian's "
                             "ca-certificates package" % SYSTEM_CA_FILE)
        copy_into(root, SYSTEM_CA_FILE)
    if image == "meshlet-cni":
        # The plugin as the agent installs it on a node: beside the loader and every library it
        # loads, which the static meshlet-cni-launcher runs it with (cni/launcher_main.cc).
        bundle = os.path.join(context, "bundle")
        os.makedirs(bundle)
        shutil.copy2(os.path.join(bin_out, "meshlet-cni"), bundle)
        for lib in shared_libraries(os.path.join(bin_dir, "cni/meshlet-cni")):
            shutil.copy2(os.path.realpath(lib), os.path.join(bundle, os.path.basename(lib)))

    total = 0
    for d, _, files in os.walk(context):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p) and not f.endswith("Dockerfile"):
                total += os.path.getsize(p)
    return total


def human(size):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return ("%.1f %s" % (size, unit)) if unit != "B" else "%d B" % size
        size /= 1024.0


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError("%s failed (exit %d):\n%s" % (" ".join(cmd), result.returncode,
                                                       (result.stdout + result.stderr).strip()))
    return result.stdout


def binary_version(bin_dir):
    """The version `sidecar --version` prints ("meshlet sidecar 0.2.0" gives "0.2.0")."""
    sidecar = os.path.join(bin_dir, BINARIES["meshlet-proxy"][0][0])
    out = run([sidecar, "--version"]).split()
    if len(out) < 3 or not re.match(r"^[0-9A-Za-z][0-9A-Za-z._-]*$", out[-1]):
        raise BuildError("%s --version printed %r, not a version" % (sidecar, " ".join(out)))
    return out[-1]


def write_context(image, args):
    """Fills OUT/IMAGE/ with the image's Dockerfile and context, for another builder."""
    context = os.path.join(args.out, image)
    shutil.rmtree(context, ignore_errors=True)
    os.makedirs(context)
    shutil.copyfile(os.path.join(HERE, DOCKERFILES[image]), os.path.join(context, "Dockerfile"))
    return context, fill_context(image, args.bin_dir, context,
                                 strip_debug=not args.keep_debug_info)


def build(image, args, podman):
    context = tempfile.mkdtemp(prefix=image + "-context-", dir=args.context_dir)
    try:
        shutil.copyfile(os.path.join(HERE, DOCKERFILES[image]),
                        os.path.join(context, "Dockerfile"))
        files = fill_context(image, args.bin_dir, context, strip_debug=not args.keep_debug_info)
        ref = "localhost/%s:%s" % (image, args.tag)
        # --pull=never: FROM scratch needs nothing from a registry, and nothing may be fetched.
        run(podman + ["build", "--pull=never", "--layers=false", "-t", ref,
                      "-f", os.path.join(context, "Dockerfile"), context])
        archive = os.path.join(args.out, image + ".oci.tar")
        if os.path.exists(archive):
            os.unlink(archive)
        run(podman + ["save", "--format", "oci-archive", "-o", archive, ref])
        if not args.keep:
            run(podman + ["rmi", ref])
        return ref, files, os.path.getsize(archive), archive
    finally:
        shutil.rmtree(context, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin-dir", required=True, help="Bazel output tree with the binaries")
    p.add_argument("--out", required=True, help="directory for the OCI archives")
    p.add_argument("--tag", default=None,
                   help="the images' tag (default: the version the sidecar binary reports, "
                        "which is what `meshctl inject` names by default)")
    p.add_argument("--podman", default="podman", help="the podman executable")
    p.add_argument("--podman-arg", action="append", default=[],
                   help="global option for every podman call (repeatable)")
    p.add_argument("--context-dir", default=None,
                   help="where the build contexts are made (default: the temp directory)")
    p.add_argument("--keep-debug-info", action="store_true",
                   help="copy the binaries as built (by default their DWARF sections go)")
    p.add_argument("--context-only", action="store_true",
                   help="only write each image's build context to OUT/IMAGE/ (for docker build)")
    p.add_argument("--keep", action="store_true",
                   help="build in podman's default storage and leave the images there")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="images to build (default: %s; known: %s)"
                   % (", ".join(DEFAULT_IMAGES), ", ".join(BINARIES)))
    args = p.parse_args()
    images = args.images or list(DEFAULT_IMAGES)
    for image in images:
        if image not in BINARIES:
            p.error("unknown image %s; known: %s" % (image, ", ".join(BINARIES)))
    os.makedirs(args.out, exist_ok=True)
    if args.tag is None:
        try:
            args.tag = binary_version(args.bin_dir)
        except BuildError as e:
            print("build.py: %s" % e, file=sys.stderr)
            return 1
    podman = [args.podman] + args.podman_arg
    if args.context_only:
        try:
            for image in images:
                context, files = write_context(image, args)
                print("%-24s %10s of files in %s" % (image, human(files), context), flush=True)
        except BuildError as e:
            print("build.py: %s" % e, file=sys.stderr)
            return 1
        return 0
    storage = None
    if not args.podman_arg and not args.keep:
        storage = tempfile.mkdtemp(prefix="meshlet-images-", dir=args.context_dir)
        podman += ["--root", os.path.join(storage, "root"), "--runroot",
                   os.path.join(storage, "run"), "--tmpdir", os.path.join(storage, "tmp")]
    try:
        for image in images:
            ref, files, archive_size, archive = build(image, args, podman)
            shown = os.path.relpath(archive)
            if shown.startswith(".."):
                shown = archive
            print("%-24s %10s of files, archive %10s  %s" % (
                image, human(files), human(archive_size), shown), flush=True)
    except BuildError as e:
        print("build.py: %s" % e, file=sys.stderr)
        return 1
    finally:
        if storage is not None:
            # Removed images leave no mounts; what a failed build left goes with the directory.
            subprocess.run(podman + ["rmi", "--all", "--force"], capture_output=True)
            shutil.rmtree(storage, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
