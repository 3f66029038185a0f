"""Helpers for the CRI tests: pods, container logs in CRI format, who serves a container.

Every wait is a bounded poll (``poll``), never a sleep; nothing here asserts a duration.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

from epollshim.tools import cri_api as c
from epollshim.tools.cri import CRI_NAMESPACE, CriContainerd, CriError, container_config
from epollshim.tools.procfs import stat
from epollshim.tools.wait import until

T = TypeVar("T")
RUNC_ROOT = "/run/containerd/runc"  # runc --root of both shims: <root>/<namespace>/<id>
CGROUP_ROOT = "/sys/fs/cgroup"
BUNDLES = "io.containerd.runtime.v2.task"  # containerd's bundle dir, under its state dir
# one line of a CRI log file: RFC 3339 time (nanoseconds), stream, tag (F full, P partial)
LOG_LINE = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) (stdout|stderr) ([FP]) (.*)"
)
SHIM_BINARIES = {"epollshim": "epollshim", "runc": "containerd-shim-runc-v2"}


def poll(what: str, check: Callable[[], T], timeout: float = 30.0) -> T:
    """Call ``check`` until it returns something true; fail the test after ``timeout``."""
    return until(what, check, timeout, error=pytest.fail.Exception)


def read_log(path: str) -> list[tuple[str, str, str]]:
    """(stream, tag, text) per line of a CRI log file; a malformed line fails the test."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        m = LOG_LINE.fullmatch(line)
        assert m, f"not a CRI log line: {line!r}"
        out.append((m[2], m[3], m[4]))
    return out


def stream(log: Sequence[tuple[str, str, str]], name: str) -> list[tuple[str, str]]:
    """(tag, text) of one stream's lines, in order."""
    return [(tag, text) for s, tag, text in log if s == name]


class Pod:
    """A pod sandbox on ``handler`` in the host's network, and its containers."""

    def __init__(self, cri: CriContainerd, handler: str, name: str = "pod") -> None:
        self.cri, self.client, self.handler = cri, cri.client, handler
        self.config = cri.pod_config(f"{name}-{handler}")
        self.id = self.client.run_pod(self.config, handler)
        self.removed = False

    def create(self, name: str, command: Sequence[str], **kw: Any) -> str:
        return self.client.create_container(
            self.id, container_config(name, command, **kw), self.config
        )

    def run(self, name: str, command: Sequence[str], **kw: Any) -> str:
        """Create and start a container; its id."""
        cid = self.create(name, command, **kw)
        self.client.start_container(cid)
        return cid

    def log_path(self, name: str, attempt: int = 0) -> str:
        return os.path.join(self.config.log_directory, f"{name}_{attempt}.log")

    def wait_log(self, name: str, text: str, attempt: int = 0) -> list[tuple[str, str, str]]:
        """Poll the container's log until a line holds ``text``; the whole log."""
        path = self.log_path(name, attempt)
        return poll(
            f"{text!r} in {path}",
            lambda: (log := read_log(path)) and any(text in t for _, _, t in log) and log,
        )

    def status(self, cid: str) -> c.ContainerStatus:
        status = self.client.container_status(cid).status
        assert status is not None
        return status

    def wait_exited(self, cid: str) -> c.ContainerStatus:
        return self.client.wait_container_state(cid, c.ContainerState.CONTAINER_EXITED)

    def remove(self) -> None:
        """StopPodSandbox and RemovePodSandbox, once."""
        if not self.removed:
            self.removed = True
            with contextlib.suppress(CriError):  # NOT_FOUND: the test removed it already
                self.client.stop_pod(self.id)
            self.client.remove_pod(self.id)


def task_pids(cri: CriContainerd) -> dict[str, int]:
    """Container id -> pid of its running task, from ``ctr task ls`` in k8s.io."""
    out = cri.ctd.ctr("task", "ls", namespace=CRI_NAMESPACE, check=True).stdout.splitlines()
    return {f[0]: int(f[1]) for f in (line.split() for line in out[1:]) if f[2] == "RUNNING"}


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [os.fsdecode(a) for a in f.read().split(b"\0") if a]
    except FileNotFoundError:
        return []


def shim_serving(cri: CriContainerd, cid: str) -> int:
    """The pid of the shim serving container ``cid``: its task's parent (the subreaper),
    checked to be a shim started by our containerd (``-address`` is our socket)."""
    pid = task_pids(cri)[cid]
    parent = stat(pid)[1]
    argv = cmdline(parent)
    ours = cri.address  # runc-v2 gets `-address SOCK`, epollshim's daemon `-address=SOCK`
    flagged = f"-address={ours}" in argv or ("-address", ours) in itertools.pairwise(argv)
    assert flagged, f"container {cid[:12]} (pid {pid}) has parent {parent} {argv}: no shim of ours"
    return parent


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return stat(pid)[0] not in ("gone", "Z", "X")


def leftovers(cri: CriContainerd, ids: Sequence[str]) -> list[str]:
    """What a removed pod's containers left behind: runc state, bundles, mounts, cgroups."""
    found = []
    for cid in ids:
        for path in (
            os.path.join(RUNC_ROOT, CRI_NAMESPACE, cid),
            os.path.join(cri.ctd.state, BUNDLES, CRI_NAMESPACE, cid),
        ):
            if os.path.lexists(path):
                found.append(path)
        for hierarchy in ["", *os.listdir(CGROUP_ROOT)]:  # cgroup v2: the root is the hierarchy
            cgroup = os.path.join(CGROUP_ROOT, hierarchy, cri.cgroup_parent.strip("/"), cid)
            if os.path.isdir(cgroup):
                found.append(cgroup)
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if any(cid in line for cid in ids)]
    return found
