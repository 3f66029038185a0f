"""``--exit-command``: run once the exit is recorded and the loop has ended, then wait for it.

Facts (conmon 2.1.6 ``ctr_exit.c``): conmon runs it from ``atexit``: it closes every fd
above 2, stops being a subreaper (so that what the command leaves behind is not ours to
wait for), forks, sleeps ``--exit-delay`` seconds in the child and execs the command with
the ``--exit-command-arg``s; the parent waits for every child it still has. Podman's
command is ``podman ... container cleanup [--rm] ID``: it unmounts, runs ``runc delete``
and, with ``--rm``, removes the container; ``podman wait`` returns only after it ran.

Rule: this runs after the loop, so it may block; the loop's reaper is gone by then, and
``waitpid(-1)`` here reaps our children until none is left.
"""

import os
import time

from epollshim.shell import libc
from epollshim.shell.signals import reset_in_child

PR_SET_CHILD_SUBREAPER = 36


def run(command: str, args: list[str], delay: int) -> int:
    """Run ``command args...`` after ``delay`` seconds; its exit code (127: not executed)."""
    reset_in_child()  # here too: no wakeup fd (closed below), SIGCHLD at its default
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    # Unset cannot fail (Linux >= 3.4); if it did, we would only wait for more children.
    libc.function("prctl")(PR_SET_CHILD_SUBREAPER, libc.ulong(0), 0, 0, 0)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            reset_in_child()
            if delay:
                time.sleep(delay)
            os.execv(command, [command, *args])
        finally:
            os._exit(127)
    code = 0
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:  # ECHILD: nothing left to wait for
            return code
        if reaped == pid:
            code = os.waitstatus_to_exitcode(status)
