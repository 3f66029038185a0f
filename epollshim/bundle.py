"""The embedded default bundle: a busybox-static rootfs plus a runc 1.1 config.json.

Rules of this module:

* No network, no image: the rootfs is ``/bin/busybox`` (Debian's busybox-static) copied into
  ``rootfs/bin`` with one symlink per applet, so ``sh``, ``echo``, ``sleep``, ``cat`` ... work.
* The applet list comes from ``busybox --list``, run once per process with ``os.posix_spawn``
  (``subprocess`` is banned in this package) and cached. We wait for that one pid only; if a
  process-wide ``waitpid(-1)`` reaper got it first, the output read to EOF is all we need.
* The spec is ``runc spec``'s default (runc 1.1.5) with three deliberate changes: the root is
  writable (tests write files), ``process.terminal`` follows the caller, and ``PATH`` is
  ``/bin:/usr/bin`` because busybox lives in ``/bin``.
* Each bundle gets its own rootfs (containers may write to it) and its own copy of busybox
  (2 MB, ~1 ms). Creating ~270 symlinks costs 35-70 ms on ext4 here, so the applet symlinks
  are hard-linked (a link to a symlink, not to its target) from a template directory built
  once per machine in ``$TMPDIR/epollshim-<uid>/`` (mode 0700, ownership checked): ~3 ms.
  A container can unlink or replace its own entries but cannot change a shared symlink's
  target. Any failure (other filesystem, EMLINK, template gone) falls back to ``symlink``.

CLI: ``epollshim bundle DIR [--tty] [-- CMD...]`` (``main``) writes a bundle, prints its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

BUSYBOX = "/bin/busybox"
DEFAULT_PATH = "PATH=/bin:/usr/bin"
USAGE = "usage: epollshim bundle DIR [--tty] [-- CMD...]"
HELP = f"""{USAGE}

Write an OCI bundle (busybox-static rootfs + runc config.json) to DIR and print its path.
  -t, --tty   process.terminal = true (run it with a console socket or on a terminal)
  CMD         the container command (default: sh)
