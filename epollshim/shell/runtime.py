"""Running the OCI runtime (runc) without ever blocking the loop.

Rule: a runc call is a child process; it completes when the reaper reports
its pid (``ExitRouter``), never by waiting on it or on EOF of its stdio (in
non-terminal mode the container inherits runc's fds 0/1/2, so EOF would only
come when the container exits). runc's own error message is read back from
its ``--log`` file (JSON lines), from where the call started writing.
"""

import os
from collections.abc import Callable

from epollshim import minijson
from epollshim.core.exitcode import from_wait_status
from epollshim.core.exits import ExitRouter
from epollshim.shell.loop import Loop
from epollshim.shell.process import find_program, runtime_env, spawn_quick

Done = Callable[[int, str], None]  # (exit code, runc's last error message or "")


def within(loop: Loop, deadline: float, what: str, report: Callable[[str], None]) -> Done:
    """A ``Done`` for a runc call that must not hold its caller longer than ``deadline``.

    ``report`` is called exactly once: with "" when runc succeeded, with runc's words when
    it failed, or with a timeout message when ``deadline`` seconds passed first (runc goes
    on; its exit still reaches the reaper). The state machines use it for ``KillRemaining``.
    """
    reported = False

    def once(error: str) -> None:
        nonlocal reported
        if not reported:
            reported = True
            timer.cancel()
            report(error)

    timer = loop.call_later(deadline, lambda: once(f"{what} still running after {deadline}s"))
    return lambda code, message: once(f"{what}: {message}" if code else "")


class Runtime:
    def __init__(
        self,
        router: ExitRouter,
        *,
        path: str,
        root: str,
        log_path: str,
        extra: list[str] | None = None,
    ) -> None:
        self.router = router
        self.path = find_program(path)  # once: a child searching PATH costs ms per call
        self.env = runtime_env()
        self.root = root
        self.log_path = log_path
        self.extra = extra or []
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)

    def argv(self, *args: str) -> list[str]:
        root = ["--root", self.root] if self.root else []
        log = ["--log", self.log_path, "--log-format", "json"]
        return [self.path, *root, *log, *self.extra, *args]

    def run(
        self,
        args: list[str],
        done: Done,
        *,
        stdio: tuple[int, int, int] | None = None,
    ) -> int:
        """Start ``runc ARGS``; ``done`` is called from the reaper. Returns its pid.

        runc runs in our cwd: every path we pass it is absolute (``--bundle`` included).
        """
        offset = self._log_size()
        argv = self.argv(*args)
        pid = spawn_quick(argv, stdio=stdio or (self.devnull,) * 3, env=self.env)

        def finished(status: int) -> None:
            code = from_wait_status(status)
            done(code, self.last_error(offset) if code else "")

        early = self.router.watch(pid, finished)
        if early is not None:  # only with pid reuse; harmless to handle
            finished(early)
        return pid

    def _log_size(self) -> int:
        try:
            return os.stat(self.log_path).st_size
        except FileNotFoundError:
            return 0

    def last_error(self, offset: int = 0) -> str:
        """runc's last error message written to its log after ``offset``."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                lines = f.read().splitlines()
        except FileNotFoundError:
            return "runc wrote no log"
        message = ""
        for line in lines:
            try:
                entry = minijson.loads(line)
            except ValueError:
                message = line.decode(errors="replace").strip() or message
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                message = str(entry.get("msg", ""))
        return message or "runc failed without an error message"

    def close(self) -> None:
        os.close(self.devnull)


def read_pid_file(path: str) -> int:
    """The pid runc wrote with ``--pid-file``; ValueError naming the file if there is none."""
    try:
        with open(path, "rb") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: runc wrote no valid pid") from e
    if pid <= 0:
        raise ValueError(f"{path}: runc wrote pid {pid}")
    return pid
