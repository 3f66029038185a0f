"""A private containerd for tests, the demo and benchmarks.

Rules of this module:

* Everything of ours lives under one directory (a fresh temp dir by default): ``config.toml``,
  ``root/``, ``state/``, the gRPC socket ``containerd.sock`` (+ ``.ttrpc``), ``containerd.log``
  and ``bin/`` (extra shim binaries, first on containerd's ``PATH``). Other containerds on the
  machine are never touched: we use our own namespace (``epollshim-test-<random>``) and end only
  processes we started or that our containerd started (found by our socket on their command
  line), by pid.
* Two things escape that directory because containerd 1.6 and its runc shim hard-code them:
  shim sockets in ``/run/containerd/s/`` (named by a hash of our socket, namespace and id) and
  runc state in ``/run/containerd/runc/<ns>/``; ``stop`` removes the latter when it is empty.
* A namespace other containerds use too (``SHARED_NAMESPACES``: ``default``, and ``k8s.io``,
  the only one the CRI plugin knows) is never swept whole: ``stop`` force-deletes there only
  the runc containers of ids our containerd knew, and leaves its runc dir and cgroup alone.
* Waits are bounded polls (short interval, deadline), never bare sleeps.
* ``stop`` is best effort and idempotent: kill and delete tasks and containers, SIGTERM
  containerd, SIGKILL stray shims, force-delete leftover runc containers, unmount whatever is
  still mounted under our directory (deepest first, from /proc/self/mountinfo), remove it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from epollshim.tools import image

# Plugins that only produce warnings or do nothing useful in a test daemon.
DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",  # CRI: we drive containerd with ctr only
    "io.containerd.snapshotter.v1.aufs",  # "modprobe aufs failed"
    "io.containerd.snapshotter.v1.btrfs",  # "must be a btrfs filesystem"
    "io.containerd.snapshotter.v1.devmapper",  # "devmapper not configured" (warning)
    "io.containerd.snapshotter.v1.zfs",  # "must be a zfs filesystem"
    "io.containerd.tracing.processor.v1.otlp",  # upstream builds: no collector configured
    "io.containerd.internal.v1.tracing",
)
SHARED_NAMESPACES = ("default", "k8s.io")  # other containerds may have containers there too
RUNC_SHIM_STATE = "/run/containerd/runc"  # runc --root of the stock runc shim, per namespace
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POLL = 0.02  # seconds between two looks at something we wait for
MNT_DETACH = 2


class ContainerdError(Exception):
    """Our private containerd failed to start or misbehaved (the message has its log tail)."""


class PrivateContainerd:
    """A containerd of our own; a context manager (``with PrivateContainerd() as c: ...``).

    ``shims`` maps binary names (``containerd-shim-NAME-vN``) to executables to link into
    ``bin/``; ``bin_dirs`` (default: this interpreter's scripts dir, where pip installs
    ``containerd-shim-epollshim-v2``) go on containerd's ``PATH`` after it. ``extra_config`` is
    TOML appended to ``config.toml``; ``enable_plugins`` names plugins of ``DISABLED_PLUGINS``
    to keep enabled (the CRI plugin, for ``epollshim.tools.cri``).
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        namespace: str | None = None,
        debug_level: str = "debug",
        shims: Mapping[str, str] | None = None,
        bin_dirs: Iterable[str] | None = None,
        extra_config: str = "",
        enable_plugins: Iterable[str] = (),
        start_timeout: float = 30.0,
        keep_dir: bool = False,
    ) -> None:
        self._own_dir = base_dir is None
        made = tempfile.mkdtemp(prefix="epollshim-ctd-") if base_dir is None else base_dir
        self.base = os.path.realpath(made)  # mountinfo shows resolved paths
        self.namespace = namespace or f"epollshim-test-{secrets.token_hex(4)}"
        self.root = os.path.join(self.base, "root")
        self.state = os.path.join(self.base, "state")
        self.bin_dir = os.path.join(self.base, "bin")
        self.address = os.path.join(self.base, "containerd.sock")
        self.ttrpc_address = self.address + ".ttrpc"
        self.config_path = os.path.join(self.base, "config.toml")
        self.log_path = os.path.join(self.base, "containerd.log")
        self.debug_level = debug_level
        self.shims = dict(shims or {})
        self.bin_dirs = list(bin_dirs) if bin_dirs is not None else [sysconfig.get_path("scripts")]
        self.extra_config = extra_config
        self.disabled_plugins = [p for p in DISABLED_PLUGINS if p not in set(enable_plugins)]
        self.start_timeout = start_timeout
        self.keep_dir = keep_dir or not self._own_dir
        self.image: str | None = None
        self.startup_seconds = 0.0  # how long the last start took, for reports
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False
        if len(self.ttrpc_address) > 107:
            raise ContainerdError(f"socket path {self.ttrpc_address} is too long for AF_UNIX")

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> PrivateContainerd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """containerd's pid while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> PrivateContainerd:
        """Write the config, start containerd, wait until ``ctr version`` answers."""
        if self.pid is not None:
            raise ContainerdError(f"containerd already running as pid {self.pid}")
        for d in (self.root, self.state, self.bin_dir):
            os.makedirs(d, mode=0o711, exist_ok=True)
        for name, target in self.shims.items():
            link = os.path.join(self.bin_dir, name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(os.path.abspath(target), link)
        with open(self.config_path, "w") as f:
            f.write(self.config_toml())
        try:
            self._spawn_and_wait()
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> None:
        """Stop containerd by pid (SIGTERM) and start it again on the same dirs.

        Running tasks survive: their shims keep running and containerd reconnects (§2.7).
        """
        self._terminate()
        self._spawn_and_wait()

    def crash(self) -> None:
        """SIGKILL containerd by pid (an OOM kill, a crash): shims and tasks stay behind."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise ContainerdError("containerd is not running")
        proc.kill()
        proc.wait(timeout=15)
        self._proc = None

    def revive(self) -> None:
        """Start containerd again on the same dirs after ``crash`` (it reconnects to shims)."""
        if self.pid is not None:
            raise ContainerdError(f"containerd already running as pid {self.pid}")
        self._spawn_and_wait()

    def stop(self) -> None:
        """End containerd and everything it left; remove our dir unless asked to keep it."""
        if self._stopped:
            return
        self._stopped = True
        namespaces: list[str] = []
        known: set[str] = set()  # container ids our containerd had, for the shared namespaces
        try:
            namespaces = self._namespaces()
            for ns in namespaces:
                known.update(self._delete_tasks_and_containers(ns))
            if namespaces:  # deleted tasks' shims exit by themselves after Shutdown
                self._wait_shims_gone(deadline=time.monotonic() + 5.0)
        finally:
            self._terminate()
            self._kill_stray_shims()
            for ns in {self.namespace, *namespaces}:
                if ns in SHARED_NAMESPACES:
                    self._force_delete_runc(ns, known | self._bundle_ids(ns))
                    continue
                self._force_delete_runc(ns)
                remove_cgroups(ns)
            self._remove_shim_sockets()
            self._unmount_all()
            if not self.keep_dir:
                shutil.rmtree(self.base, ignore_errors=True)

    def config_toml(self) -> str:
        """The containerd config (version 2) we run with."""
        q = json.dumps  # a JSON string is a valid TOML basic string
        lines = [
            "version = 2",
            f"root = {q(self.root)}",
            f"state = {q(self.state)}",
            f"disabled_plugins = [{', '.join(q(p) for p in self.disabled_plugins)}]",
            "",
            "[grpc]",
            f"  address = {q(self.address)}",
            "",
            "[debug]",
            f"  level = {q(self.debug_level)}",
            "",
            '[plugins."io.containerd.internal.v1.opt"]',  # default /opt/containerd: keep it ours
            f"  path = {q(os.path.join(self.base, 'opt'))}",
            "",
        ]
        return "\n".join(lines) + self.extra_config + ("\n" if self.extra_config else "")

    def environment(self) -> dict[str, str]:
        """containerd's environment: ours, with the shim dirs first on PATH."""
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "TTRPC_ADDRESS")}
        path = [self.bin_dir, *self.bin_dirs, *env.get("PATH", "").split(":")]
        path += [p for p in SYSTEM_PATH.split(":") if p not in path]
        env["PATH"] = ":".join(dict.fromkeys(p for p in path if p))
        return env

    def _spawn_and_wait(self) -> None:
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                ["containerd", "--config", self.config_path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                env=self.environment(),
                start_new_session=True,  # a ^C meant for pytest must not reach it
            )
        deadline = began + self.start_timeout
        while not self._ready():
            rc = self._proc.poll()
            if rc is not None:
                raise ContainerdError(
                    f"containerd exited with {rc} while starting\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ContainerdError(
                    f"containerd not ready after {self.start_timeout:g} s\n{self.log_tail()}"
                )
            time.sleep(POLL)
        self.startup_seconds = time.monotonic() - began

    def _ready(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(self.address)
            except OSError:  # ENOENT (not yet created), ECONNREFUSED (not yet listening)
                return False
        return self.ctr("version", timeout=10).returncode == 0

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        self._proc = None

    # -- ctr ----------------------------------------------------------------------------------

    def ctr(
        self, *args: str, namespace: str | None = None, timeout: float | None = 60, **kw: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``ctr --address <sock> --namespace <ns> ARGS``; output captured as text.

        Keyword arguments go to ``subprocess.run`` (``check=True``, ``text=False``, ``input=``,
        ``stdout=``...); stdin is /dev/null unless ``input`` or ``stdin`` is given.
        """
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        if "input" not in kw and "stdin" not in kw:
            kw["stdin"] = subprocess.DEVNULL
        argv = ["ctr", "--address", self.address, "--namespace", namespace or self.namespace]
        return subprocess.run([*argv, *args], timeout=timeout, **kw)

    def import_image(
        self, tar: str | os.PathLike[str] | None = None, name: str = image.DEFAULT_NAME
    ) -> str:
        """Import an OCI image tarball (default: build ours as ``name``); returns its name."""
        if tar is None:
            tar = os.path.join(self.base, "image.tar")
            image.build_image_tar(tar, name)
        else:
            name = _image_name(tar) or name
        r = self.ctr("image", "import", os.fspath(tar), timeout=120)
        if r.returncode != 0:
            raise ContainerdError(f"ctr image import {tar} failed: {r.stderr.strip()}")
        self.image = name
        return name

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of containerd's log (for error messages)."""
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return "(no containerd log)"

    # -- clean-up -------------------------------------------------------------------------------

    def _namespaces(self) -> list[str]:
        if self.pid is None:
            return []
        r = self.ctr("namespaces", "ls", "-q", timeout=30)
        return r.stdout.split() if r.returncode == 0 else []

    def _delete_tasks_and_containers(self, ns: str) -> list[str]:
        """Kill and delete every task and container of ``ns``; returns the container ids."""
        tasks = self.ctr("task", "ls", "-q", namespace=ns, timeout=30)
        for task in tasks.stdout.split():
            # --force kills the task (SIGKILL) and waits for it before deleting
            self.ctr("task", "delete", "--force", task, namespace=ns, timeout=30)
        containers = self.ctr("containers", "ls", "-q", namespace=ns, timeout=30)
        for container in containers.stdout.split():
            self.ctr("containers", "delete", container, namespace=ns, timeout=30)
        return [*tasks.stdout.split(), *containers.stdout.split()]

    def _shim_pids(self) -> list[int]:
        """Shims started by our containerd (``-address <our socket>`` in their argv)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:  # ENOENT/ESRCH: the process ended while we looked
                continue
            # shims get Go-style `-address X` (epollshim's daemon: `-address=X`);
            # `ctr --address X` is a client, not a shim
            ours = os.fsencode(self.address)
            pairs = itertools.pairwise(argv)
            if b"-address=" + ours in argv or (b"-address", ours) in pairs:
                found.append(int(entry))
        return found

    def _wait_shims_gone(self, deadline: float) -> None:
        while self._shim_pids() and time.monotonic() < deadline:
            time.sleep(POLL)

    def _kill_stray_shims(self) -> None:
        for pid in self._shim_pids():
            with contextlib.suppress(ProcessLookupError):  # ESRCH: already gone
                os.kill(pid, signal.SIGKILL)

    def _remove_shim_sockets(self) -> None:
        """Sockets of SIGKILLed shims, named by the ``address`` files of our bundles (§2.5)."""
        tasks = os.path.join(self.state, "io.containerd.runtime.v2.task")
        for ns in _listdir(tasks):
            for task in _listdir(os.path.join(tasks, ns)):
                try:
                    with open(os.path.join(tasks, ns, task, "address")) as f:
                        address = f.read().strip()
                except OSError:  # ENOENT: no shim was started, or it cleaned up
                    continue
                path = address.removeprefix("unix://")
                with contextlib.suppress(OSError):  # ENOENT: the shim removed it
                    if address.startswith("unix:///") and stat.S_ISSOCK(os.lstat(path).st_mode):
                        os.unlink(path)

    def _bundle_ids(self, ns: str) -> set[str]:
        """Ids of the bundles our containerd still has in ``ns`` (their shim may be gone)."""
        return set(_listdir(os.path.join(self.state, "io.containerd.runtime.v2.task", ns)))

    def _force_delete_runc(self, ns: str, only: set[str] | None = None) -> None:
        """Containers the stock runc shim left in ``/run/containerd/runc/<ns>``: all of them
        when ns is ours, else (``only``) just the ids we know; its dir goes if ns is ours."""
        root = os.path.join(RUNC_SHIM_STATE, ns)
        if not os.path.isdir(root):
            return
        for cid in os.listdir(root):
            if only is not None and cid not in only:
                continue
            subprocess.run(
                ["runc", "--root", root, "delete", "--force", cid],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            )
        if only is None:
            with contextlib.suppress(OSError):  # ENOTEMPTY: something is still there; keep it
                os.rmdir(root)

    def _unmount_all(self) -> None:
        for _ in range(5):  # a detached parent can reveal nothing new, but stacked mounts can
            points = mounts_under(self.base)
            if not points:
                return
            for point in points:
                unmount(point)


def remove_cgroups(name: str, root: str = "/sys/fs/cgroup") -> None:
    """Remove the empty cgroup ``/<name>`` from every hierarchy.

    runc puts a container without ``cgroupsPath`` at ``/<namespace>/<id>`` (ctr's default)
    and removes only ``<id>`` at delete: the namespace's directory would stay behind in
    every controller after each run. rmdir only removes an empty cgroup (no tasks, no
    children), so a cgroup still in use is left alone.
    """
    for hierarchy in {os.path.realpath(os.path.join(root, h)) for h in _listdir(root)}:
        with contextlib.suppress(OSError):  # ENOENT: not here; EBUSY: still in use
            os.rmdir(os.path.join(hierarchy, name))


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:  # ENOENT/ENOTDIR: nothing there
        return []


def _image_name(tar: str | os.PathLike[str]) -> str | None:
    """The ``io.containerd.image.name`` annotation of an OCI layout tarball, if any."""
    try:
        with tarfile.open(tar) as t:
            f = t.extractfile("index.json")
            index = json.load(f) if f is not None else {}
        name = index["manifests"][0]["annotations"]["io.containerd.image.name"]
        return str(name)
    except (KeyError, IndexError, TypeError, ValueError, OSError, tarfile.TarError):
        return None


def _unescape_mountinfo(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as ``\040``-style octal."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def mounts_under(directory: str) -> list[str]:
    """Mount points at or below ``directory``, deepest (and most recently stacked) first."""
    directory = os.path.realpath(directory)
    with open("/proc/self/mountinfo") as f:
        points = [_unescape_mountinfo(line.split()[4]) for line in f]
    ours = [
        (p.count("/"), i, p)
        for i, p in enumerate(points)
        if p == directory or p.startswith(directory + "/")
    ]
    return [p for _, _, p in sorted(ours, reverse=True)]


_libc: ctypes.CDLL | None = None


def unmount(path: str) -> None:
    """umount2(path); EBUSY falls back to a lazy detach; EINVAL/ENOENT (not mounted) is fine."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    for flags in (0, MNT_DETACH):
        if _libc.umount2(os.fsencode(path), flags) == 0:
            return
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        if err != errno.EBUSY:
            raise OSError(err, f"umount2 {path}: {os.strerror(err)}")
