"""A process's stdio (spec section 6.4): FIFOs, a log file or a logging binary.

Where output goes is ``stdio_uri.Output`` (stdout's string decides, as in runc-v2):

- FIFO, no terminal: the container gets its own blocking descriptors of the client's FIFOs
  (no byte passes through Python). We keep an O_RDWR holder per output FIFO, so a client
  that goes away never makes the container's writes fail, and a keep-alive writer on the
  stdin FIFO, closed by ``close_stdin`` (CloseIO). With ``io_uid``/``io_gid`` set, the
  container gets pipes owned by them instead (runc-v2's pipes, so a non-root user may
  reopen ``/dev/stdout``), relayed to the FIFOs by pumps.
- FILE (``file:///path``): parent directories made (0755) and the file opened
  O_APPEND|O_CREAT (0644), as runc-v2 does; the container writes into pipes (owned by
  io_uid:io_gid) and pumps append what arrives. Not the file itself: a process reopening
  ``/dev/stdout`` (``echo x > /dev/stdout``) would open the log file with O_TRUNC and
  without O_APPEND, wiping it; reopening a pipe is harmless. splice(2) refuses O_APPEND
  files, so these pumps copy with read/write, FILE_CHUNK bytes at a time (the pipes grow).
- BINARY (``binary:///path?k=v``): a ``Logger`` reads the pipes' other ends (fd 3/4) and
  must signal it is ready before runc runs (``when_ready``). Its pipes are not chowned
  (runc-v2 leaves them root's too). The drain waits for it to exit.
- A terminal: runc sends the pty master on the console socket; ``Pump``s relay stdin FIFO
  -> master and master -> the stdout FIFO, the log file or the logger's stdout pipe
  (whose write end the pump closes at EOF so that the logger sees it).
- stdin is the FIFO in every mode (runc-v2 gives a logging binary's process /dev/null).
- Clients wait for EOF on the output FIFOs (6.4 item 6): ``finish`` (called once the
  exit is recorded) closes every holder, so the client's reader sees EOF as soon as the
  container's own descriptors are gone.
- ``drain`` waits for every pump's EOF and for the logger's exit before the exit is
  recorded. A pump whose destination fails for good (ENOSPC, EIO, EPIPE) is replaced by
  one into /dev/null with a warning: the process is never blocked by a full pipe.
- Empty paths mean /dev/null (null IO); a terminal without stdout still has its master
  read (into /dev/null) so the process cannot block on a full pty.
- ``ran`` closes our copies of the container's ends once runc returned (else no EOF).
"""

import errno
import fcntl
import os
import stat
from collections.abc import Callable

from epollshim.log import Log
from epollshim.shell import fifo
from epollshim.shell.loop import Loop

TYPE_CHECKING = False  # typing costs memory in every shim; mypy knows this name
if TYPE_CHECKING:  # pragma: no cover
    from epollshim.shell.console import ConsoleSocket
    from epollshim.shell.pump import Pump
    from epollshim.v2.logger import Logger

FIFO = "fifo"
FILE = "file"
BINARY = "binary"
FILE_CHUNK = 256 << 10  # a relay pipe into a log file, and what one read takes from it


