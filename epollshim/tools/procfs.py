"""What /proc says of a process, for tests and the bench (never imported by a shim).

``dead_or_dying`` is the check "the shim killed it": a process counts once it is gone, a
zombie, inside ``do_exit`` (``PF_EXITING``), or has SIGKILL pending, since the kernel
acts on a pending SIGKILL before the process runs another instruction of its own.
"""

from __future__ import annotations

import os

EPOLLET = 1 << 31  # in an epoll registration's events (fdinfo's ``tfd:`` lines)
SIGKILL_BIT = 1 << (9 - 1)  # bit of SIGKILL in the SigPnd / ShdPnd masks
PF_EXITING = 0x4  # include/linux/sched.h: the task is in do_exit


def stat(pid: int) -> tuple[str, int, int]:
    """(state letter, ppid, flags) from ``/proc/PID/stat``, or ("gone", 0, 0)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ("gone", 0, 0)
    return (fields[0], int(fields[1]), int(fields[6]))


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (one pass over /proc)."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and stat(int(e))[1] == pid]


def dead_or_dying(pid: int) -> str:
    """Why ``pid`` counts as killed, or "" if it lives and nothing is about to kill it."""
    state, _, flags = stat(pid)
    if state == "gone" or state in "ZX":
        return state
    if flags & PF_EXITING:
        return "exiting"
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
    except (FileNotFoundError, ProcessLookupError):
        return "gone"
    pending = int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)
    return "SIGKILL pending" if pending & SIGKILL_BIT else ""


def epoll_registrations(pid: int, epfd: int) -> dict[int, int]:
    """{fd: events word} of the registrations of process ``pid``'s epoll instance ``epfd``,
    from the ``tfd: FD events: HEX data: ...`` lines of its fdinfo ({} for another kind
    of fd)."""
    with open(f"/proc/{pid}/fdinfo/{epfd}") as f:
        rows = [line.split() for line in f if line.startswith("tfd:")]
    return {int(words[1]): int(words[3], 16) for words in rows}


def ptmx_registrations(pid: int) -> list[int]:
    """The events words process ``pid``'s epoll instances hold for its pty masters
    (/dev/ptmx, char 5:2), one per registration."""
    found = []
    for name in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            registered = epoll_registrations(pid, int(name))
        except FileNotFoundError:  # closed meanwhile
            continue
        for fd, events in registered.items():
            try:
                rdev = os.stat(f"/proc/{pid}/fd/{fd}").st_rdev
            except OSError:
                continue
            if (os.major(rdev), os.minor(rdev)) == (5, 2):
                found.append(events)
    return found
