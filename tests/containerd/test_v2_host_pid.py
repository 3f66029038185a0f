"""A container in the host's PID namespace: Wait answers only once its other processes die.

When the init of a container without a private PID namespace exits, the kernel does not
kill the rest of the container; the shim runs ``runc kill --all ID 9`` and, as runc-v2
does, records the exit (Wait, ``/tasks/exit``) only after that command ended. So the
moment Wait returns, the init's child is gone, a zombie, exiting, or has SIGKILL pending.

Wait is called over the shim's own socket (our ttrpc client): ``ctr run`` returns only
after its Delete, and ``runc delete`` kills the rest of such a container by itself, so it
would hide the difference this test is about.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from v2support import (
    RUNTIMES,
    ShimConnection,
    check,
    nothing_left,
    poll,
    remove,
    run_detached,
    shim_socket,
)

from epollshim.tools.containerd import PrivateContainerd
from epollshim.tools.procfs import children_of, dead_or_dying
from epollshim.v2.messages import WaitRequest, WaitResponse

pytestmark = pytest.mark.containerd
ROUNDS = 20


@pytest.fixture(autouse=True)
def _nothing_left(containerd: PrivateContainerd) -> Iterator[None]:
    yield from nothing_left(containerd)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_wait_answers_after_the_rest_of_a_host_pid_container_was_killed(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    alive_after_wait = []
    for n in range(ROUNDS):
        cid = f"{unique_id}-{n}"
        init = run_detached(
            containerd,
            runtime,
            cid,
            "sh",
            "-c",
            "sleep 1000 & wait",
            options=["--with-ns", f"pid:/proc/{os.getpid()}/ns/pid"],  # ours: the host's
        )
        (child,) = poll(f"the child of {init}", lambda init=init: children_of(init))
        with ShimConnection(shim_socket(containerd, cid)) as conn:
            waiting = conn.send("Wait", WaitRequest(id=cid))
            os.kill(init, signal.SIGKILL)  # only the init: the child is the shim's to kill
            waited = conn.reply(waiting).result(WaitResponse)
            why = dead_or_dying(child)
        assert waited.exit_status == 137
        if not why:
            alive_after_wait.append((n, child))
        check(containerd.ctr("task", "delete", cid))
        remove(containerd, cid)
    assert alive_after_wait == [], f"children alive when Wait returned: {alive_after_wait}"
