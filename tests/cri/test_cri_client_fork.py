"""The CRI client does not poison forked children of the process that holds it.

The test process keeps a CRI client connected for the whole session (the ``cri`` fixture) and
later forks terminals with ``ptyprocess``, whose child closes every descriptor before exec.
With gRPC's fork support on, gRPC restarts its poller in each child, the poller's epoll fd is
closed under it, and gRPC aborts the child: a CI run lost a tty test that way. Here each child
does what ``ptyprocess``'s child does (close its descriptors), then stays alive for a while
before exiting 0; with fork support on, about one child in three was killed by SIGABRT.
"""

from __future__ import annotations

import os
import time

from epollshim.tools.cri import CriContainerd

CHILDREN = 50
CHILD_LIFE = 0.02  # s: the window in which a restarted poller would hit its closed epoll fd


def test_children_forked_beside_a_connected_client_exit_cleanly(cri: CriContainerd) -> None:
    assert cri.client.version().runtime_name == "containerd"  # the channel is connected
    statuses = []
    for _ in range(CHILDREN):
        pid = os.fork()
        if pid == 0:  # the child: only os calls from here to _exit
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            time.sleep(CHILD_LIFE)
            os._exit(0)
        statuses.append(os.waitpid(pid, 0)[1])
    killed = [os.WTERMSIG(s) for s in statuses if os.WIFSIGNALED(s)]
    assert killed == [], f"{len(killed)} of {CHILDREN} children killed by signals {killed}"
    assert statuses == [0] * CHILDREN
