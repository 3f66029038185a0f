"""A process's stdio in containerd's FIFO mode (spec section 6.4), fast by construction.

Rules:
- Without a terminal the container gets its own blocking descriptors of the client's
  FIFOs (no byte passes through Python). We keep an O_RDWR holder per output FIFO, so a
  client that goes away never makes the container's writes fail, and a keep-alive writer
  on the stdin FIFO, closed by ``close_stdin`` (CloseIO).
- Clients wait for EOF on the output FIFOs (6.4 item 6): ``finish`` (called once the
  exit is recorded) closes every holder, so the client's reader sees EOF as soon as the
  container's own descriptors are gone.
- With a terminal, runc sends the pty master on the console socket; ``Pump``s relay
  stdin FIFO -> master and master -> stdout FIFO with back-pressure. ``drain`` waits for
  the master to report EOF/EIO (all slave holders gone) before the exit is recorded.
- Empty paths mean /dev/null (null IO); a terminal without stdout still has its master
  read (into /dev/null) so the process cannot block on a full pty.
- ``ran`` closes our copies of the container's ends once runc returned (else no EOF).
"""

import os
from collections.abc import Callable

from epollshim.log import Log
from epollshim.shell import fifo
from epollshim.shell.console import ConsoleSocket, set_winsize
from epollshim.shell.loop import Loop
from epollshim.shell.pump import Pump


class ProcIO:
    def __init__(
        self,
        loop: Loop,
        log: Log,
        name: str,
        paths: tuple[str, str, str],
        terminal: bool,
        bufsize: int,
    ) -> None:
        self.loop = loop
        self.log = log
        self.name = name
        self.stdin, self.stdout, self.stderr = paths
        self.terminal = terminal
        self.bufsize = bufsize
        self.holders: list[int] = []
        self.container: list[int] = []
        self.keepalive = -1
        self.stdin_reader = -1
        self.console: ConsoleSocket | None = None
        self.master = -1
        self.pumps: list[Pump] = []
        self.outputs_open = 0
        self.on_drained: Callable[[], None] | None = None
        self.size: tuple[int, int] | None = None

    # -- before runc --------------------------------------------------------------------
    def open(self) -> tuple[int, int, int]:
        """runc's fds 0/1/2 (the container's own stdio without a terminal)."""
        try:
            return self._open()
        except OSError:
            self.close()
            raise

    def _devnull(self) -> int:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.container.append(fd)
        return fd

    def _open(self) -> tuple[int, int, int]:
        if self.stdin:
            self.stdin_reader, self.keepalive = fifo.open_input(self.stdin)
        if self.terminal:
            if self.stdout:
                holder, end = fifo.open_output(self.stdout)
                if holder >= 0:
                    fifo.close(end)  # the relay writes through the non-blocking holder
                self.holders.append(holder if holder >= 0 else end)
            self.console = ConsoleSocket()
            null = self._devnull()
            return null, null, null
        if self.stdin_reader >= 0:
            os.set_blocking(self.stdin_reader, True)
            stdin = self.stdin_reader
            self.container.append(stdin)
            self.stdin_reader = -1  # the container's now; ours closes in ran()
        else:
            stdin = self._devnull()
        return stdin, self._output(self.stdout), self._output(self.stderr)

    def _output(self, path: str) -> int:
        if not path:
            return self._devnull()
        holder, end = fifo.open_output(path)
        if holder >= 0:
            self.holders.append(holder)
        self.container.append(end)
        return end

    @property
    def console_path(self) -> str | None:
        return self.console.path if self.console else None

    def ran(self) -> None:
        """runc returned: the container holds its own copies now."""
        fifo.close(*self.container)
        self.container = []

    # -- terminal -----------------------------------------------------------------------
    def receive_console(self) -> None:
        """Take the pty master from the console socket and start relaying (ConsoleError)."""
        assert self.console is not None
        try:
            self.master = self.console.receive()
        finally:
            self.console.close()
            self.console = None
        if self.size:
            set_winsize(self.master, *self.size)
        dst = self.holders[0] if self.holders else self._devnull_kept()
        self.outputs_open += 1
        out = Pump(self.loop, self.master, dst, bufsize=self.bufsize, on_eof=self._output_eof)
        self.pumps.append(out.start())
        if self.stdin_reader >= 0:
            inp = Pump(self.loop, self.stdin_reader, self.master, bufsize=self.bufsize)
            self.pumps.append(inp.start())

    def _devnull_kept(self) -> int:
        fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self.holders.append(fd)
        return fd

    def _output_eof(self, pump: Pump) -> None:
        self.outputs_open -= 1
        if self.outputs_open == 0 and self.on_drained is not None:
            done, self.on_drained = self.on_drained, None
            done()

    def resize(self, cols: int, rows: int) -> None:
        if self.master >= 0:
            set_winsize(self.master, cols, rows)
        elif self.terminal:
            self.size = (cols, rows)  # applied when the master arrives

    # -- the end ------------------------------------------------------------------------
    def drain(self, done: Callable[[], None]) -> None:
        """Call ``done`` once every relayed output reached EOF (maybe right now)."""
        if self.outputs_open == 0:
            done()
        else:
            self.on_drained = done

    def close_stdin(self) -> None:
        fifo.close(self.keepalive)
        self.keepalive = -1

    def finish(self) -> None:
        """The exit is recorded: let the clients' readers see EOF."""
        self.on_drained = None
        for pump in self.pumps:
            pump.stop()
        self.pumps = []
        fifo.close(*self.holders, self.master)
        self.holders = []
        self.master = -1

    def close(self) -> None:
        self.finish()
        if self.console:
            self.console.close()
            self.console = None
        self.close_stdin()
        fifo.close(self.stdin_reader, *self.container)
        self.stdin_reader = -1
        self.container = []
