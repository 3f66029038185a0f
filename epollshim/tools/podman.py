"""Debian's podman 4.3 with a private store, for the bench (never imported by a shim).

Rules:
* Podman never touches the machine's default storage: every call carries ``--root``,
  ``--runroot``, ``--tmpdir`` (all under one private base dir), vfs storage, cgroupfs and
  file events; containers run with ``--network none`` and the ``--ulimit``s this VM needs
  (podman asks for RLIMIT_NOFILE 1048576, which the VM refuses).
* ``--conmon`` names the monitor of each call: Debian's ``/usr/bin/conmon`` or our
  ``epollshim-conmon`` launcher (``our_monitor``).
* ``close`` removes every container (by id, ``rm -f``), kills by pid the monitors that
  outlived them (found through their ``conmon.pid`` files), unmounts what podman left under
  the base dir and removes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

IMAGE = "localhost/epollshim-busybox:latest"
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
RUN_OPTS = ("--network", "none", *LIMITS)
DEBIAN_CONMON = "/usr/bin/conmon"


def our_monitor() -> str:
    """The lean ``epollshim-conmon`` launcher ``make dev`` installs beside the interpreter."""
    return os.path.join(sysconfig.get_path("scripts"), "epollshim-conmon")


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != b"Z"


class PrivatePodman:
    """A podman whose every byte of state lives under one new dir inside ``parent``."""

    def __init__(self, parent: str | None = None, monitor: str = DEBIAN_CONMON) -> None:
        # short: attach sockets live in the bundle dir, under sun_path's 108 bytes
        self.base = Path(tempfile.mkdtemp(prefix="eps-pm-", dir=parent))
        self.root = self.base / "root"
        self.runroot = self.base / "rr"
        self.tmpdir = self.base / "tmp"
        self.monitor = monitor

    def argv(self, *args: str, monitor: str | None = None) -> list[str]:
        return [
            "podman",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--tmpdir",
            str(self.tmpdir),
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--conmon",
            monitor or self.monitor,
            *args,
        ]

    def __call__(
        self, *args: str, monitor: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run podman to completion, stdin /dev/null, output captured."""
        return subprocess.run(
            self.argv(*args, monitor=monitor),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, monitor: str | None = None, timeout: float = 120) -> str:
        """Run podman, require exit 0 (else RuntimeError), return its stdout."""
        r = self(*args, monitor=monitor, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"podman {args[0]}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def load_image(self) -> None:
        from epollshim.tools.image import build_image_tar

        tar = self.base / "image.tar"
        build_image_tar(tar, IMAGE)
        self.ok("load", "-q", "-i", str(tar))
        tar.unlink()

    def container_ids(self) -> list[str]:
        return self.ok("ps", "-a", "--no-trunc", "--format", "{{.ID}}").split()

    def monitor_pids(self) -> list[int]:
        """The live pids in the containers' ``conmon.pid`` files."""
        pids = []
        for path in self.runroot.glob("vfs-containers/*/userdata/conmon.pid"):
            try:
                pid = int(path.read_text())
            except (OSError, ValueError):
                continue
            if alive(pid):
                pids.append(pid)
        return pids

    def remove_all(self, timeout: float = 60) -> list[int]:
        """Remove every container; kill (and return) the monitors still alive after it."""
        monitors = self.monitor_pids()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                ids = self.container_ids()
            except (RuntimeError, subprocess.SubprocessError):
                break
            if not ids:
                break
            self("rm", "-f", "-t", "0", *ids)  # again if need be: an exit command holds a lock
        while time.monotonic() < end and any(alive(p) for p in monitors):
            time.sleep(0.02)
        left = [p for p in monitors if alive(p)]
        for pid in left:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        return left

    def close(self) -> None:
        self.remove_all()
        self("rmi", "-a", "-f")
        unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


def unmount_under(base: Path) -> None:
    """Unmount (deepest first, lazily) anything mounted below ``base``."""
    prefix = str(base) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
