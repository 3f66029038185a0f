"""The four states every process (a container's init or an exec) goes through.

STARTING  the runtime command (runc create / exec) is in flight; no pid yet.
RUNNING   the pid is known and the process has not been reaped.
KILLING   an init that shares its PID namespace with the host was reaped; ``runc kill --all``
          is killing what else runs in the container. Only an init without a private PID
          namespace passes here (the kernel kills the rest of a private namespace itself);
          the exit is recorded only after the kill finished, as runc-v2 does.
REAPING   the process was reaped; its output is being drained (bounded by a deadline).
CLEANUP   the exit is recorded exactly once; nothing more happens to this process.

Five singletons compared with ``is``, not an ``enum.Enum``: ``enum`` costs ~0.4 MB in every
shim process. ``STATES`` lists them in this order; ``str()`` of one is its name.
"""


class State:
    __slots__ = ("name",)

    STARTING: "State"
    RUNNING: "State"
    KILLING: "State"
    REAPING: "State"
    CLEANUP: "State"

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<State.{self.name}>"


STATES = (
    State("STARTING"),
    State("RUNNING"),
    State("KILLING"),
    State("REAPING"),
    State("CLEANUP"),
)
State.STARTING, State.RUNNING, State.KILLING, State.REAPING, State.CLEANUP = STATES
