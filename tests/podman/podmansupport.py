"""Driving Debian's podman 4.3 with a private store, and with a monitor of our choice.

Rules:
* Podman never touches the machine's default storage: every call carries ``--root``,
  ``--runroot``, ``--tmpdir`` (all under one private base dir), vfs storage, cgroupfs,
  file events; containers run with ``--network none`` and the ``--ulimit``s this VM
  needs (podman asks for RLIMIT_NOFILE 1048576, which the VM refuses).
* ``--conmon`` points at the monitor under test: our ``epollshim-conmon`` launcher (as
  ``make dev`` installs it) or Debian's ``/usr/bin/conmon``; every behaviour is tested
  with both, so a difference is ours.
* Waits are bounded polls of a file, a pid or podman's answer (``poll``), never sleeps;
  nothing asserts a duration.
* Cleanup is by pid (monitors found through their ``conmon.pid`` files) and by
  container id; ``PrivatePodman.close`` unmounts what podman left under the base dir.
* The private store itself (its flags, image, monitors, clean-up) is the bench's
  ``epollshim.tools.podman``, one definition for both.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from epollshim.tools import podman as private
from epollshim.tools.podman import DEBIAN_CONMON, IMAGE, RUN_OPTS, alive, our_monitor
from epollshim.tools.wait import until

__all__ = ["DEBIAN_CONMON", "IMAGE", "RUN_OPTS", "alive", "our_monitor"]

DEADLINE = 60.0  # seconds: generous for a loaded 2-CPU machine, never a timing assertion


def poll(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """``check()`` until it is truthy (returned), at most ``timeout`` seconds."""
    return until(what, check, timeout, error=AssertionError)


class PrivatePodman(private.PrivatePodman):
    """The bench's private podman (epollshim.tools.podman), with the tests' calls:
    bytes in and out, an environment to add, failures as assertions, bounded polls."""

    def __init__(self, monitor: str = DEBIAN_CONMON) -> None:
        super().__init__(monitor=monitor)
        self.image = IMAGE

    def __call__(  # type: ignore[override]
        self,
        *args: str,
        input: bytes | None = None,
        timeout: float = DEADLINE,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run podman to completion; stdin is /dev/null unless ``input`` is given;
        ``env`` adds to our environment."""
        return subprocess.run(
            self.argv(*args),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )

    def ok(self, *args: str, **kw: Any) -> str:
        """Run podman, require exit 0, return its stdout as text."""
        r = self(*args, **kw)
        assert r.returncode == 0, f"podman {' '.join(args)}: {r.returncode}: {r.stderr!r}"
        return r.stdout.decode()

    def remove_all(self, timeout: float = DEADLINE) -> list[int]:
        """Remove every container; return (and kill) the monitors that outlived them."""
        monitors = self.monitor_pids()

        def removed() -> bool:
            ids = self.container_ids()
            if ids:  # again if need be: an exit command may hold a container's lock
                self("rm", "-f", "-t", "0", *ids)
            return not ids

        poll("every container removed", removed, timeout)
        left = [pid for pid in monitors if _wait_gone(pid, timeout)]
        for pid in left:
            os.kill(pid, 9)
        return left


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait for ``pid`` to end; True if it is still alive after ``timeout``."""
    try:
        poll(f"pid {pid} to end", lambda: not alive(pid), timeout)
    except AssertionError:
        return True
    return False


def k8s_lines(log: str) -> list[tuple[str, str, str]]:
    """(stream, F|P, text) of each line of a k8s-file log, its timestamp checked."""
    out = []
    for line in log.splitlines():
        stamp, stream, tag, text = [*line.split(" ", 3), ""][:4]
        assert "T" in stamp and stream in ("stdout", "stderr") and tag in ("F", "P"), line
        out.append((stream, tag, text))
    return out


def first_line(data: bytes | str) -> str:
    text = data.decode() if isinstance(data, bytes) else data
    return (text.splitlines() or [""])[0]


def run_args(*args: str, opts: Sequence[str] = ()) -> list[str]:
    """``run`` with our private-VM options, then ``opts``, the image and ``args``."""
    return ["run", *RUN_OPTS, *opts, IMAGE, *args]


class Terminal:
    """A podman command on a pty of its own (``ptyprocess``), read with bounded waits."""

    def __init__(self, argv: list[str], rows: int = 24, cols: int = 80) -> None:
        from ptyprocess import PtyProcess

        self.proc = PtyProcess.spawn(argv, dimensions=(rows, cols))
        self.seen = b""

    def type(self, data: bytes) -> None:
        self.proc.write(data)

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False at EOF."""
        ready, _, _ = select.select([self.proc.fd], [], [], timeout)
        if ready:
            try:
                data = os.read(self.proc.fd, 65536)
            except OSError:  # EIO: podman closed the terminal (it exited)
                return False
            if not data:
                return False
            self.seen += data
        return True

    def expect(self, pattern: bytes, timeout: float = DEADLINE) -> bytes:
        """Wait until ``pattern`` appears in the output; all the output so far."""
        end = time.monotonic() + timeout
        while pattern not in self.seen:
            if time.monotonic() > end or not self._read(0.05):
                raise AssertionError(f"no {pattern!r} in {self.seen[-400:]!r}")
        return self.seen

    def resize(self, rows: int, cols: int) -> None:
        self.proc.setwinsize(rows, cols)  # podman gets SIGWINCH and writes the ctl FIFO

    def exit_status(self, timeout: float = DEADLINE) -> int:
        end = time.monotonic() + timeout
        while self.proc.isalive():
            if time.monotonic() > end:
                raise AssertionError(f"podman still running; output {self.seen[-400:]!r}")
            if not self._read(0.05):
                select.select([], [], [], 0.02)  # EOF already: a bounded poll of the pid
        return int(self.proc.exitstatus if self.proc.exitstatus is not None else -1)

    def close(self) -> None:
        if self.proc.isalive():
            os.kill(self.proc.pid, 9)
        self.proc.close(force=True)


# the monitors a test runs side by side: name -> path (ours needs `make dev`)
MONITORS = {"epollshim": our_monitor, "conmon": lambda: DEBIAN_CONMON}


def require_podman() -> None:
    if os.geteuid() != 0:
        pytest.skip("podman tests need root")
    missing = [b for b in ("podman", "runc") if shutil.which(b) is None]
    if not os.access(DEBIAN_CONMON, os.X_OK):
        missing.append(DEBIAN_CONMON)
    if not os.access("/bin/busybox", os.X_OK):
        missing.append("/bin/busybox (busybox-static)")
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (run `make deps`)")
    if not os.access(our_monitor(), os.X_OK):
        pytest.skip(f"missing {our_monitor()} (run `make dev`)")
