"""The monitor of one container process (an init, or an exec session) for podman.

It is the seed shim (``SeedShim``: the core machine, the reaper, runc calls, the console
socket, draining, killing what is left of a host-PID-namespace container) with conmon's
edges instead of the seed protocol's:
* stdio: pipes (or a pty) that the monitor reads itself, to the k8s-file log and to the
  attach socket's clients; stdin from those clients (``relay``, ``attach``);
* runc: ``create --bundle B --pid-file P`` (never ``start``: podman starts the container)
  or ``exec --pid-file P --process SPEC --detach``, with podman's ``--runtime-arg``s
  before the command and its ``--runtime-opt``s after; runc's ``--log`` is podman's
  ``oci-log`` when podman names one;
* reporting: the pid, or -1 and runc's words, on the sync pipe; the exit code in
  ``EXIT_DIR/CID`` (and ``PERSIST_DIR/exit``), and for an exec also on the sync pipe;
* no ``runc delete``: podman's exit command (``container cleanup``) deletes.

Order at the end, as conmon's: output drained (bounded by the drain deadline), attach
clients closed, log synced, exit file(s) written, exec status sent; the exit command
runs after the loop (``main``).
"""

import os
import termios

from epollshim.conmon import exitfile, pipes
from epollshim.conmon.attach import STDERR, STDOUT, AttachServer
from epollshim.conmon.console import ConsoleWatch
from epollshim.conmon.k8slog import K8sLog
from epollshim.conmon.options import Options, runc_log
from epollshim.conmon.relay import CtlReader, Input, Output, WinszReader, make_fifo
from epollshim.core import effects as fx
from epollshim.core import events as ev
from epollshim.core.machine import Observer, Process
from epollshim.core.states import State
from epollshim.log import Log
from epollshim.shell.console import ConsoleError, set_winsize
from epollshim.shell.process import SpawnError, become_subreaper, reap_into
from epollshim.shell.runtime import Runtime, read_pid_file
from epollshim.shell.signals import SIGCHLD, SIGINT, SIGKILL, SIGTERM, Signals, describe
from epollshim.v0.shim import Options as SeedOptions
from epollshim.v0.shim import SeedShim
from epollshim.v0.spec import ProcessSpec, SetupError, load_bundle

SIGQUIT = 3
FORWARDED = (SIGTERM, SIGINT, SIGQUIT)  # conmon passes these on to the container
TIMED_OUT = "command timed out"  # conmon's message when --timeout killed the process


