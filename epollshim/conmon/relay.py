"""Moving bytes between the container and podman: outputs, stdin, and the two FIFOs.

Unlike the seed form, whose container writes straight into the client's FIFOs, a
conmon-style monitor reads every byte of output itself: it goes to the log file and to
each attach client. Facts and rules:
* ``Output`` reads at most 8192 bytes at a time (one attach packet). EOF is ``read``
  returning 0, or EIO from a pty master whose slave side is gone (it would report HUP
  for ever: the reader is removed at once). ``pause``/``resume`` follow back-pressure
  from the attach clients. A pty master is registered edge-triggered (shell/loop.py):
  after a wake-up, ``Output`` reads until ``drained`` (or paused).
* ``Input`` writes what clients send to the container's stdin (a pipe, or the pty
  master), never blocking: while bytes are pending it asks the owner to stop reading the
  clients. EPIPE or EIO (the container side is gone) drops pending and later input, as
  conmon drops input once the container's stdin is closed.
* ``CtlReader`` reads conmon's ``ctl`` FIFO (``1 H W`` resizes: height first; ``2 0 0``
  reopens the log) and ``WinszReader`` its ``winsz`` FIFO (``H W``), both with the seed
  form's control-line reader (``ControlReader``: bounded lines, bad ones logged, never fatal).
"""

import errno
import os
from collections.abc import Callable

from epollshim.log import Log
from epollshim.shell.loop import Loop, drained
from epollshim.v0.control import ControlReader

PACKET_DATA = 8192


class Output:
    __slots__ = ("code", "edge", "fd", "loop", "name", "on_data", "on_eof", "open", "paused")

    def __init__(
        self,
        loop: Loop,
        fd: int,
        name: str,
        code: int,
        on_data: Callable[["Output", bytes], None],
        on_eof: Callable[["Output"], None],
        edge: bool = False,
    ) -> None:
        self.loop = loop
        self.fd = fd
        self.edge = edge  # a pty master: registered edge-triggered
        self.name = name  # "stdout" or "stderr", as the log names it
        self.code = code  # the attach socket's stream byte
        self.on_data = on_data
        self.on_eof = on_eof
        self.open = True
        self.paused = False

    def start(self) -> "Output":
        self.loop.add_reader(self.fd, self.readable, edge=self.edge)
        return self

    def readable(self) -> None:
        n = self._read()
        while n and self.edge and not self.paused and not drained(n, PACKET_DATA, self.loop.event):
            n = self._read()

    def _read(self) -> int:
        """Read one packet and pass it on: its length, 0 at EOF or EAGAIN."""
        try:
            data = os.read(self.fd, PACKET_DATA)
        except BlockingIOError:
            return 0
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: a pty master whose slave side is gone
                raise
            data = b""
        if data:
            self.on_data(self, data)
        else:
            self.stop()
            self.on_eof(self)
        return len(data)

    def pause(self) -> None:
        if self.open and not self.paused:
            self.paused = True
            self.loop.remove_reader(self.fd)

    def resume(self) -> None:
        if self.open and self.paused:
            self.paused = False
            self.loop.add_reader(self.fd, self.readable, edge=self.edge)

    def stop(self) -> None:
        self.open = False
        self.loop.remove_reader(self.fd)


class Input:
    """Client bytes to the container's stdin; ``on_full(True/False)`` gates the clients."""

    def __init__(
        self, loop: Loop, fd: int, *, owns_fd: bool, on_full: Callable[[bool], None]
    ) -> None:
        self.loop = loop
        self.fd = fd
        self.owns_fd = owns_fd  # a pipe's write end is ours to close; a pty master is not
        self.on_full = on_full
        self.pending = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        if self.fd < 0 or self.closing:
            return  # stdin is closed: conmon drops the bytes too
        self.pending += data
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                n = os.write(self.fd, self.pending)
            except BlockingIOError:
                self.loop.add_writer(self.fd, self._writable)
                self.on_full(True)
                return
            except OSError as e:
                if e.errno not in (errno.EPIPE, errno.EIO):  # the container side is gone
                    raise
                self.pending = b""
                self._close_now()
                return
            self.pending = self.pending[n:]
        if self.closing:
            self._close_now()

    def _writable(self) -> None:
        self.loop.remove_writer(self.fd)
        self._flush()
        if not self.pending:
            self.on_full(False)

    def close(self) -> None:
        """Close stdin once pending bytes are written (the container then reads EOF)."""
        self.closing = True
        if not self.pending:
            self._close_now()

    def _close_now(self) -> None:
        if self.fd < 0:
            return
        self.loop.remove_writer(self.fd)
        if self.owns_fd:
            os.close(self.fd)
        self.fd = -1
        self.on_full(False)


class CtlReader(ControlReader):
    """conmon's ``ctl`` FIFO: ``1 H W`` resize, ``2 x y`` reopen the log; others logged."""

    def __init__(
        self,
        fd: int,
        resize: Callable[[int, int], None],
        reopen: Callable[[], None],
        log: Log,
    ) -> None:
        # the seed reader's type 0 (close stdin) is not conmon's: handle() refuses it first
        super().__init__(fd, lambda: None, lambda h, w: resize(w, h), log)
        self.reopen = reopen

    def handle(self, line: bytes) -> None:
        kind = line.split(None, 1)[:1]
        if kind == [b"2"] and len(line.split()) == 3:
            self.reopen()
        elif kind == [b"0"]:
            self.log.warn(f"ctl: unknown message type 0 in {line[:64]!r}")
        else:
            super().handle(line)


class WinszReader(ControlReader):
    """conmon's ``winsz`` FIFO: ``H W`` lines resize the terminal."""

    def __init__(self, fd: int, resize: Callable[[int, int], None], log: Log) -> None:
        super().__init__(fd, lambda: None, lambda h, w: resize(w, h), log)

    def handle(self, line: bytes) -> None:
        super().handle(b"1 " + line if len(line.split()) == 2 else line)


def make_fifo(directory: str, name: str) -> int:
    """``directory/name`` made afresh (mode 0660) and opened O_RDWR: never EOF, never HUP."""
    path = os.path.join(directory, name)
    try:
        os.mkfifo(path, 0o660)
    except FileExistsError:
        os.unlink(path)
        os.mkfifo(path, 0o660)
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
