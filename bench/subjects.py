"""How each subject starts a container, finds its shim process and cleans up.

* containerd subjects (runc-v2, epollshim-v2, each ungrouped or grouped) go through ``ctr``
  against our private containerd; their shims are the processes whose argv carries our socket.
* ``epollshim seed``: ``epollshim run`` (our supervisor) starts the seed-form shim; the shim's
  pid is in ``attach.json`` of a private ``EPOLLSHIM_STATE_BASE``; runc state in our own root.
* ``conmon``: conmon 2.x drives runc directly, as podman does: ``conmon ... -r runc`` runs
  ``runc create`` (conmon daemonizes and writes its pid file), then we run ``runc start``.
  Output goes to a ``k8s-file`` log on tmpfs (conmon always copies the container's output).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    RUNTIMES,
    SANDBOX_ANNOTATION,
    BenchError,
    alive,
    all_pids,
    cmdline,
    kill_pid,
    new_id,
    run,
    wait_for,
)

RUNC = "/usr/sbin/runc"
IDLE = ["sleep", "3600"]


class Context:
    """Everything a run owns: work dir, private containerd, private runc root, cleanups."""

    def __init__(self, work: str, quick: bool) -> None:
        self.work = work
        self.quick = quick
        self.runc_root = os.path.join(work, "runc")
        self.ctd: Any = None  # PrivateContainerd once started
        self.ctd_error = ""
        self.image = ""
        # ids that name a shim socket in /run/containerd/s (container ids, group ids): the
        # clean-up removes exactly those sockets, if stale, and no other
        self.socket_ids: set[str] = set()
        self.children: list[subprocess.Popen[bytes]] = []  # helpers to end if still running
        os.makedirs(self.runc_root, mode=0o700, exist_ok=True)

    def start_containerd(self) -> None:
        from epollshim.tools.containerd import PrivateContainerd

        # info, not debug: containerd's debug log would cost CPU during the measurements
        ctd = PrivateContainerd(os.path.join(self.work, "ctd"), debug_level="info")
        ctd.keep_dir = False
        try:
            ctd.start()
            self.image = ctd.import_image()
        except Exception as e:
            ctd.stop()
            self.ctd_error = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise
        self.ctd = ctd

    def stop(self) -> None:
        if self.ctd is not None:
            self.ctd.stop()
            self.ctd = None

    def stop_runc(self) -> None:
        # runc state of the seed shim and conmon: force-delete what is left in our root
        for cid in _listdir(self.runc_root):
            run([RUNC, "--root", self.runc_root, "delete", "--force", cid], timeout=30)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


# -- containerd + ctr -----------------------------------------------------------------------


class CtrSubject:
    def __init__(self, ctx: Context, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.runtime = RUNTIMES[name]
        self.group = new_id("g") if name.endswith("grouped") else ""
        if self.group:
            ctx.socket_ids.add(self.group)

    def check(self) -> None:
        if self.ctx.ctd is None:
            raise BenchError(f"no containerd: {self.ctx.ctd_error}")

    def ctr(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        self.check()
        return self.ctx.ctd.ctr(*args, timeout=timeout, **kw)  # type: ignore[no-any-return]

    def ctr_argv(self, *args: str) -> list[str]:
        ctd = self.ctx.ctd
        return ["ctr", "--address", ctd.address, "--namespace", ctd.namespace, *args]

    def run_args(
        self, cid: str, argv: list[str], *, tty: bool = False, rm: bool = True, detach: bool = False
    ) -> list[str]:
        self.ctx.socket_ids.add(cid)
        args = ["run", "--runtime", self.runtime]
        if self.group:
            args += ["--annotation", f"{SANDBOX_ANNOTATION}={self.group}"]
        if rm:
            args.append("--rm")
        if detach:
            args += ["-d", "--null-io"]
        if tty:
            args.append("-t")
        return [*args, self.ctx.image, cid, *argv]

    def shim_pids(self, cid: str | None = None) -> list[int]:
        """Our containerd's shim daemons (all, or the one serving container ``cid``).

        Shims get ``-address X`` (Go flags; epollshim's daemon ``-address=X``) and ``-id``;
        ctr's ``--address`` and the short-lived ``start``/``delete`` calls are left out.
        """
        self.check()
        address = self.ctx.ctd.address
        found = []
        for pid in all_pids():
            try:
                argv = [a.decode(errors="replace") for a in cmdline(pid)]
            except OSError:
                continue
            flags = go_flags(argv)
            if os.path.basename(argv[0]) == "ctr" or flags.get("address") != address:
                continue
            if "start" in argv or "delete" in argv:
                continue
            if cid is None or flags.get("id") == cid:
                found.append(pid)
        return found

    def shim_of(self, cid: str, timeout: float = 10) -> int:
        pids = wait_for(f"the shim of {cid}", lambda: self.shim_pids(cid), timeout)
        return pids[0]

    def start_idle(self, n: int) -> list[str]:
        """n more ``sleep`` containers, one after another (detached, no IO)."""
        ids: list[str] = []
        for _ in range(n):
            cid = new_id("b")
            r = self.ctr(*self.run_args(cid, IDLE, rm=False, detach=True))
            if r.returncode != 0:
                self.stop_idle([*ids, cid])
                raise BenchError(f"ctr run -d: {r.stderr.strip() or r.returncode}")
            ids.append(cid)
        return ids

    def stop_idle(self, ids: list[str], workers: int = 4) -> None:
        """SIGKILL and delete the tasks, delete the containers (a few at a time: the tear-down
        is outside every measurement), then wait for the shims that served them to end."""

        def remove(cid: str) -> None:
            self.ctr("task", "delete", "--force", cid, timeout=30)  # kills, waits, deletes
            self.ctr("containers", "delete", cid, timeout=30)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(remove, ids))
        gone = set(ids)
        with contextlib.suppress(BenchError):  # shims end after their last task is deleted
            wait_for("shims to end", lambda: not self.shims_serving(gone), 30)

    def shims_serving(self, ids: set[str]) -> list[int]:
        """Shim daemons whose ``-id`` is one of ``ids`` (a grouped shim has its first one's)."""
        found = []
        for pid in self.shim_pids():
            with contextlib.suppress(OSError):
                argv = [a.decode(errors="replace") for a in cmdline(pid)]
                if go_flags(argv).get("id") in ids:
                    found.append(pid)
        return found


def go_flags(argv: list[str]) -> dict[str, str]:
    """``-name value``, ``-name=value`` (one or two dashes) from a command line."""
    flags: dict[str, str] = {}
    for i, arg in enumerate(argv[1:], 1):
        if not arg.startswith("-"):
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if eq:
            flags[name] = value
        elif i + 1 < len(argv):
            flags[name] = argv[i + 1]
    return flags


# -- epollshim seed form --------------------------------------------------------------------


class SeedContainer:
    def __init__(self, proc: subprocess.Popen[bytes], base: str) -> None:
        self.proc = proc
        self.base = base
        info = wait_for("attach.json", self._info, 15)
        self.cid = str(info["id"])
        self.shim_pid = int(info["shim_pid"])

    def _info(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            raise BenchError(f"epollshim run exited with {self.proc.returncode}")
        for d in _listdir(self.base):
            path = os.path.join(self.base, d, "attach.json")
            with contextlib.suppress(OSError, ValueError), open(path) as f:
                return dict(json.load(f))
        return None


class SeedSubject:
    name = "epollshim seed"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def start(
        self, argv: list[str], *, tty: bool = False, stdout: Any = subprocess.DEVNULL
    ) -> SeedContainer:
        base = os.path.join(self.ctx.work, "seed", new_id("s"))
        os.makedirs(base, mode=0o700)
        cmd = [sys.executable, "-m", "epollshim", "run", "--runtime-root", self.ctx.runc_root]
        cmd += ["--tty"] if tty else []
        env = dict(os.environ, EPOLLSHIM_STATE_BASE=base)
        proc = subprocess.Popen(
            [*cmd, "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            return SeedContainer(proc, base)
        except BaseException:
            kill_pid(proc.pid)
            proc.wait()
            raise

    def stop(self, c: SeedContainer) -> None:
        run([RUNC, "--root", self.ctx.runc_root, "kill", c.cid, "KILL"], timeout=30)
        try:
            c.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_pid(c.shim_pid)
            kill_pid(c.proc.pid)
            c.proc.wait()
        if alive(c.shim_pid):
            kill_pid(c.shim_pid)


# -- conmon + runc --------------------------------------------------------------------------


class ConmonContainer:
    def __init__(self, cid: str, d: str) -> None:
        self.cid = cid
        self.dir = d
        self.log = os.path.join(d, "ctr.log")
        self.exit_file = os.path.join(d, "exits", cid)
        self.pid = 0

    def pidfile(self, name: str) -> int | None:
        try:
            with open(os.path.join(self.dir, name)) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None


class ConmonSubject:
    name = "conmon"

    def __init__(self, ctx: Context, log_dir: str = "/dev/shm") -> None:
        self.ctx = ctx
        self.log_dir = log_dir  # tmpfs: the log's disk cost is not what we compare

    def start(self, argv: list[str], *, tty: bool = False) -> ConmonContainer:
        from epollshim.bundle import write_bundle

        cid = new_id("c")
        d = os.path.join(self.ctx.work, "conmon", cid)
        os.makedirs(os.path.join(d, "exits"))
        os.makedirs(os.path.join(d, "sock"))
        write_bundle(os.path.join(d, "bundle"), argv, terminal=tty)
        c = ConmonContainer(cid, d)
        c.log = os.path.join(self.log_dir, f"{os.path.basename(self.ctx.work)}-{cid}.log")
        cmd = ["conmon", "--api-version", "1", "-c", cid, "-u", cid, "-n", cid]
        cmd += ["-r", RUNC, "--runtime-arg", f"--root={self.ctx.runc_root}"]
        cmd += ["-b", os.path.join(d, "bundle"), "-p", os.path.join(d, "ctr.pid")]
        cmd += ["-P", os.path.join(d, "conmon.pid"), "--exit-dir", os.path.join(d, "exits")]
        cmd += ["-l", f"k8s-file:{c.log}", "--log-level", "warning"]
        cmd += ["--socket-dir-path", os.path.join(d, "sock")]
        cmd += ["-t"] if tty else []
        r = run(cmd, timeout=30)  # returns once conmon has daemonized
        if r.returncode != 0:
            raise BenchError(f"conmon: {r.stderr.strip() or r.returncode}")
        c.pid = wait_for("conmon.pid", lambda: c.pidfile("conmon.pid"), 10)
        try:
            wait_for("runc create (ctr.pid)", lambda: self._created(c), 15)
            r = run([RUNC, "--root", self.ctx.runc_root, "start", cid], timeout=30)
            if r.returncode != 0:
                raise BenchError(f"runc start: {r.stderr.strip()}")
        except BaseException:
            self.stop(c)
            raise
        return c

    def _created(self, c: ConmonContainer) -> bool:
        if not alive(c.pid):
            raise BenchError("conmon exited before the container was created")
        return c.pidfile("ctr.pid") is not None

    def stop(self, c: ConmonContainer) -> None:
        root = self.ctx.runc_root
        if alive(c.pid):
            run([RUNC, "--root", root, "kill", c.cid, "KILL"], timeout=30)
            deadline = time.monotonic() + 10
            while alive(c.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            kill_pid(c.pid, signal.SIGKILL)
        run([RUNC, "--root", root, "delete", "--force", c.cid], timeout=30)
        with contextlib.suppress(OSError):
            os.unlink(c.log)
