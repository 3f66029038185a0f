"""Route reaped pids to whoever waits for them, including exits that come early.

The reaper sees every child exit, in any order. A container's init or exec can
die before its pid file is read (``runc exec -d`` returns after the process
started, and ``true`` is quick), so an exit for a pid nobody watches yet is
kept while some process is still STARTING and replayed by ``watch``
(conmon's exit cache; containerd's exit subscriptions). With nothing starting,
unknown exits (orphans reparented to the subreaper) are dropped, so the cache
cannot grow while the shim idles.
"""

from collections.abc import Hashable


class ExitRouter:
    def __init__(self) -> None:
        self.watched: dict[int, Hashable] = {}
        self.early: dict[int, int] = {}
        self.starting = 0

    def expect(self) -> None:
        """A process entered STARTING: keep unknown exits until its pid is known."""
        self.starting += 1

    def settle(self) -> None:
        """A process left STARTING (pid known or failed)."""
        self.starting = max(0, self.starting - 1)
        if self.starting == 0:
            self.early.clear()

    def watch(self, pid: int, key: Hashable) -> int | None:
        """Route ``pid``'s exit to ``key``; return its wait status if it already came."""
        status = self.early.pop(pid, None)
        if status is None:
            self.watched[pid] = key
        return status

    def exited(self, pid: int, status: int) -> Hashable | None:
        """A pid was reaped: return its watcher's key, or keep/drop it as early."""
        key = self.watched.pop(pid, None)
        if key is None and self.starting:
            self.early[pid] = status
        return key
