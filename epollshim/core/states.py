"""The four states every process (a container's init or an exec) goes through.

STARTING  the runtime command (runc create / exec) is in flight; no pid yet.
RUNNING   the pid is known and the process has not been reaped.
REAPING   the process was reaped; its output is being drained (bounded by a deadline).
CLEANUP   the exit is recorded exactly once; nothing more happens to this process.

Four singletons compared with ``is``, not an ``enum.Enum``: ``enum`` costs ~0.4 MB in every
shim process. ``STATES`` lists them in this order; ``str()`` of one is its name.
"""


class State:
    __slots__ = ("name",)

    STARTING: "State"
    RUNNING: "State"
    REAPING: "State"
    CLEANUP: "State"

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<State.{self.name}>"


STATES = (State("STARTING"), State("RUNNING"), State("REAPING"), State("CLEANUP"))
State.STARTING, State.RUNNING, State.REAPING, State.CLEANUP = STATES
