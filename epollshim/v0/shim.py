"""The seed-protocol shim: one container process, one loop, one state machine.

Order of start-up (spec 16.3): shim-log.json, signals, subreaper, the exit
FIFO (write end, never written: our death is the notification), control
FIFO, the process spec, stdio, then the runtime command; everything after
that happens in callbacks of the loop. The core decides (``Process.handle``
returns effects) and ``_apply`` carries each effect out.

Exit codes of the shim process: 0 the container ran and ``exitStatus`` holds
its status; 1 bad input (bundle, config.json, FIFOs, config file); 2 usage;
3 the runtime (runc) failed, its words in shim-log.json and on stderr;
4 a bug in the shim (traceback and flight recorder in shim-log.json).
"""

import errno
import os
import stat
import time
from collections.abc import Callable

from epollshim.core import effects as fx
from epollshim.core import events as ev
from epollshim.core.exits import ExitRouter
from epollshim.core.machine import FlightRecorder, Observer, Process
from epollshim.core.states import State
from epollshim.log import Log
from epollshim.shell import fifo
from epollshim.shell.console import ConsoleError, ConsoleSocket, set_winsize
from epollshim.shell.loop import Loop, Timer
from epollshim.shell.process import SpawnError, become_subreaper, reap_into
from epollshim.shell.pump import Pump
from epollshim.shell.runtime import Runtime, read_pid_file, within
from epollshim.shell.signals import SIGCHLD, Signals, describe
from epollshim.v0.control import ControlReader
from epollshim.v0.spec import ProcessSpec, SetupError, load_bundle, load_process

EXIT_OK, EXIT_SETUP, EXIT_USAGE, EXIT_RUNTIME, EXIT_INTERNAL = 0, 1, 2, 3, 4


class Options:
    __slots__ = (
        "buffer_size",
        "bundle",
        "drain_deadline",
        "form",
        "id",
        "runtime",
        "runtime_root",
        "state_dir",
        "trace",
    )

    def __init__(self, *, state_dir: str, id: str, bundle: str, form: str) -> None:
        self.state_dir = state_dir
        self.id = id
        self.bundle = bundle
        self.form = form  # "seed" (Form B: STATE_DIR ID) or "0.2" (Form A: ID BUNDLE RUNTIME)
        self.runtime = "runc"
        self.runtime_root = ""
        self.trace: Observer | None = None
        self.buffer_size = 65536
        self.drain_deadline = 5.0


def check_state_dir(path: str) -> None:
    """The state dir must exist and be writable: runc writes ``pid`` there, we ``exitStatus``.

    access(2) answers EROFS on a read-only mount even for root (whom file modes do not stop).
    """
    if not os.path.isdir(path):
        raise SetupError(f"{path}: state directory not found")
    if not os.access(path, os.W_OK):
        readonly = os.statvfs(path).f_flag & os.ST_RDONLY
        why = "on a read-only file system" if readonly else "permission denied"
        raise SetupError(f"{path}: state directory not writable: {why}")


def _release_stdout() -> None:
    """Point fd 1 at /dev/null once the stdio FIFOs are open (the shim never writes it).

    ``epollshim run`` hands us a pipe as fd 1 and takes its EOF as "the shim holds
    its FIFOs": from then on it may close its stdin writer without losing bytes. A
    real supervisor gives /dev/null, so this only acts on an inherited pipe; our own
    descriptors are close-on-exec and are never touched.
    """
    try:
        if os.get_inheritable(1) and stat.S_ISFIFO(os.fstat(1).st_mode):
            devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            os.dup2(devnull, 1)
            os.close(devnull)
    except OSError:  # EBADF: no fd 1 at all
        pass


