"""A logging binary (``binary://`` stdio), started, awaited, watched and stopped from the loop.

Rules (containerd 1.6 pkg/process/io.go ``NewBinaryIO`` and utils ``NewBinaryCmd``):
- The binary gets fd 3 = the read end of the process's stdout pipe, fd 4 = of its stderr
  pipe, fd 5 = the write end of a "ready" pipe, /dev/null as 0/1/2, an environment of only
  ``CONTAINER_ID`` and ``CONTAINER_NAMESPACE``, the URI's query as arguments, the shim's
  cwd (the bundle). No PDEATHSIG, as with runc-v2: a binary outlives a shim that dies and
  ends when the container's output does.
- Ready once fd 5 gives a byte or EOF (written, closed, or the binary exited). The shim
  keeps no read end of fd 3/4, so when a binary exits early the process writes into a pipe
  without a reader and gets EPIPE (and SIGPIPE, unless it ignores it): as under runc-v2, it
  is never blocked by output nobody reads. A warning names the binary and its status.
- Not ready within ``ready_timeout`` seconds: SIGKILL, and ``wait_ready`` reports an error
  naming the binary (runc-v2 waits for ever; the caller fails Create/Start with it).
- Its exit arrives through the shim's one reaper (``ExitRouter.watch``), then the
  ``on_exit`` callback runs: the owner's drain waits for it, so a process's exit is
  recorded only once its binary has read everything and exited (or the drain deadline).
- ``stop``: SIGTERM, then SIGKILL after ``STOP_GRACE`` seconds; ``kill``: SIGKILL now; both
  do nothing once it was reaped (its pid may belong to someone else by then).
"""

import os
from collections.abc import Callable

from epollshim.core.exitcode import from_wait_status
from epollshim.core.exits import ExitRouter
from epollshim.log import Log
from epollshim.shell.loop import Loop, Timer
from epollshim.shell.process import spawn_quick
from epollshim.shell.signals import SIGKILL, SIGTERM

READY_TIMEOUT = 10.0  # seconds for fd 5 (containerd's Windows shim allows 10 s too)
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


class Logger:
    def __init__(
        self, loop: Loop, router: ExitRouter, log: Log, path: str, args: tuple[str, ...]
    ) -> None:
        self.loop = loop
        self.router = router
        self.log = log
        self.path = path
        self.args = args
        self.pid = 0
        self.status: int | None = None  # the raw wait status once reaped
        self.ready_timeout = READY_TIMEOUT
        self.on_exit: Callable[[], None] | None = None
        self._ready_fd = -1
        self._ready_cb: Callable[[str], None] | None = None
        self._ready_timer: Timer | None = None
        self._kill_timer: Timer | None = None
        self.signalled = False

    @property
    def running(self) -> bool:
        return self.pid > 0 and self.status is None

    def describe(self) -> str:
        """``exited with status N`` / ``was killed by signal N`` for messages."""
        status = self.status or 0
        if status & 0x7F:
            return f"was killed by signal {status & 0x7F}"
        return f"exited with status {from_wait_status(status)}"

    def start(self, env: dict[str, str], stdout_r: int, stderr_r: int) -> None:
        """Spawn it (SpawnError if it cannot be executed); the caller closes its read ends."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            self.pid = spawn_quick(
                [self.path, *self.args],
                stdio=(null, null, null),
                env=env,
                fds=(stdout_r, stderr_r, ready_w),
            )
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
            os.close(null)
        os.set_blocking(ready_r, False)
        self._ready_fd = ready_r
        watched = self.router.watch(self.pid, self._reaped)
        assert watched is None  # a pid we just made cannot have an early exit

    def wait_ready(self, done: Callable[[str], None]) -> None:
        """``done("")`` once fd 5 was written or closed; ``done(error)`` on the timeout."""
        self._ready_cb = done
        self.loop.add_reader(self._ready_fd, self._readable)
        self._ready_timer = self.loop.call_later(self.ready_timeout, self._not_ready)

    def _readable(self) -> None:
        try:
            os.read(self._ready_fd, 1)  # a byte or EOF: either says ready
        except BlockingIOError:
            return  # EAGAIN: a spurious wake-up
        self._ready("")

    def _not_ready(self) -> None:
        self._ready_timer = None
        self.kill()
        self._ready(
            f"logging binary {self.path} did not signal it was ready (write to or close"
            f" fd 5) within {self.ready_timeout:g} s; killed it"
        )

    def _ready(self, error: str) -> None:
        self._forget_ready()
        done, self._ready_cb = self._ready_cb, None
        if done is not None:
            done(error)

    def _forget_ready(self) -> None:
        if self._ready_timer is not None:
            self._ready_timer.cancel()
            self._ready_timer = None
        if self._ready_fd >= 0:
            self.loop.forget(self._ready_fd)
            os.close(self._ready_fd)
            self._ready_fd = -1

    def _reaped(self, status: int) -> None:
        self.status = status
        self._cancel_kill()
        if self.on_exit is not None:
            self.on_exit()

    # -- the end ------------------------------------------------------------------------
    def stop(self) -> None:
        """SIGTERM now, SIGKILL after STOP_GRACE seconds if it is still running."""
        if self._signal(SIGTERM):
            self._kill_timer = self.loop.call_later(STOP_GRACE, self.kill)

    def kill(self) -> None:
        self._signal(SIGKILL)

    def _signal(self, sig: int) -> bool:
        if not self.running or (sig == SIGTERM and self.signalled):
            return False
        self.signalled = True
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:  # ESRCH: a zombie already, reaped soon
            return False
        return True

    def close(self) -> None:
        """The process is gone for good: no more callbacks; a binary still running is killed."""
        self._ready_cb = None
        self.on_exit = None
        self._forget_ready()
        self.kill()
        self._cancel_kill()

    def _cancel_kill(self) -> None:
        if self._kill_timer is not None:
            self._kill_timer.cancel()
            self._kill_timer = None