class Monitor(SeedShim):
    def __init__(self, opts: Options, fds: pipes.Fds, log: Log, trace: Observer | None) -> None:
        seed = SeedOptions(
            state_dir=opts.bundle or os.getcwd(), id=opts.cid, bundle=opts.bundle, form="conmon"
        )
        seed.runtime = opts.runtime
        seed.trace = trace
        super().__init__(seed, log)
        self.conmon = opts
        self.fds = fds
        self.outputs: list[Output] = []
        self.own_fds: list[int] = []  # our pipe ends and FIFOs, closed by close()
        self.stdin: Input | None = None
        self.attach: AttachServer | None = None
        self.k8s: K8sLog | None = None
        self.runtime_pid = 0  # runc create/exec while it runs
        self.runtime_started = False  # then the exit command runs at the end, as conmon's
        self.pid_sent = self.timed_out = self.log_failed = False
        self.stderr_r = -1
        self.watch: ConsoleWatch | None = None  # runc's console socket, with -t
        self.inherited: list[int] = []  # fds podman passed besides its pipes: closed at exit

    # -- start-up ----------------------------------------------------------------
    def setup(self) -> None:
        o = self.conmon
        signals = Signals(self.loop, lambda s: self.log.debug(f"ignoring {describe(s)}"))
        signals.on(SIGCHLD, lambda s: reap_into(self.router))
        for sig in FORWARDED:
            signals.on(sig, self._forward)
        become_subreaper()
        if o.k8s_log:
            self.k8s = self._open_log()
        self.spec = ProcessSpec() if o.exec else load_bundle(o.bundle)[0]
        self.spec.exec, self.spec.terminal = o.exec, o.terminal  # conmon's -t, not config.json
        log_path, extra = runc_log(o.runtime_args, os.path.join(self.opts.state_dir, "runc.log"))
        if o.systemd_cgroup and not o.exec:
            extra.append("--systemd-cgroup")
        self.runtime = Runtime(self.router, path=o.runtime, root="", log_path=log_path, extra=extra)
        stdio = self._open_stdio()
        if o.bundle:
            self._listen(o.bundle)
        self.proc = self._process()
        self.router.expect()
        if o.exec_attach and self.fds.start >= 0:
            # podman attaches first, then writes the start pipe: only then run the process
            self.loop.add_reader(self.fds.start, lambda: self._start_message(stdio))
        else:
            self._spawn_first(stdio)

    def _open_log(self) -> K8sLog:
        o = self.conmon
        try:
            return K8sLog(
                o.k8s_log,
                size_max=o.log_size_max,
                global_max=o.log_global_size_max,
                sync=not o.no_sync_log,
            )
        except OSError as e:
            raise SetupError(f"{o.k8s_log}: cannot open the log file: {e.strerror}") from e

    def _process(self) -> Process:
        observers: list[Observer] = [self.recorder]
        if self.opts.trace:
            observers.append(self.opts.trace)
        return Process(
            "exec" if self.conmon.exec else "init",
            init=not self.conmon.exec,
            drain_deadline=self.opts.drain_deadline,
            observers=observers,
            kills_remaining=not self.conmon.exec and not self.spec.private_pidns,
        )

    def _open_stdio(self) -> tuple[int, int, int]:
        """runc's fds 0/1/2; our ends are read (outputs) and written (stdin) by the loop."""
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.container_fds = [devnull]
        self.stderr_r, err_w = self._pipe(reader_ours=True)
        self.own_fds.append(self.stderr_r)
        if self.conmon.terminal:
            self.watch = ConsoleWatch(self.loop, self._attach_console)
            return devnull, devnull, err_w
        stdin = devnull
        if self.conmon.stdin:
            ours, stdin = self._pipe(reader_ours=False)  # the Input owns our end
            self.stdin = Input(self.loop, ours, owns_fd=True, on_full=self._input_full)
        out_r, out_w = self._pipe(reader_ours=True)
        self.own_fds.append(out_r)
        self.outputs.append(self._output(out_r, "stdout", STDOUT))
        return stdin, out_w, err_w

    def _pipe(self, *, reader_ours: bool) -> tuple[int, int]:
        """(our end, the container's end) of a new pipe: theirs blocking, ours not."""
        r, w = os.pipe2(os.O_CLOEXEC)
        ours, theirs = (r, w) if reader_ours else (w, r)
        os.set_blocking(ours, False)
        self.container_fds.append(theirs)
        return ours, theirs

    def _output(self, fd: int, name: str, code: int) -> Output:
        return Output(self.loop, fd, name, code, self._emit, self._output_done, fd == self.master)

    def _listen(self, directory: str) -> None:
        """The attach socket, the ``ctl`` and ``winsz`` FIFOs; for exec-attach, tell podman."""
        try:
            self.attach = AttachServer(
                self.loop,
                directory,
                on_input=self._input,
                on_input_end=self._input_end,
                on_blocked=self._clients_blocked,
            )
            ctl, winsz = make_fifo(directory, "ctl"), make_fifo(directory, "winsz")
        except OSError as e:
            raise SetupError(f"{directory}: cannot set up the attach socket: {e}") from e
        self.own_fds += [ctl, winsz]
        reader = CtlReader(ctl, self._resize, self._reopen_log, self.log)
        self.loop.add_reader(ctl, reader.readable)
        winsz_reader = WinszReader(winsz, self._resize, self.log)
        self.loop.add_reader(winsz, winsz_reader.readable)
        if self.conmon.exec_attach:
            self._send(self.fds.attach, 0)

    def _start_message(self, stdio: tuple[int, int, int]) -> None:
        self.loop.forget(self.fds.start)
        pipes.wait(self.fds.start)  # readable: a message or EOF, either means "go"
        self._spawn_first(stdio)

    def _spawn_first(self, stdio: tuple[int, int, int]) -> None:
        assert self.runtime is not None
        o = self.conmon
        console = ["--console-socket", self.watch.path] if self.watch else []
        if o.exec:
            args = ["exec", "--pid-file", o.container_pidfile, "--process", o.exec_process_spec]
            args += ["--detach", *(["--tty"] if o.terminal else [])]
        else:
            args = ["create", "--bundle", o.bundle, "--pid-file", o.container_pidfile]
            args += ["--no-pivot"] * o.no_pivot + ["--no-new-keyring"] * o.no_new_keyring
        args += [*o.runtime_opts, *console, o.cid]
        try:
            self.runtime_pid = self.runtime.run(args, self._created, stdio=stdio)
            self.runtime_started = True
        except SpawnError as e:
            raise SetupError(f"{o.runtime}: {e}") from e
        finally:
            for fd in self.container_fds:
                os.close(fd)  # runc and the container hold their copies
            self.container_fds = []

    # -- runtime results ---------------------------------------------------------
    def _created(self, code: int, message: str) -> None:
        self.runtime_pid = 0
        step = "exec" if self.conmon.exec else "create"
        if code != 0:
            self._feed(ev.RuntimeFailed(step, self._runc_stderr() or message))
            return
        try:
            pid = self._read_pid()
            if self.watch:
                self.watch.finish()
        except (SetupError, ConsoleError) as e:
            self._feed(ev.RuntimeFailed(step, str(e)))
            return
        self.outputs.append(self._output(self.stderr_r, "stderr", STDERR))
        for output in self.outputs:
            output.start()
        self.outputs_open = len(self.outputs)
        self._send(self.fds.sync, pid)  # before PidKnown: an exec's exit may follow at once
        self.pid_sent = True
        self._feed(ev.PidKnown(pid))
        if self.conmon.timeout > 0:
            self.loop.call_later(self.conmon.timeout, self._timeout)

    def _runc_stderr(self) -> str:
        """What runc wrote on stderr (conmon's error message when runc logs elsewhere)."""
        try:
            return os.read(self.stderr_r, 8191).decode(errors="replace").strip()
        except BlockingIOError:
            return ""

    def _read_pid(self) -> int:
        try:
            return read_pid_file(self.conmon.container_pidfile)
        except ValueError as e:
            raise SetupError(str(e)) from e

    def _attach_console(self, master: int) -> None:
        """The pty master: resized at once (podman sent the size before the start)."""
        self.master = master
        attrs = termios.tcgetattr(master)
        attrs[1] |= termios.ONLCR  # conmon sets it: \n reaches the log as \r\n, as kubelet's
        termios.tcsetattr(master, termios.TCSANOW, attrs)
        if self.pending_size:
            set_winsize(master, *self.pending_size)
        self.outputs.append(self._output(master, "stdout", STDOUT))
        self.stdin = Input(self.loop, master, owns_fd=False, on_full=self._input_full)

    # -- IO ------------------------------------------------------------------------
    def _emit(self, output: Output, data: bytes) -> None:
        if self.k8s:
            try:
                self.k8s.write(output.name, data)
            except OSError as e:  # ENOSPC, EIO...: keep serving the clients; say it once
                if not self.log_failed:
                    self.log.warn(f"{self.k8s.path}: cannot write the log: {e.strerror}")
                self.log_failed = True
        if self.attach:
            self.attach.broadcast(output.code, data)

    def _output_done(self, output: Output) -> None:
        if output.fd != self.master:
            self.own_fds.remove(output.fd)
            os.close(output.fd)
        self.outputs_open = sum(o.open for o in self.outputs)
        if self.outputs_open == 0 and self.proc and self.proc.state is State.REAPING:
            self._feed(ev.OutputDrained())

    def _clients_blocked(self, blocked: bool) -> None:
        for output in self.outputs:
            if blocked:
                output.pause()
            else:
                output.resume()

    def _input(self, data: bytes) -> None:
        if self.stdin:
            self.stdin.write(data)

    def _input_full(self, full: bool) -> None:
        if self.attach and full:
            self.attach.pause_input()
        elif self.attach:
            self.attach.resume_input()

    def _input_end(self) -> None:
        """A client ended its input: with ``-i`` and no ``--leave-stdin-open``, close stdin."""
        if self.stdin and self.conmon.stdin and not self.conmon.leave_stdin_open:
            self.stdin.close()

    def _reopen_log(self) -> None:
        if self.k8s:
            try:
                self.k8s.reopen()
            except OSError as e:
                self.log.warn(f"{self.k8s.path}: cannot reopen the log: {e.strerror}")

    # -- signals and the timeout ---------------------------------------------------
    def _forward(self, signum: int) -> None:
        """SIGTERM, SIGINT, SIGQUIT go to the container (to runc while it runs), as conmon's."""
        if self.proc and self.proc.state is State.RUNNING:
            self._feed(ev.KillRequested(signum))
        elif self.runtime_pid:
            os.kill(self.runtime_pid, signum)
        else:
            self.log.debug(f"{describe(signum)} with nothing to forward it to")

    def _timeout(self) -> None:
        """``--timeout``: kill the process's group (conmon's ``kill(-pgid, SIGKILL)``)."""
        if not self.proc or self.proc.state is not State.RUNNING or not self.proc.pid:
            return
        self.timed_out = True
        try:
            group = os.getpgid(self.proc.pid)
            if group > 1 and group != os.getpgrp():  # never our own group (nor init's)
                os.killpg(group, SIGKILL)
            else:
                os.kill(self.proc.pid, SIGKILL)
        except ProcessLookupError:  # ESRCH: it just exited; its exit is on its way
            pass

    # -- the core's decisions --------------------------------------------------------
    def _apply(self, effect: fx.Effect) -> None:
        if isinstance(effect, fx.ReportFailure) and not self.pid_sent:
            self._send(self.fds.sync, -1, f"{effect.step}: {effect.message}")
        super()._apply(effect)

    def _record_exit(self, code: int) -> None:
        if self.drain_timer:
            self.drain_timer.cancel()
            self.drain_timer = None
        for output in self.outputs:
            output.stop()
        if self.timed_out:
            code = -1  # conmon's exit status for a timed-out process
        if self.attach:
            self.attach.close()  # clients read EOF: all the output is theirs
            self.attach = None
        if self.k8s:
            self._close_log()
        for fd in self.inherited:  # before the exit file: ports podman reserved are free again
            try:
                os.close(fd)
            except OSError:  # EBADF: already closed (runc's --preserve-fds took nothing of ours)
                pass
        self.inherited = []
        self._write_exit_files(str(code))
        if self.conmon.exec:
            self._send(self.fds.sync, code, TIMED_OUT if self.timed_out else None)
        self.exit_recorded = True
        self._cleanup()

    def _close_log(self) -> None:
        assert self.k8s is not None
        try:
            self.k8s.close()
        except OSError as e:
            self.log.warn(f"{self.k8s.path}: cannot sync the log: {e.strerror}")
        self.k8s = None

    def _write_exit_files(self, text: str) -> None:
        o = self.conmon
        paths = [os.path.join(o.persist_dir, "exit")] if o.persist_dir else []
        paths += [os.path.join(o.exit_dir, o.cid)] if o.exit_dir else []
        for path in paths:
            try:
                exitfile.write(path, text)
            except OSError as e:
                self.log.error(f"{path}: cannot write the exit file: {e.strerror}")

    def _cleanup(self) -> None:
        """CLEANUP: once teardown calls (runc kill --all) ended, stop; podman deletes."""
        if not self.teardown_running:
            self.loop.stop()

    def _send(self, fd: int, data: int, text: str | None = None) -> None:
        try:
            pipes.send(fd, data, text)
        except OSError as e:  # EPIPE: podman went away; the exit file still tells
            self.log.warn(f"cannot tell podman {data}: {e.strerror}")

    def report_failure(self, message: str) -> None:
        """Setup failed before the runtime ran: podman reads -1 and our words."""
        if not self.pid_sent:
            self._send(self.fds.sync, -1, message)
            self.pid_sent = True

    def close(self) -> None:
        if self.watch:
            self.watch.close()
            self.watch = None
        if self.attach:
            self.attach.close()
            self.attach = None
        if self.stdin and self.stdin.owns_fd and self.stdin.fd >= 0:
            os.close(self.stdin.fd)
            self.stdin.fd = -1
        for output in self.outputs:
            output.stop()
        for fd in self.own_fds:
            os.close(fd)
        self.own_fds = []
        for fd in (self.fds.sync, self.fds.start, self.fds.attach):
            if fd >= 0:
                os.close(fd)
        self.fds = pipes.Fds()
        if self.k8s:
            self._close_log()
        super().close()
