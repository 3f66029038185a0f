"""Children: spawning them (fork + exec) and reaping them (waitpid(-1)).

Facts and rules:
* The shim is a child subreaper (PR_SET_CHILD_SUBREAPER): a container's init
  is created by ``runc create``, which exits; only a subreaper adopts the
  init, so only then do we see its exit.
* Exactly one place waits: ``reap_all`` loops ``waitpid(-1, WNOHANG)`` until
  nothing is left. ``subprocess.Popen.wait`` cannot coexist with it (if we
  reap a Popen child first, Popen reports status 0), so children are spawned
  here with ``os.fork`` + ``os.execvpe`` and their exits arrive as raw wait
  statuses through the reaper.
* In the child, before exec: default signal dispositions and an empty mask
  (Python ignores SIGPIPE and SIGXFSZ and children would inherit that),
  PR_SET_PDEATHSIG = SIGKILL (a runc call never outlives the shim), stdio
  dup'ed into 0/1/2, every other fd is close-on-exec already (Python's
  default), cwd set.
* A failed exec is reported through a close-on-exec pipe, so "runc not found"
  is an error at spawn time, not a mysterious exit status 127.
* runc calls take the quick path, ``spawn_quick``: ``os.posix_spawn`` of a path
  resolved once by ``find_program`` (glibc runs it as vfork + exec: no copy of the
  interpreter's page tables, no Python in the child; about 1 ms from call to exec
  here against 4 ms for fork + execve and 7 ms for fork + execvpe, which imports
  ``warnings`` afresh in every child to search PATH). The child keeps our cwd, gets
  default dispositions and an empty mask, and no PDEATHSIG (posix_spawn cannot set
  it): a runc call the shim does not live to see ends by itself, and ``delete``
  cleans up after a shim that died, as after any shim crash.
"""

import errno
import fcntl
import os

from epollshim.core.exits import ExitRouter
from epollshim.shell import libc
from epollshim.shell.signals import RESETTABLE, SIGKILL, reset_in_child

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: int) -> None:
    if libc.function("prctl")(option, libc.ulong(arg), 0, 0, 0) != 0:
        err = libc.errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def become_subreaper() -> None:
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


class SpawnError(Exception):
    """The program could not be executed (not found, not executable, bad cwd)."""


def spawn(
    argv: list[str],
    *,
    stdio: tuple[int, int, int],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    new_session: bool = False,
    pdeathsig: bool = True,
) -> int:
    """Fork and exec ``argv`` with the given fds as its 0/1/2; return its pid."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; reported through wfd
        try:
            os.close(rfd)
            reset_in_child()
            if new_session:
                os.setsid()
            if pdeathsig:
                _prctl(PR_SET_PDEATHSIG, SIGKILL)
            # dup2 leaves the target inheritable; move sources above 2 first so
            # that mapping e.g. 1 -> 0 and 0 -> 1 cannot clobber each other.
            high = [os.dup(fd) if fd <= 2 else fd for fd in stdio]
            for target, source in enumerate(high):
                os.dup2(source, target)
            if cwd is not None:
                os.chdir(cwd)
            os.execvpe(argv[0], argv, os.environ if env is None else env)
        except BaseException as e:
            code = e.errno if isinstance(e, OSError) and e.errno else errno.EINVAL
            try:
                os.write(wfd, f"{code}:{e}".encode())
            finally:
                os._exit(127)
    os.close(wfd)
    try:
        report = os.read(rfd, 4096)  # returns b"" at the exec (CLOEXEC)
    finally:
        os.close(rfd)
    if report:
        os.waitpid(pid, 0)  # our own failed child; nobody else knows its pid yet
        _, _, message = report.decode(errors="replace").partition(":")
        raise SpawnError(f"cannot execute {argv[0]}: {message}")
    return pid


def find_program(name: str, path: str | None = None) -> str:
    """``name`` as execvp would find it on ``path`` (default $PATH); ``name`` if nowhere."""
    if "/" in name:
        return name
    dirs = (os.environ.get("PATH", os.defpath) if path is None else path).split(os.pathsep)
    for directory in dirs:
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return name  # spawn_quick reports it as not found


def spawn_quick(
    argv: list[str], *, stdio: tuple[int, int, int], env: dict[str, str], fds: tuple[int, ...] = ()
) -> int:
    """posix_spawn ``argv`` (``argv[0]`` a path) with ``stdio`` as its 0/1/2 and ``fds`` as its
    3, 4, ... (a logging binary's); return its pid."""
    wanted = (*stdio, *fds)
    # CLOEXEC copies above every target fd: no dup2 clobbers a source still to be read
    high = [
        fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, len(wanted)) if fd < len(wanted) else fd
        for fd in wanted
    ]
    try:
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(high)]
        return os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=actions,
            setsigmask=(),
            setsigdef=RESETTABLE,
        )
    except OSError as e:  # ENOENT, EACCES, ENOEXEC: exec failed in the child
        raise SpawnError(f"cannot execute {argv[0]}: {e.strerror}") from e
    finally:
        for fd, original in zip(high, wanted, strict=True):
            if fd != original:
                os.close(fd)


def reap_all() -> list[tuple[int, int]]:
    """Every (pid, raw wait status) that can be reaped right now."""
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # ECHILD: no children at all
            break
        if pid == 0:
            break
        reaped.append((pid, status))
    return reaped


def reap_into(router: ExitRouter) -> None:
    """Reap every child now; hand each exit to its watcher (a callable of the wait status)."""
    for pid, status in reap_all():
        watcher = router.exited(pid, status)
        if callable(watcher):
            watcher(status)


def runtime_env() -> dict[str, str]:
    """The shim's environment minus what must not reach runc (see spec 16.3.1)."""
    drop = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
    return {k: v for k, v in os.environ.items() if k not in drop}
