"""Signals arrive as bytes on a self-pipe (``signal.set_wakeup_fd``).

Facts:
* ``set_wakeup_fd`` writes the signal number only for signals that have a
  Python handler, so every signal we care about gets a no-op handler.
* Signals coalesce: one SIGCHLD byte may stand for many exits, so the reaper
  loops until ``waitpid`` has nothing left.
* The write end must be non-blocking; if it fills up, bytes are dropped
  (``warn_on_full_buffer=False``), which is fine: one byte per signal number
  still wakes us.
* Handlers and the wakeup fd are reset in children before exec (see spawn).
"""

import signal
import socket
from collections.abc import Callable

from epollshim.shell.loop import Loop

Handler = Callable[[int], None]

# Synchronous signals and SIGCONT keep their defaults; SIGKILL/SIGSTOP can't be caught.
_UNTOUCHED = {
    signal.SIGKILL,
    signal.SIGSTOP,
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGSYS,
    signal.SIGABRT,
    signal.SIGCONT,
}


def _noop(signum: int, frame: object) -> None:
    """The byte on the wakeup fd is the whole message."""


class Signals:
    def __init__(self, loop: Loop, default: Handler) -> None:
        self.loop = loop
        self.default = default
        self.handlers: dict[int, Handler] = {}
        self.rsock, self.wsock = socket.socketpair()
        self.rsock.setblocking(False)
        self.wsock.setblocking(False)
        signal.set_wakeup_fd(self.wsock.fileno(), warn_on_full_buffer=False)
        for sig in signal.valid_signals():
            if sig not in _UNTOUCHED:
                try:
                    signal.signal(sig, _noop)
                except (OSError, ValueError):  # EINVAL: the rt signals libc reserves
                    pass
        loop.add_reader(self.rsock.fileno(), self._ready)

    def on(self, sig: int, handler: Handler) -> None:
        self.handlers[sig] = handler

    def _ready(self) -> None:
        try:
            data = self.rsock.recv(4096)
        except BlockingIOError:
            return
        for signum in dict.fromkeys(data):  # coalesce, keep order
            self.handlers.get(signum, self.default)(signum)


def reset_in_child() -> None:
    """In a forked child before exec: default dispositions, empty mask."""
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):  # EINVAL: libc-reserved rt signals
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def describe(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
