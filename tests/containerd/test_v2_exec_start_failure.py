"""An exec whose Start fails inside the shim: Start answers an error, a parked Wait too.

The shim writes the exec's process spec under ``$XDG_RUNTIME_DIR`` before ``runc exec``;
a shim started with that directory missing cannot, just as it cannot when descriptors run
out (EMFILE): the failure must reach containerd as Start's error, the exec must count as
stopped (a Wait that ``ctr task exec`` parked before Start is answered, so ctr returns),
and the shim must not keep any descriptor of the failed exec. epollshim only: runc-v2
writes its spec elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from v2support import DEADLINE, EPOLL, check, remove, run_detached, shim_pid_of

from epollshim.tools.containerd import PrivateContainerd

pytestmark = pytest.mark.containerd


@pytest.fixture
def ctd(containerd_available: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateContainerd]:
    """A containerd whose shims inherit an XDG_RUNTIME_DIR that does not exist."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent/epollshim-test")
    with PrivateContainerd() as c:  # containerd and its shims take the environment now
        monkeypatch.undo()  # ctr needs a real XDG_RUNTIME_DIR for its FIFOs
        c.import_image()
        yield c


def fds(pid: int) -> list[str]:
    return sorted(os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd"))


def test_a_failed_exec_start_answers_start_and_wait_and_leaks_nothing(
    ctd: PrivateContainerd, unique_id: str
) -> None:
    init = run_detached(ctd, EPOLL, unique_id, "sleep", "600")
    shim = shim_pid_of(init)
    before = fds(shim)
    for n in range(3):
        try:
            r = ctd.ctr("task", "exec", "--exec-id", f"x{n}", unique_id, "true", timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ctr task exec hung: a Wait was never answered\n{ctd.log_tail(20)}")
        assert r.returncode != 0
        assert "cannot run runc exec: No such file or directory" in r.stderr, r.stderr
    assert fds(shim) == before
    check(ctd.ctr("task", "kill", "-s", "KILL", unique_id, timeout=DEADLINE))
    remove(ctd, unique_id)
