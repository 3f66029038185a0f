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
* ``_signal``, not ``signal``: the ``signal`` module turns every number into an IntEnum
  member (it imports ``enum``, ~0.9 MB per shim); the C functions take and give ints.
"""

from collections.abc import Callable

from epollshim.shell import sock
from epollshim.shell.loop import Loop

# mypy treats any TYPE_CHECKING as true: it reads the types of the signal module (same
# functions, int-compatible constants); at run time only its C half is imported.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal

SIGCHLD, SIGINT, SIGKILL, SIGTERM = (
    _signal.SIGCHLD,
    _signal.SIGINT,
    _signal.SIGKILL,
    _signal.SIGTERM,
)

Handler = Callable[[int], None]

# What a child must find at its default disposition (posix_spawn's setsigdef); Python
# ignores SIGPIPE and SIGXFSZ, and our handlers are for us alone.
RESETTABLE = tuple(
    s for s in _signal.valid_signals() if s not in (_signal.SIGKILL, _signal.SIGSTOP)
)

# Synchronous signals and SIGCONT keep their defaults; SIGKILL/SIGSTOP can't be caught.
_UNTOUCHED = {
    _signal.SIGKILL,
    _signal.SIGSTOP,
    _signal.SIGSEGV,
    _signal.SIGBUS,
    _signal.SIGFPE,
    _signal.SIGILL,
    _signal.SIGTRAP,
    _signal.SIGSYS,
    _signal.SIGABRT,
    _signal.SIGCONT,
}

# Signal names as signal.Signals(n).name gives them: the first name, by value then name.
_NAMES: dict[int, str] = {}
for _value, _name in sorted(
    (value, name)
    for name, value in vars(_signal).items()
    if name.startswith("SIG") and not name.startswith("SIG_") and type(value) is int
):
    _NAMES.setdefault(_value, _name)


def _noop(signum: int, frame: object) -> None:
    """The byte on the wakeup fd is the whole message."""


class Signals:
    def __init__(self, loop: Loop, default: Handler) -> None:
        self.loop = loop
        self.default = default
        self.handlers: dict[int, Handler] = {}
        self.rsock, self.wsock = sock.socketpair()
        self.rsock.setblocking(False)
        self.wsock.setblocking(False)
        _signal.set_wakeup_fd(self.wsock.fileno(), warn_on_full_buffer=False)
        for sig in _signal.valid_signals():
            if sig not in _UNTOUCHED:
                try:
                    _signal.signal(sig, _noop)
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
    _signal.set_wakeup_fd(-1)
    for sig in _signal.valid_signals():
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP):
            try:
                _signal.signal(sig, _signal.SIG_DFL)
            except (OSError, ValueError):  # EINVAL: libc-reserved rt signals
                pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def describe(signum: int) -> str:
    """``SIGTERM`` for 15 (as ``signal.Signals(15).name``), ``signal 35`` for a nameless one."""
    return _NAMES.get(signum) or f"signal {signum}"
