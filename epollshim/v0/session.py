"""The connected half of ``epollshim run``/``attach``: a Session and its helpers.

A ``Session`` joins our stdio (or terminal) to a state directory's FIFOs and
lives until the shim ends (the exit FIFO hangs up), in one loop where nothing
blocks. ``PidFileWatch`` tells when runc wrote ``pid`` (inotify). The state
directory helpers read what the shim left there.
"""

import os
import signal
import sys
import termios
import tty
from collections.abc import Callable

from epollshim.shell import libc
from epollshim.shell.console import get_winsize
from epollshim.shell.loop import Loop, Timer
from epollshim.shell.pump import Pump
from epollshim.shell.signals import Signals, describe

EXIT_SHIM_FAILED = 125


def shim_alive(pid: int, state_dir: str) -> bool:
    """``pid`` runs (not a zombie) and is the shim of ``state_dir`` (not a recycled pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except (OSError, IndexError):
        return False
    return pid > 0 and state not in (b"Z", b"X") and os.fsencode(state_dir) in args


def read_status(state_dir: str) -> int | None:
    try:
        with open(os.path.join(state_dir, "exitStatus"), "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def read_pid(state_dir: str) -> int:
    try:
        with open(os.path.join(state_dir, "pid"), "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def remove_state(state_dir: str) -> None:
    import shutil

    shutil.rmtree(state_dir, ignore_errors=True)


IN_CREATE, IN_MOVED_TO = 0x100, 0x80  # inotify(7)


class PidFileWatch:
    """Calls ``callback`` once ``STATE_DIR/pid`` exists (inotify; runc renames it into place).

    Only ``attach`` (the shim is not our child, so its ready pipe is not ours) and a
    signal that came before the container's pid need it.
    """

    def __init__(self, loop: Loop, state_dir: str, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.path = os.path.join(state_dir, "pid")
        self.callback: Callable[[], None] | None = callback
        self.fd = -1
        self.timer: Timer | None = None
        try:
            self.fd = libc.inotify(state_dir, IN_CREATE | IN_MOVED_TO)
        except OSError:  # EMFILE/ENOSPC: inotify limits reached; fall back to asking
            self.fd = -1
        else:
            loop.add_reader(self.fd, self._event)
        self._event()  # it may exist already (or have appeared before the watch)

    def _event(self) -> None:
        if self.fd >= 0:
            try:
                while os.read(self.fd, 4096):
                    pass
            except BlockingIOError:
                pass
        if os.path.exists(self.path):
            callback, self.callback = self.callback, None
            self.close()
            if callback:
                callback()
        elif self.fd < 0 and self.callback:  # no inotify (limits): ask again later
            self.timer = self.loop.call_later(0.05, self._event)

    def close(self) -> None:
        self.callback = None
        if self.timer:
            self.timer.cancel()
            self.timer = None
        if self.fd >= 0:
            self.loop.forget(self.fd)
            os.close(self.fd)
            self.fd = -1


class Session:
    """Our stdio (or terminal) connected to a state directory's FIFOs until the shim ends.

    Signals: without a terminal, SIGINT/SIGTERM/SIGHUP/SIGQUIT go to the container's
    pid (as ``ctr``/``docker run`` without -t do); the container's status decides how
    we end. With a terminal, ^C is a byte for the container, and any of those signals
    detaches us: the terminal is restored, the container keeps running, and
    ``epollshim attach STATE_DIR`` reconnects.
    """

    def __init__(self, state_dir: str, terminal: bool) -> None:
        self.state_dir = state_dir
        self.terminal = terminal
        self.loop = Loop()
        self.shim_pid = 0
        self.shim_code: int | None = None
        self.shim_gone = False
        self.outputs = 0
        self.output_pumps: list[Pump] = []
        self.stdin_writer = self.ready_fd = -1
        self.ready = False  # the shim holds its stdin FIFO: our buffered bytes are safe
        self.stdin_done = False  # our input ended; the writer closes once ``ready``
        self.stdin_pump: Pump | None = None
        self.stdin_pending = b""  # a chunk of a regular-file stdin not written yet
        self.pid_watch: PidFileWatch | None = None
        self.signals_pending: list[int] = []
        self.detached = 0  # the signal that detached us (terminal mode)
        self.fds: list[int] = []
        fd = self._open
        self.exit_fd = fd("exit", os.O_RDONLY | os.O_NONBLOCK)
        self.control = fd("control", os.O_RDWR | os.O_NONBLOCK)
        self.readers = [fd("stdout", os.O_RDONLY | os.O_NONBLOCK)]
        if not terminal:
            self.readers.append(fd("stderr", os.O_RDONLY | os.O_NONBLOCK))
        # O_RDWR: opens at once, and our writes wait in the pipe (no EPIPE) until
        # the shim has opened its reader; closing it is "the client's writer left".
        self.stdin_writer = fd("stdin", os.O_RDWR | os.O_NONBLOCK)

    def _open_raw(self, name: str, flags: int) -> int:
        return os.open(os.path.join(self.state_dir, name), flags | os.O_CLOEXEC)

    def _open(self, name: str, flags: int) -> int:
        try:
            fd = self._open_raw(name, flags)
        except OSError:
            self.close()
            raise
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def run(self) -> int:
        signals = Signals(self.loop, lambda s: None)
        signals.on(signal.SIGCHLD, lambda s: self._check_shim())
        signals.on(signal.SIGWINCH, lambda s: self._send_size())
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signals.on(sig, self._on_signal)
        self.loop.add_reader(self.exit_fd, self._exit_hup)
        for src, dst in zip(self.readers, (1, 2), strict=False):
            self.outputs += 1
            self.output_pumps.append(Pump(self.loop, src, dst, on_eof=self._output_done).start())
        if self.ready_fd >= 0:
            self.loop.add_reader(self.ready_fd, self._ready_event)
        else:  # attach: the shim opened its FIFOs before runc wrote ``pid``
            self.pid_watch = PidFileWatch(self.loop, self.state_dir, self._pid_known)
        self._connect_stdin()
        saved = None
        if self.terminal and os.isatty(0):
            saved = termios.tcgetattr(0)
            tty.setraw(0, termios.TCSANOW)  # TCSAFLUSH would drop what was typed ahead
            self._send_size()
        try:
            self.loop.run()
        finally:
            if saved is not None:
                try:
                    termios.tcsetattr(0, termios.TCSADRAIN, saved)
                except termios.error:  # the terminal is gone (SIGHUP)
                    pass
        if self.detached:
            sys.stderr.write(
                f"epollshim: detached ({describe(self.detached)}); the container keeps "
                f"running: epollshim attach {self.state_dir}\n"
            )
            return 128 + self.detached
        status = read_status(self.state_dir)
        if self.shim_pid and self.shim_code is None:
            _, raw = os.waitpid(self.shim_pid, 0)
            self.shim_code = os.waitstatus_to_exitcode(raw)
        remove_state(self.state_dir)  # the shim has ended: nobody needs the FIFOs now
        return EXIT_SHIM_FAILED if status is None else status

    # -- stdin ---------------------------------------------------------------------
    def _connect_stdin(self) -> None:
        pump = Pump(self.loop, 0, self.stdin_writer, on_eof=self._stdin_eof, name="stdin")
        try:
            self.stdin_pump = pump.start()
        except OSError:  # EPERM: a regular file or /dev/null; EBADF: closed
            self.loop.forget(0)
            self.loop.add_writer(self.stdin_writer, self._feed_file)

    def _feed_file(self) -> None:
        """Stdin that epoll cannot watch (a file): one chunk each time the FIFO has room."""
        if not self.stdin_pending:
            try:
                self.stdin_pending = os.read(0, 65536)
            except OSError:  # EBADF: no stdin at all
                self.stdin_pending = b""
            if not self.stdin_pending:
                self.loop.remove_writer(self.stdin_writer)
                self._stdin_eof()
                return
        try:
            n = os.write(self.stdin_writer, self.stdin_pending)
        except BlockingIOError:
            return
        self.stdin_pending = self.stdin_pending[n:]

    def _stdin_eof(self, pump: Pump | None = None) -> None:
        self.stdin_done = True
        self._close_stdin()

    def _close_stdin(self) -> None:
        # Bytes in a FIFO die with its last descriptor: if we closed ours before the
        # shim opened its reader, our input would be lost. So wait for ``ready``.
        if not self.stdin_done or self.stdin_writer < 0 or not (self.ready or self.shim_gone):
            return
        self.loop.forget(self.stdin_writer)
        self.fds.remove(self.stdin_writer)
        os.close(self.stdin_writer)
        self.stdin_writer = -1
        self._control(b"0 0 0\n")

    def _ready_event(self) -> None:
        """The shim's fd 1 (our pipe): EOF once it holds its FIFOs (or is gone)."""
        try:
            if os.read(self.ready_fd, 4096):
                return  # the shim never writes there; ignore it if it did
        except BlockingIOError:  # EAGAIN: not the end yet
            return
        except OSError:  # EIO and the like: the pipe is as good as closed
            pass
        self.loop.forget(self.ready_fd)
        os.close(self.ready_fd)
        self.ready_fd = -1
        self.ready = True
        self._close_stdin()

    def _pid_known(self) -> None:
        self.pid_watch = None
        self.ready = True  # runc wrote ``pid`` after the shim had opened its FIFOs
        self._close_stdin()
        self._forward_signals()

    # -- signals -------------------------------------------------------------------
    def _on_signal(self, sig: int) -> None:
        if self.terminal:
            self.detached = sig
            self.loop.stop()
            return
        self.signals_pending.append(sig)
        self._forward_signals()

    def _forward_signals(self) -> None:
        if not self.signals_pending or self.shim_gone:
            self.signals_pending.clear()
            return
        if read_status(self.state_dir) is not None:  # reaped: the pid may be reused
            self.signals_pending.clear()
            return
        pid = read_pid(self.state_dir)
        if not pid:  # the container is not created yet: forward once runc wrote its pid
            if self.pid_watch is None:
                self.pid_watch = PidFileWatch(self.loop, self.state_dir, self._pid_known)
            return
        for sig in self.signals_pending:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        self.signals_pending.clear()

    def _send_size(self) -> None:
        if self.terminal and os.isatty(0):
            cols, rows = get_winsize(0)
            self._control(f"1 {cols} {rows}\n".encode())

    def _control(self, message: bytes) -> None:
        try:
            os.write(self.control, message)
        except OSError:  # the FIFO is full or gone: the shim has ended
            pass

    # -- the end -------------------------------------------------------------------
    def _exit_hup(self) -> None:
        self.loop.remove_reader(self.exit_fd)
        self._shim_ended()

    def _check_shim(self) -> None:
        if not self.shim_pid or self.shim_code is not None:
            return
        pid, raw = os.waitpid(self.shim_pid, os.WNOHANG)
        if pid:
            self.shim_code = os.waitstatus_to_exitcode(raw)
            self._shim_ended()

    def _shim_ended(self) -> None:
        if self.shim_gone:
            return
        self.shim_gone = True
        self.signals_pending.clear()
        if self.pid_watch:
            self.pid_watch.close()
            self.pid_watch = None
        if self.stdin_pump:
            self.stdin_pump.stop()
        else:
            self.loop.remove_writer(self.stdin_writer)
        # A FIFO reader that never saw a writer gets no HUP (a shim that died before
        # opening its FIFOs): a writer of our own that comes and goes arms it, so each
        # output ends once what is buffered is read and every other writer is gone.
        for name, pump in zip(("stdout", "stderr"), self.output_pumps, strict=False):
            if not pump.done:
                try:
                    os.close(self._open_raw(name, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:  # ENXIO: no reader any more, nothing to wake
                    pass
        if self.outputs == 0:
            self.loop.stop()

    def _output_done(self, pump: Pump) -> None:
        self.outputs -= 1
        if pump.broken and not self.shim_gone:
            # Our reader left (`epollshim run -- yes | head -1`): like a process in a
            # pipeline we end with SIGPIPE's status; like `docker run` whose client went
            # away, the container keeps running and can be attached to again.
            self.detached = signal.SIGPIPE
            self.loop.stop()
        elif self.outputs == 0 and self.shim_gone:
            self.loop.stop()
