"""One ``selectors.EpollSelector`` loop: fd callbacks and one-shot timers.

Facts about epoll this loop relies on:
* Level-triggered (the selectors default): a readable fd is reported again on
  every ``select`` until it is drained, so a callback may read just once
  (edge-triggered fds excepted: see below).
* A pipe/FIFO whose last writer closed reports EPOLLHUP; HUP and ERR wake
  both the read and the write callback (as selectors maps them), so read
  callbacks see EOF; ``Loop.event`` has HANGUP for them.
* A pty master whose slave side is gone reports HUP for ever: the owner must
  unregister it, or the loop spins.
Rule: register EVENT_WRITE only while bytes are pending, and arm timers only
while something has a deadline. With neither, ``select`` blocks with no
timeout and an idle shim makes no system calls at all.

Rule: bulk callbacks (relays moving a stream's bytes: ``bulk=True``) run after
every other callback of the same ``select`` batch, so a ttrpc call, a signal or
a control message that became ready together with a busy stream waits for no
chunk of it. Bulk is a property of the fd's registration: the last
``add_reader``/``add_writer`` says it, and it ends when the fd is unregistered
(fd numbers are reused). Bulk events are not starved: level-triggered, they
are all served in the same batch, just last.

Rule: a pty master's reader registers edge-triggered (``edge=True``, EPOLLET).
Level-triggered, a pty master makes ``select`` itself wait: each call polls the
fd again, and n_tty's poll, finding its buffer drained, waits (uninterruptibly)
for the tty's buffer worker to push the next bytes (``__flush_work`` from
``n_tty_poll``). Measured on a shim relaying a ``dd`` through a tty: a third of
its time went there, time in which no ttrpc call was read. Edge-triggered, a
fd is polled only after it woke the loop, so its callbacks must leave it
drained, or wait for its next edge, or register it again (registering polls
afresh): ``drained`` says which; ``Pump`` and conmon's ``Output`` follow it.
Edge is a property of the fd, not of one callback: any ``add_*`` with
``edge=True`` sets it, and it ends when the fd is unregistered. selectors has
no word for EPOLLET, nor for a hangup: ``Epoll`` adds both.

Rule: a callback that sent bytes a peer waits for (a ttrpc answer) calls ``woke_peer``.
Then, if bulk fds are registered (a relay may have the next chunk ready), the loop calls
``sched_yield`` once, before the batch's bulk callbacks, or after its timers: a unix socket's
wake-up tells the scheduler that the sender will sleep, so the peer is often queued on our
CPU, and runc-v2's answering goroutine does park its thread right after the write, while
our one thread would move the relay's next chunk first. Measured with ``perf sched`` while a
container streams through a tty: the caller waited a median 77-160 us for the CPU after our
answer without it, 53-60 us with it, 24-30 us after runc-v2's. Once per pass, and only with
a relay, because a yield hands the rest of our time slice to whatever else is runnable (a
busy container, say): the answers of one batch all go out first, and a shim without a relay
has nothing to do after an answer but wait in ``epoll_wait``.

Rule: a callback that raises ends the loop (the exception propagates), unless
the owner gave ``on_error``: a shim serving several containers logs the
failure of one callback and keeps serving the others.
"""

import os
import select
import selectors
import time
from collections.abc import Callable

# heapq's C half: heapq.py adds only pure-Python extras (merge, nlargest...) and ~40 KiB
# of private memory per shim; mypy reads the same two functions from heapq.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from heapq import heappop, heappush
else:
    from _heapq import heappop, heappush

Callback = Callable[[], None]

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE
HANGUP = 4  # in a ready mask (``Epoll.ready``, ``Loop.event``): EPOLLHUP or EPOLLERR
EDGE = 8  # in ``Loop.masks`` only: the registration is edge-triggered
MAX_EVENTS = 64  # per wait; more wait for the next (epoll keeps them ready)
_NOT_IN = ~select.EPOLLIN
_NOT_OUT = ~select.EPOLLOUT
_HUP = select.EPOLLHUP | select.EPOLLERR
PAGE = 4096  # a pipe slot: splice reads whole slots' worth at most


def drained(n: int, asked: int, event: int) -> bool:
    """After a read of ``n`` bytes (``asked`` at most) from an edge fd, woken with ``event``:
    True if the source may wait for its next edge. A short read drained it, but what was
    asked is not always ``asked``: splice cuts a read to the destination pipe's free slots,
    whole pages. So a read of ``asked`` or of whole pages reads again; any other length
    (n_tty hands over all it holds, at most 4095 bytes) waits. A hangup (a pty's slave
    closed) wakes the loop once: after one, read on to EOF (EIO) or EAGAIN."""
    return not (event & HANGUP or n == asked or not n % PAGE)


class Epoll(selectors.EpollSelector):
    """selectors' epoll, with two words selectors lacks: EPOLLET, and a hangup seen as one."""

    def edge(self, fd: int, mask: int) -> None:
        """Make ``fd``'s registration (``mask``: READ | WRITE) edge-triggered."""
        flags = (select.EPOLLIN if mask & READ else 0) | (select.EPOLLOUT if mask & WRITE else 0)
        self._selector.modify(fd, flags | select.EPOLLET)  # type: ignore[attr-defined]

    def ready(self, timeout: float | None) -> list[tuple[int, int]]:
        """(fd, mask) of the fds ready within ``timeout`` seconds (None: no limit). READ and
        WRITE as ``select`` maps them (a hangup or an error wakes both directions), and
        HANGUP, which ``select`` folds away: an edge reader needs it (``Pump``)."""
        try:
            polled = self._selector.poll(timeout, MAX_EVENTS)  # type: ignore[attr-defined]
        except InterruptedError:
            return []
        return [
            (
                fd,
                (WRITE if ev & _NOT_IN else 0)
                | (READ if ev & _NOT_OUT else 0)
                | (HANGUP if ev & _HUP else 0),
            )
            for fd, ev in polled
        ]


class Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "Timer") -> bool:
        return self.when < other.when


class Loop:
    def __init__(self, on_error: Callable[[Exception], None] | None = None) -> None:
        self.on_error = on_error
        self.selector = Epoll()
        # fd -> [read callback or None, write callback or None]
        self.callbacks: dict[int, list[Callback | None]] = {}
        self.masks: dict[int, int] = {}  # fd -> the events registered (| EDGE)
        self.bulk: set[int] = set()  # registered fds whose callbacks run last in a batch
        self.edge: set[int] = set()  # registered fds that are edge-triggered
        self.event = 0  # the ready mask of the fd whose callback runs (HANGUP: see Pump)
        self.peer_woken = False  # woke_peer since the last yield point (module rules)
        self.sched_yield = os.sched_yield
        self.timers: list[Timer] = []
        self.running = False

    # -- fds -------------------------------------------------------------
    def _update(self, fd: int) -> None:
        cbs = self.callbacks[fd]
        mask = (READ if cbs[0] else 0) | (WRITE if cbs[1] else 0)
        registered = self.masks.get(fd, 0)  # what the selector holds for fd (0: nothing)
        if not mask:
            del self.callbacks[fd]
            self.bulk.discard(fd)
            self.edge.discard(fd)
            if registered:
                del self.masks[fd]
                self.selector.unregister(fd)
            return
        want = mask | EDGE if fd in self.edge else mask
        if want != registered:  # unchanged (a writer removed again...): no selector call
            if registered:
                self.selector.modify(fd, mask)
            else:
                self.selector.register(fd, mask)  # EPERM for a regular file: not recorded
            if want & EDGE:  # selectors registered it level-triggered
                self.selector.edge(fd, mask)
            self.masks[fd] = want

    def _set(self, fd: int, which: int, cb: Callback | None) -> None:
        cbs = self.callbacks.setdefault(fd, [None, None])
        cbs[which] = cb
        self._update(fd)

    def _mark(self, fd: int, bulk: bool, edge: bool) -> None:
        """Bulk as the last ``add_*`` says; edge once any says so (both end unregistered)."""
        if bulk:
            self.bulk.add(fd)
        else:
            self.bulk.discard(fd)
        if edge:
            self.edge.add(fd)

    def add_reader(self, fd: int, cb: Callback, *, bulk: bool = False, edge: bool = False) -> None:
        self._mark(fd, bulk, edge)
        self._set(fd, 0, cb)

    def remove_reader(self, fd: int) -> None:
        cbs = self.callbacks.get(fd)
        if cbs is not None and cbs[0] is not None:  # else nothing to change
            self._set(fd, 0, None)

    def add_writer(self, fd: int, cb: Callback, *, bulk: bool = False, edge: bool = False) -> None:
        self._mark(fd, bulk, edge)
        self._set(fd, 1, cb)

    def remove_writer(self, fd: int) -> None:
        cbs = self.callbacks.get(fd)
        if cbs is not None and cbs[1] is not None:  # else nothing to change (every answer asks)
            self._set(fd, 1, None)

    def forget(self, fd: int) -> None:
        """Drop every callback of ``fd`` (call before closing it)."""
        if fd in self.callbacks:
            self.callbacks[fd] = [None, None]
            self._update(fd)

    def woke_peer(self) -> None:
        """We sent bytes a peer waits for: yield once before more bulk work (module rules)."""
        self.peer_woken = True

    def _yield_to_peer(self) -> None:
        self.peer_woken = False
        if self.bulk:
            self.sched_yield()

    # -- timers ----------------------------------------------------------
    def call_later(self, delay: float, cb: Callback) -> Timer:
        timer = Timer(time.monotonic() + delay, cb)
        heappush(self.timers, timer)
        return timer

    def _timeout(self) -> float | None:
        while self.timers and self.timers[0].cancelled:
            heappop(self.timers)
        if not self.timers:
            return None
        return max(0.0, self.timers[0].when - time.monotonic())

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self.timers and (self.timers[0].cancelled or self.timers[0].when <= now):
            timer = heappop(self.timers)
            if not timer.cancelled:
                timer.callback()

    # -- the loop --------------------------------------------------------
    def stop(self) -> None:
        self.running = False

    def run(self) -> None:
        self.running = True
        while self.running:
            try:
                self._once()
            except Exception as e:
                if self.on_error is None:
                    raise
                self.on_error(e)

    def _once(self) -> None:
        later: list[tuple[int, int]] = []
        bulk = self.bulk
        for fd, mask in self.selector.ready(self._timeout()):
            if fd in bulk:
                later.append((fd, mask))
            else:
                self._dispatch(fd, mask)
        if self.peer_woken:
            self._yield_to_peer()
        for fd, mask in later:
            self._dispatch(fd, mask)
        if self.timers:
            self._run_timers()
        if self.peer_woken:
            self._yield_to_peer()

    def _dispatch(self, fd: int, mask: int) -> None:
        self.event = mask
        cbs = self.callbacks.get(fd)
        # a callback earlier in this batch may have removed this fd
        if cbs and mask & READ and cbs[0]:
            cbs[0]()
        cbs = self.callbacks.get(fd)
        if cbs and mask & WRITE and cbs[1]:
            cbs[1]()

    def close(self) -> None:
        self.selector.close()