class Output:
    """Where stdout goes (``stdio_uri.parse``): ``kind`` FIFO, FILE or BINARY, ``path``, and
    a binary's ``args``."""

    __slots__ = ("args", "kind", "path")

    def __init__(self, kind: str, path: str, args: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.path = path
        self.args = args

    def __repr__(self) -> str:
        return f"Output({self.kind!r}, {self.path!r}, {self.args!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Output):
            return NotImplemented
        return (self.kind, self.path, self.args) == (other.kind, other.path, other.args)

    __hash__ = None  # type: ignore[assignment]  # compared, never hashed


def output_of(stdout: str) -> Output:
    """Where ``stdout`` sends the output (``stdio_uri.StdioError``, a ValueError, if nowhere)."""
    if not stdout or stdout.startswith("/"):
        return Output(FIFO, stdout)  # a FIFO path or null IO, what containerd's clients send
    from epollshim.v2 import stdio_uri  # only a URI pays for the parser

    return stdio_uri.parse(stdout)


class ProcIO:
    def __init__(
        self,
        loop: Loop,
        log: Log,
        name: str,
        paths: tuple[str, str, str],
        terminal: bool,
        bufsize: int,
        *,
        output: Output | None = None,
        io_ids: tuple[int, int] = (0, 0),
        logger: "Logger | None" = None,
        logger_env: dict[str, str] | None = None,
    ) -> None:
        self.loop = loop
        self.log = log
        self.name = name
        self.stdin, self.stdout, self.stderr = paths
        self.terminal = terminal
        self.bufsize = bufsize
        self.output = output if output is not None else Output(FIFO, self.stdout)
        self.io_ids = io_ids
        self.logger = logger
        self.logger_env = logger_env or {}
        self.holders: list[int] = []  # destinations we write or hold open; closed by finish
        self.sources: list[int] = []  # read ends of the relay pipes; closed by finish
        self.container: list[int] = []  # the container's ends; closed by ran
        self.keepalive = -1
        self.stdin_reader = -1
        self.sink = -1  # the log file, or the logger's stdout pipe with a terminal
        self.console: ConsoleSocket | None = None
        self.master = -1
        self.pumps: list[Pump] = []
        self.outputs_open = 0
        self.on_drained: Callable[[], None] | None = None
        self.size: tuple[int, int] | None = None
        self.finished = False

    # -- before runc --------------------------------------------------------------------
    def open(self) -> tuple[int, int, int]:
        """runc's fds 0/1/2; OSError or SpawnError (the logger) with nothing left open."""
        try:
            return self._open()
        except BaseException:
            self.close()
            raise

    def when_ready(self, done: Callable[[str], None]) -> None:
        """``done("")`` once runc may run (now, or when the logger is ready), or ``done(error)``."""
        if self.logger is None:
            done("")
        else:
            self.logger.wait_ready(done)

    def _devnull(self) -> int:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.container.append(fd)
        return fd

    def _open(self) -> tuple[int, int, int]:
        if self.stdin:
            self.stdin_reader, self.keepalive = fifo.open_input(self.stdin)
        ends = self._open_output()
        if self.terminal:
            from epollshim.shell.console import ConsoleSocket  # a terminal only

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
        return stdin, *ends

    def _open_output(self) -> tuple[int, int]:
        """The container's stdout and stderr (unused with a terminal)."""
        kind = self.output.kind
        if kind == BINARY:
            return self._start_logger()
        if kind == FILE:
            self.sink = _open_log_file(self.output.path)
            self.holders.append(self.sink)
            if self.terminal:
                return -1, -1
            err = self._relay(self.sink) if self.stderr else self._devnull()
            return self._relay(self.sink), err
        if self.terminal:
            if self.stdout:
                holder, end = fifo.open_output(self.stdout)
                if holder >= 0:
                    fifo.close(end)  # the relay writes through the non-blocking holder
                self.holders.append(holder if holder >= 0 else end)
            return -1, -1
        return self._fifo_output(self.stdout), self._fifo_output(self.stderr)

    def _fifo_output(self, path: str) -> int:
        if not path:
            return self._devnull()
        holder, end = fifo.open_output(path)
        if holder >= 0:
            self.holders.append(holder)
        if self.io_ids == (0, 0):
            self.container.append(end)
            return end
        # io_uid/io_gid: runc-v2's chowned pipes, relayed to the FIFO (or the plain file)
        if holder >= 0:
            fifo.close(end)
        else:
            self.holders.append(end)
        return self._relay(holder if holder >= 0 else end)

    def _relay(self, dst: int) -> int:
        """A pipe for the container (owned by io_uid:io_gid) and a pump from it to ``dst``."""
        r, w = os.pipe2(os.O_CLOEXEC)
        self.sources.append(r)
        self.container.append(w)
        if self.io_ids != (0, 0):
            os.fchown(w, *self.io_ids)
        os.set_blocking(r, False)  # ours only; the container's end stays blocking
        self._pump(r, dst, _bigger_pipe(r) if not _is_pipe(dst) else self.bufsize)
        return w

    def _pump(self, src: int, dst: int, bufsize: int = 0) -> None:
        from epollshim.shell.pump import Pump  # a relay only (terminal, file, logger)

        pump = Pump(
            self.loop,
            src,
            dst,
            bufsize=bufsize or self.bufsize,
            on_eof=self._output_eof,
            edge=src == self.master,  # a pty master (shell/loop.py)
        )
        pump.splice = _is_pipe(dst)  # EINVAL on a file with O_APPEND: skip the useless try
        self.outputs_open += 1
        self.pumps.append(pump.start())

    def _start_logger(self) -> tuple[int, int]:
        """Pipes for the logger's fd 3 and 4; the logger started; the container's ends."""
        assert self.logger is not None
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.container += [out_w, err_w]
        try:
            self.logger.start(self.logger_env, out_r, err_r)
        finally:
            fifo.close(out_r, err_r)  # the logger's now: we keep no reader (see logger.py)
        self.logger.on_exit = self._logger_exited
        if self.terminal:  # the master pump writes stdout; nothing writes stderr
            self.container.remove(out_w)
            self.sink = out_w
            os.set_blocking(out_w, False)
        return out_w, err_w

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
            from epollshim.shell.console import set_winsize

            set_winsize(self.master, *self.size)
        if self.output.kind == BINARY:
            self._pump(self.master, self.sink)
        else:
            dst = self.sink if self.sink >= 0 else (self.holders or [self._devnull_kept()])[0]
            self._pump(self.master, dst)
        if self.stdin_reader >= 0:
            from epollshim.shell.pump import Pump

            inp = Pump(self.loop, self.stdin_reader, self.master, bufsize=self.bufsize)
            self.pumps.append(inp.start())

    def _devnull_kept(self) -> int:
        fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self.holders.append(fd)
        return fd

    def resize(self, cols: int, rows: int) -> None:
        if self.master >= 0:
            from epollshim.shell.console import set_winsize

            set_winsize(self.master, cols, rows)
        elif self.terminal:
            self.size = (cols, rows)  # applied when the master arrives

    # -- the end ------------------------------------------------------------------------
    def _output_eof(self, pump: "Pump") -> None:
        if pump.dst == self.sink and self.output.kind == BINARY:
            os.close(self.sink)  # the terminal's end: the logger sees EOF on its fd 3
            self.sink = -1
        self.outputs_open -= 1
        if pump.broken and not self.finished:
            self.log.warn(f"{self.name}: writing its output failed; discarding the rest")
            self._pump(pump.src, self._devnull_kept())  # never leave the process blocked
            return
        self._check_drained()

    def _logger_exited(self) -> None:
        logger = self.logger
        assert logger is not None
        said = f"{self.name}: logging binary {logger.path} {logger.describe()}"
        if logger.status and not logger.signalled:  # ours after stop(): expected
            self.log.warn(said)
        else:
            self.log.debug(said)
        self._check_drained()

    def _check_drained(self) -> None:
        if self.outputs_open or (self.logger is not None and self.logger.running):
            return
        if self.on_drained is not None:
            done, self.on_drained = self.on_drained, None
            done()

    def drain(self, done: Callable[[], None]) -> None:
        """Call ``done`` once every relayed output reached EOF and the logger exited."""
        self.on_drained = done
        self._check_drained()

    def close_stdin(self) -> None:
        fifo.close(self.keepalive)
        self.keepalive = -1

    def finish(self) -> None:
        """The exit is recorded: let the clients' readers see EOF; stop a lingering logger."""
        self.finished = True
        self.on_drained = None
        for pump in self.pumps:
            pump.stop()
        self.pumps = []
        fifo.close(*self.holders, *self.sources, self.master)
        self.holders, self.sources = [], []
        self.master = -1
        if self.output.kind == BINARY:
            fifo.close(self.sink)  # the logger's stdout pipe (terminal) if not closed yet
        self.sink = -1
        if self.logger is not None:
            self.logger.stop()

    def close(self) -> None:
        self.finish()
        if self.logger is not None:
            self.logger.close()
        if self.console:
            self.console.close()
            self.console = None
        self.close_stdin()
        fifo.close(self.stdin_reader, *self.container)
        self.stdin_reader = -1
        self.container = []


def _open_log_file(path: str) -> int:
    """``file://``: parents made 0755 and the file opened for appending (0644), as runc-v2."""
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _bigger_pipe(fd: int) -> int:
    """Grow a relay pipe into a file to FILE_CHUNK bytes; the size to read from it at once.

    Read/write (splice refuses O_APPEND) costs per chunk: 256 KiB chunks instead of 64 KiB
    halved the shim's CPU per GiB here and leave +0.25 MB of heap after a burst (1 MiB: +1 MB).
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FILE_CHUNK)
    except OSError as e:  # EPERM: over the unprivileged pipe-user-pages limit
        if e.errno != errno.EPERM:
            raise
        return 65536
    return FILE_CHUNK


def _is_pipe(fd: int) -> bool:
    return stat.S_ISFIFO(os.fstat(fd).st_mode)