class SeedShim:
    def __init__(self, opts: Options, log: Log) -> None:
        self.opts = opts
        self.log = log
        self.loop = Loop()
        self.router = ExitRouter()
        self.recorder = FlightRecorder()
        self.exit_code = EXIT_OK
        self.exit_fd = self.control_fd = -1
        self.keepalive = -1  # our writer on the stdin FIFO ("0 0 0" closes it)
        self.container_fds: list[int] = []  # handed to runc, closed once it ran
        self.holders: list[int] = []  # stdout/stderr FIFO holders, kept until exit
        self.stdin_reader = self.master = -1
        self.console: ConsoleSocket | None = None
        self.pending_size: tuple[int, int] | None = None
        self.pumps: list[Pump] = []
        self.outputs_open = 0
        self.drain_timer: Timer | None = None
        self.teardown_running = 0
        self.exit_recorded = False
        self.deleting = False
        self.spec = ProcessSpec()
        self.proc: Process | None = None
        self.runtime: Runtime | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.opts.state_dir, name)

    # -- start-up ----------------------------------------------------------
    def setup(self) -> None:
        signals = Signals(self.loop, lambda s: self.log.debug(f"ignoring {describe(s)}"))
        signals.on(SIGCHLD, lambda s: reap_into(self.router))
        become_subreaper()
        self.exit_fd = self._open_fifo("exit", os.O_WRONLY | os.O_NONBLOCK)
        control = self.path("control")
        if self.opts.form == "0.2" or os.path.exists(control):
            self.control_fd = self._open_fifo("control", os.O_RDWR | os.O_NONBLOCK)
            reader = ControlReader(self.control_fd, self._close_stdin, self._resize, self.log)
            self.loop.add_reader(self.control_fd, reader.readable)
        if self.opts.form == "seed":
            self.spec, _ = load_bundle(self.opts.bundle)
            for name in ("stdin", "stdout", "stderr"):
                setattr(self.spec, name, self.path(name))
                if not fifo.is_fifo(self.path(name)):
                    raise SetupError(f"{self.path(name)}: {name} FIFO not found")
        else:
            self.spec = load_process(self.opts.state_dir, self.opts.bundle)
        self.runtime = Runtime(
            self.router,
            path=self.opts.runtime,
            root=self.opts.runtime_root,
            log_path=self.path("log.json"),
            extra=self.spec.runtime_args,
        )
        self.pending_size = self.spec.console_size
        stdio = self._open_stdio()
        _release_stdout()
        observers: list[Observer] = [self.recorder]
        if self.opts.trace:
            observers.append(self.opts.trace)
        name = "exec" if self.spec.exec else "init"
        self.proc = Process(
            name,
            init=not self.spec.exec,
            drain_deadline=self.opts.drain_deadline,
            observers=observers,
            kills_remaining=not self.spec.exec and not self.spec.private_pidns,
        )
        self.router.expect()
        self._spawn_first(stdio)

    def _open_fifo(self, name: str, flags: int) -> int:
        path = self.path(name)
        try:
            return os.open(path, flags | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise SetupError(f"{path}: {name} FIFO not found") from e
        except OSError as e:
            if e.errno == errno.ENXIO:
                raise SetupError(f"{path}: nobody is reading the {name} FIFO") from e
            raise SetupError(f"{path}: cannot open the {name} FIFO: {e.strerror}") from e

    def _open_stdio(self) -> tuple[int, int, int]:
        """The runtime's fds 0/1/2: the container's own stdio, or /dev/null with a terminal."""
        spec = self.spec
        try:
            self.stdin_reader, self.keepalive = fifo.open_input(spec.stdin)
            holder, out = fifo.open_output(spec.stdout)
            self.holders.append(holder)
            if spec.terminal:
                fifo.close(out)
                self.console = ConsoleSocket()
                devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                self.container_fds = [devnull]
                return devnull, devnull, devnull
            holder, err = fifo.open_output(spec.stderr)
            self.holders.append(holder)
        except OSError as e:
            raise SetupError(f"{e.filename or 'stdio'}: cannot open: {e.strerror}") from e
        os.set_blocking(self.stdin_reader, True)
        self.container_fds = [self.stdin_reader, out, err]
        self.stdin_reader = -1  # the container owns it now; ours closes after runc ran
        return self.container_fds[0], out, err

    def _spawn_first(self, stdio: tuple[int, int, int]) -> None:
        assert self.runtime is not None
        pidfile = self.path("pid")
        console = ["--console-socket", self.console.path] if self.console else []
        if self.spec.exec:
            args = ["exec", "-d", "--process", self.path("process.json"), *console]
        else:
            args = ["create", "--bundle", self.opts.bundle, *console]
            args += ["--no-pivot"] if self.spec.no_pivot else []
        args += ["--pid-file", pidfile, self.opts.id]
        try:
            self.runtime.run(args, self._created, stdio=stdio)
        except SpawnError as e:
            raise SetupError(f"{self.opts.runtime}: {e}") from e
        finally:
            fifo.close(*self.container_fds)  # runc and the container hold their copies
            self.container_fds = []

    # -- runtime results -----------------------------------------------------
    def _created(self, code: int, message: str) -> None:
        step = "exec" if self.spec.exec else "create"
        if code != 0:
            self._feed(ev.RuntimeFailed(step, message))
            return
        try:
            pid = self._read_pid()
            if self.console:
                self._attach_console(self.console.receive())
        except (SetupError, ConsoleError) as e:
            self._feed(ev.RuntimeFailed(step, str(e)))
            return
        self._feed(ev.PidKnown(pid))
        start = self.opts.form == "seed" or os.environ.get("EPOLLSHIM_START") == "1"
        if start and not self.spec.exec:
            assert self.runtime is not None
            self.runtime.run(["start", self.opts.id], self._started)

    def _started(self, code: int, message: str) -> None:
        if code != 0:
            self._feed(ev.RuntimeFailed("start", message))

    def _read_pid(self) -> int:
        try:
            return read_pid_file(self.path("pid"))
        except ValueError as e:
            raise SetupError(str(e)) from e

    def _attach_console(self, master: int) -> None:
        assert self.console is not None
        self.console.close()
        self.console = None
        self.master = master
        if self.pending_size:
            set_winsize(master, *self.pending_size)
        out = Pump(
            self.loop,
            master,
            self.holders[0],
            bufsize=self.opts.buffer_size,
            on_eof=self._output_eof,
            name="pty->stdout",
            edge=True,  # a pty master (shell/loop.py)
        )
        self.outputs_open += 1
        self.pumps.append(out.start())
        if self.stdin_reader >= 0:
            inp = Pump(
                self.loop,
                self.stdin_reader,
                master,
                bufsize=self.opts.buffer_size,
                on_eof=self._stdin_eof,
                name="stdin->pty",
            )
            self.pumps.append(inp.start())

    # -- IO events -------------------------------------------------------------
    def _output_eof(self, pump: Pump) -> None:
        self.outputs_open -= 1
        if self.outputs_open == 0 and self.proc and self.proc.state is State.REAPING:
            self._feed(ev.OutputDrained())

    def _stdin_eof(self, pump: Pump) -> None:
        self.log.debug("stdin reached EOF")  # terminal: stop reading, keep the master

    def _close_stdin(self) -> None:
        if self.keepalive >= 0:
            os.close(self.keepalive)
            self.keepalive = -1

    def _resize(self, cols: int, rows: int) -> None:
        if self.master >= 0:
            set_winsize(self.master, cols, rows)
        elif self.spec.terminal:
            self.pending_size = (cols, rows)  # applied when the master arrives

    # -- children ----------------------------------------------------------------
    def _container_exited(self, status: int) -> None:
        self._feed(ev.ProcessExited(status))

    # -- the core's decisions ----------------------------------------------------
    def _feed(self, event: ev.Event) -> None:
        assert self.proc is not None
        was_starting = self.proc.state is State.STARTING
        for effect in self.proc.handle(event, time.time()):
            self._apply(effect)
        # after the effects: WatchPid must claim an early exit before settle() drops the cache
        if was_starting and self.proc.state is not State.STARTING:
            self.router.settle()

    def _apply(self, effect: fx.Effect) -> None:
        assert self.proc is not None and self.runtime is not None
        match effect:
            case fx.WatchPid(pid):
                early = self.router.watch(pid, self._container_exited)
                if early is not None:
                    self._container_exited(early)
            case fx.Signal(sig, all_):
                if all_:
                    self._teardown(["kill", "--all", self.opts.id, str(sig)])
                elif self.proc.pid:
                    os.kill(self.proc.pid, sig)
            case fx.KillRemaining(deadline):
                self._kill_remaining(deadline)
            case fx.StartDrain(deadline):
                self.drain_timer = self.loop.call_later(deadline, self._drain_expired)
                if self.outputs_open == 0:
                    self._feed(ev.OutputDrained())
            case fx.RecordExit(code):
                self._record_exit(code)
            case fx.ReportFailure(step, message):
                self.log.error(f"runtime {step} failed for {self.opts.id}: {message}")
                self.exit_code = EXIT_RUNTIME
                if self.proc.state is State.CLEANUP:  # nothing was started
                    self._cleanup()
            case fx.Warn(message):
                self.log.warn(message)

    def _kill_remaining(self, deadline: float) -> None:
        """``runc kill --all ID KILL``; RemainingKilled when it ends or the deadline passes."""
        done = within(self.loop, deadline, "runc kill --all", self._remaining_killed)
        self._teardown(["kill", "--all", self.opts.id, "KILL"], done)

    def _remaining_killed(self, error: str) -> None:
        if self.proc and self.proc.state is State.KILLING:
            self._feed(ev.RemainingKilled(error))

    def _drain_expired(self) -> None:
        self.drain_timer = None
        self._feed(ev.DrainExpired())

    def _record_exit(self, code: int) -> None:
        if self.drain_timer:
            self.drain_timer.cancel()
            self.drain_timer = None
        tmp, final = self.path(".exitStatus.tmp"), self.path("exitStatus")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, str(code).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        self.exit_recorded = True
        self._cleanup()

    # -- teardown ----------------------------------------------------------------
    def _teardown(self, args: list[str], then: Callable[[int, str], None] | None = None) -> None:
        assert self.runtime is not None
        self.teardown_running += 1

        def done(code: int, message: str) -> None:
            self.teardown_running -= 1
            if code:
                self.log.debug(f"runc {args[0]}: {message}")
            if then is not None:
                then(code, message)
            if self.proc and self.proc.state is State.CLEANUP:
                self._cleanup()

        self.runtime.run(args, done)

    def _cleanup(self) -> None:
        """CLEANUP: once teardown commands are done, delete the container and stop."""
        if self.teardown_running:
            return  # called again when they finish
        if not self.spec.exec and not self.deleting:
            self.deleting = True
            self._teardown(["delete", "--force", self.opts.id])
            return
        self.loop.stop()

    def close(self) -> None:
        """Release every fd (the exit FIFO last: closing it tells the caller we are done)."""
        for pump in self.pumps:
            pump.stop()
        if self.console:
            self.console.close()
        fifo.close(self.keepalive, self.stdin_reader, self.master, self.control_fd)
        fifo.close(*self.holders, *self.container_fds)
        if self.runtime:
            self.runtime.close()

    def run(self) -> int:
        self.setup()
        self.loop.run()
        return self.exit_code
