"""The control FIFO: ``TYPE A B\\n`` lines from the supervisor (spec 16.4).

``0 x y`` closes stdin (drops our keep-alive writer; idempotent); ``1 W H``
resizes the terminal to W columns and H rows. Anything else, a line that does
not parse, or a line longer than 128 bytes is logged and dropped up to the
next newline; it never ends the shim. Both sides hold the FIFO O_RDWR, so we
never see EOF here: the reader reads until EAGAIN.
"""

import os
from collections.abc import Callable

from epollshim.log import Log

MAX_LINE = 128


class ControlReader:
    def __init__(
        self,
        fd: int,
        close_stdin: Callable[[], None],
        resize: Callable[[int, int], None],
        log: Log,
    ) -> None:
        self.fd = fd
        self.close_stdin = close_stdin
        self.resize = resize
        self.log = log
        self.buffer = b""
        self.discarding = False  # inside an over-long line

    def readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        self.feed(data)

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if self.discarding:
                self.discarding = False
                continue
            self.handle(line)
        if len(self.buffer) > MAX_LINE:
            if not self.discarding:  # once per line, however many reads it takes
                self.log.warn(f"control: dropping a line longer than {MAX_LINE} bytes")
            self.buffer = b""
            self.discarding = True

    def handle(self, line: bytes) -> None:
        if len(line) > MAX_LINE:
            self.log.warn(f"control: dropping a line longer than {MAX_LINE} bytes")
            return
        parts = line.split()
        try:
            kind, a, b = (int(p) for p in parts)
        except ValueError:
            self.log.warn(f"control: unknown message {line[:64]!r}: expected 'TYPE A B'")
            return
        if kind == 0:
            self.close_stdin()
        elif kind == 1:
            self.resize(a, b)
        else:
            self.log.warn(f"control: unknown message type {kind} in {line[:64]!r}")
