"""The four states every process (a container's init or an exec) goes through.

STARTING  the runtime command (runc create / exec) is in flight; no pid yet.
RUNNING   the pid is known and the process has not been reaped.
REAPING   the process was reaped; its output is being drained (bounded by a deadline).
CLEANUP   the exit is recorded exactly once; nothing more happens to this process.
"""

import enum


class State(enum.Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    REAPING = "REAPING"
    CLEANUP = "CLEANUP"

    def __str__(self) -> str:
        return self.value
