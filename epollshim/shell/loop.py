"""One ``selectors.EpollSelector`` loop: fd callbacks and one-shot timers.

Facts about epoll this loop relies on:
* Level-triggered (the selectors default): a readable fd is reported again on
  every ``select`` until it is drained, so a callback may read just once.
* A pipe/FIFO whose last writer closed reports EPOLLHUP; selectors maps HUP
  and ERR to both read and write readiness, so read callbacks see EOF.
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

Rule: a callback that raises ends the loop (the exception propagates), unless
the owner gave ``on_error``: a shim serving several containers logs the
failure of one callback and keeps serving the others.
"""

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
        self.selector = selectors.EpollSelector()
        # fd -> [read callback or None, write callback or None]
        self.callbacks: dict[int, list[Callback | None]] = {}
        self.masks: dict[int, int] = {}  # fd -> the events registered with the selector
        self.bulk: set[int] = set()  # registered fds whose callbacks run last in a batch
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
            if registered:
                del self.masks[fd]
                self.selector.unregister(fd)
        elif mask != registered:  # unchanged (a writer removed again...): no selector call
            if registered:
                self.selector.modify(fd, mask)
            else:
                self.selector.register(fd, mask)  # EPERM for a regular file: not recorded
            self.masks[fd] = mask

    def _set(self, fd: int, which: int, cb: Callback | None) -> None:
        cbs = self.callbacks.setdefault(fd, [None, None])
        cbs[which] = cb
        self._update(fd)

    def _bulk(self, fd: int, bulk: bool) -> None:
        if bulk:
            self.bulk.add(fd)
        else:
            self.bulk.discard(fd)

    def add_reader(self, fd: int, cb: Callback, *, bulk: bool = False) -> None:
        self._bulk(fd, bulk)
        self._set(fd, 0, cb)

    def remove_reader(self, fd: int) -> None:
        if fd in self.callbacks:
            self._set(fd, 0, None)

    def add_writer(self, fd: int, cb: Callback, *, bulk: bool = False) -> None:
        self._bulk(fd, bulk)
        self._set(fd, 1, cb)

    def remove_writer(self, fd: int) -> None:
        if fd in self.callbacks:
            self._set(fd, 1, None)

    def forget(self, fd: int) -> None:
        """Drop every callback of ``fd`` (call before closing it)."""
        if fd in self.callbacks:
            self.callbacks[fd] = [None, None]
            self._update(fd)

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
        for key, mask in self.selector.select(self._timeout()):
            if key.fd in bulk:
                later.append((key.fd, mask))
            else:
                self._dispatch(key.fd, mask)
        for fd, mask in later:
            self._dispatch(fd, mask)
        if self.timers:
            self._run_timers()

    def _dispatch(self, fd: int, mask: int) -> None:
        cbs = self.callbacks.get(fd)
        # a callback earlier in this batch may have removed this fd
        if cbs and mask & READ and cbs[0]:
            cbs[0]()
        cbs = self.callbacks.get(fd)
        if cbs and mask & WRITE and cbs[1]:
            cbs[1]()

    def close(self) -> None:
        self.selector.close()