"""

ETC_FILES: dict[str, str] = {
    "passwd": (
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    ),
    "group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
}
# Directory -> mode. /proc, /sys, /dev are mount points runc fills; /tmp is world-writable.
EMPTY_DIRS: dict[str, int] = {
    "bin": 0o755,
    "etc": 0o755,
    "dev": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "tmp": 0o1777,
    "root": 0o700,
    "usr": 0o755,
    "usr/bin": 0o755,
}

# runc 1.1 `runc spec` defaults (facts, not code): capabilities, masked and read-only paths.
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

_applets: tuple[str, ...] | None = None


class BundleError(Exception):
    """The bundle could not be written (busybox missing or broken, target not empty)."""


def busybox_applets(busybox: str = BUSYBOX) -> tuple[str, ...]:
    """The applet names ``busybox --list`` prints, computed once per process."""
    global _applets
    if _applets is None:
        _applets = _run_busybox_list(busybox)
    return _applets


def _run_busybox_list(busybox: str) -> tuple[str, ...]:
    if not os.access(busybox, os.X_OK):
        raise BundleError(f"{busybox} is missing or not executable (install busybox-static)")
    rfd, wfd = os.pipe()
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, wfd, 1),
        ]
        pid = os.posix_spawn(busybox, [busybox, "--list"], {}, file_actions=actions)
    except OSError as e:
        os.close(rfd)
        raise BundleError(f"cannot run {busybox} --list") from e
    finally:
        os.close(wfd)
    chunks = []
    with open(rfd, "rb") as pipe:  # takes ownership of rfd
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    status = 0
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # ECHILD: a process-wide reaper collected it; output is complete
        pass
    names = tuple(
        n
        for n in b"".join(chunks).decode().split()
        if n not in (".", "..", "busybox") and "/" not in n
    )
    if status != 0 or not names:
        raise BundleError(
            f"{busybox} --list failed (wait status {status:#x}, {len(names)} applets)"
        )
    return names


def _applet_template(applets: tuple[str, ...]) -> str | None:
    """A directory of ``NAME -> busybox`` symlinks to hard-link from, or None if unavailable.

    Built under a temporary name and renamed into place, so it is complete or absent. The name
    hashes busybox's identity and the applet list, so an upgraded busybox gets a new template.
    """
    uid = os.getuid()
    parent = os.path.join(tempfile.gettempdir(), f"epollshim-{uid}")
    try:
        try:
            os.mkdir(parent, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(parent)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
            return None  # not ours, or others could plant entries in it
        bb = os.stat(BUSYBOX)
        ident = repr((bb.st_dev, bb.st_ino, bb.st_size, bb.st_mtime_ns, applets))
        template = os.path.join(
            parent, "applets-" + hashlib.sha256(ident.encode()).hexdigest()[:16]
        )
        if os.path.isdir(template):
            return template
        building = tempfile.mkdtemp(prefix=".build-", dir=parent)
        for name in applets:
            os.symlink("busybox", os.path.join(building, name))
        try:
            os.rename(building, template)
        except OSError:  # ENOTEMPTY/EEXIST: a concurrent builder won; use theirs
            shutil.rmtree(building, ignore_errors=True)
        return template
    except OSError:
        return None


def write_rootfs(rootfs: str | os.PathLike[str]) -> Path:
    """Build a busybox rootfs in ``rootfs`` (created if absent; must be empty). Returns its path."""
    root = Path(rootfs)
    applets = busybox_applets()
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise BundleError(f"rootfs directory {root} is not empty")
    for name, mode in EMPTY_DIRS.items():
        d = root / name
        d.mkdir(exist_ok=True)
        d.chmod(mode)  # chmod, not mkdir's mode: the umask must not strip the sticky /tmp bits
    shutil.copyfile(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    _link_applets(applets, os.fspath(root / "bin"))
    for name, text in ETC_FILES.items():
        (root / "etc" / name).write_text(text)
    return root


def _link_applets(applets: tuple[str, ...], bindir: str) -> None:
    """Hard-link the template's symlinks into ``bindir``; fall back to ``symlink``."""
    template = _applet_template(applets)
    dst = os.open(bindir, os.O_RDONLY | os.O_DIRECTORY)
    src = -1
    try:
        if template is not None:
            src = os.open(template, os.O_RDONLY | os.O_DIRECTORY)
            if os.fstat(src).st_dev != os.fstat(dst).st_dev:
                os.close(src)  # hard links cannot cross filesystems (EXDEV)
                src = -1
        for name in applets:
            if src >= 0:
                try:
                    os.link(name, name, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
                    continue
                except OSError:  # EMLINK, ENOENT (template cleaned away), ...: plain symlinks
                    os.close(src)
                    src = -1
            os.symlink("busybox", name, dir_fd=dst)
    finally:
        os.close(dst)
        if src >= 0:
            os.close(src)


def _env_list(env: Mapping[str, str] | Iterable[str] | None, terminal: bool) -> list[str]:
    """Default ``PATH`` (and ``TERM`` with a terminal), overridden/extended by ``env``."""
    merged: dict[str, str] = {"PATH": DEFAULT_PATH.split("=", 1)[1]}
    if terminal:
        merged["TERM"] = "xterm"
    if isinstance(env, Mapping):
        merged.update(env)
    elif env is not None:
        for item in env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise BundleError(f"environment entry {item!r} is not KEY=VALUE")
            merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def default_spec(
    args: Sequence[str],
    *,
    terminal: bool = False,
    env: Mapping[str, str] | Iterable[str] | None = None,
    cwd: str = "/",
    hostname: str = "epollshim",
) -> dict[str, Any]:
    """A runc 1.1 OCI spec close to ``runc spec``'s default, with a writable root."""
    if not args:
        raise BundleError("the container command is empty")
    if not cwd.startswith("/"):
        raise BundleError(f"process cwd {cwd!r} must be an absolute path")
    nsd = ["nosuid", "noexec", "nodev"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": _env_list(env, terminal),
            "cwd": cwd,
            "capabilities": {
                k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted", "ambient")
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": [*nsd, "mode=1777", "size=65536k"],
            },
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": nsd},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*nsd, "ro"]},
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": [*nsd, "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def write_bundle(
    bundle: str | os.PathLike[str],
    args: Sequence[str] = ("sh",),
    *,
    terminal: bool = False,
    env: Mapping[str, str] | Iterable[str] | None = None,
    cwd: str = "/",
) -> Path:
    """Write ``bundle/rootfs`` and ``bundle/config.json``; returns the bundle's absolute path.

    ``env`` (a mapping or ``KEY=VALUE`` strings) extends/overrides ``PATH=/bin:/usr/bin``
    (plus ``TERM=xterm`` when ``terminal``).
    """
    spec = default_spec(args, terminal=terminal, env=env, cwd=cwd)  # validate before writing
    path = Path(bundle).absolute()
    path.mkdir(parents=True, exist_ok=True)
    if (path / "config.json").exists():
        raise BundleError(f"{path} already holds a bundle (config.json exists)")
    write_rootfs(path / "rootfs")
    (path / "config.json").write_text(json.dumps(spec, indent=2) + "\n")
    return path


def _parse(argv: Sequence[str]) -> tuple[str, bool, list[str]] | str | None:
    """(dir, tty, command), an error message, or None for --help."""
    tty = False
    dirs: list[str] = []
    command = ["sh"]
    for i, arg in enumerate(argv):
        if arg == "--":
            command = list(argv[i + 1 :])
            if not command:
                return "no command after '--'"
            break
        if arg in ("-h", "--help"):
            return None
        if arg in ("-t", "--tty"):
            tty = True
        elif arg.startswith("-") and arg != "-":
            return f"unknown option {arg!r}"
        else:
            dirs.append(arg)
    if not dirs:
        return "missing the bundle directory DIR"
    if len(dirs) > 1:
        return f"unexpected argument {dirs[1]!r} (put the container command after '--')"
    return dirs[0], tty, command


def main(argv: Sequence[str] | None = None) -> int:
    """``epollshim bundle DIR [--tty] [-- CMD...]``: write a bundle, print its path."""
    argv = sys.argv[1:] if argv is None else argv
    parsed = _parse(argv)
    if parsed is None:
        print(HELP, end="")
        return 0
    if isinstance(parsed, str):
        print(f"epollshim bundle: {parsed}; {USAGE}", file=sys.stderr)
        return 2
    directory, tty, command = parsed
    try:
        path = write_bundle(directory, command, terminal=tty)
    except (BundleError, OSError) as e:
        print(f"epollshim bundle: cannot write bundle {directory}: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
