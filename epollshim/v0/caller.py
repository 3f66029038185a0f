"""``epollshim run`` and ``epollshim attach``: a supervisor for people and tests.

``run`` plays the part containerd 0.x played: it makes a state directory with
the FIFOs, starts the shim in its own session (so it outlives us), connects
our stdio or terminal to the FIFOs (window-size changes go down the control
FIFO), waits for the exit FIFO to hang up and exits with the container's
status. ``attach`` reconnects to a state directory after the caller left.

Exit status: the container's (0..255), or 125 when the container never ran
or its status was not recorded (the shim said why on stderr).

State directories go under /run/epollshim (``EPOLLSHIM_STATE_BASE`` overrides
it); each holds the FIFOs, the shim's files and ``attach.json`` (the id, the
terminal mode, the shim's pid, the bundle). ``run`` removes it once the shim
has ended.
"""

import json
import os
import signal
import sys
import termios
import tty

from epollshim import lean
from epollshim.shell.console import get_winsize
from epollshim.shell.loop import Loop
from epollshim.shell.process import spawn
from epollshim.shell.pump import Pump
from epollshim.shell.signals import Signals
from epollshim.v0.spec import SetupError

EXIT_SHIM_FAILED = 125
STATE_BASE = "/run/epollshim"
FIFOS = ("exit", "control", "stdin", "stdout", "stderr")

RUN_USAGE = (
    "epollshim run [--tty] [--bundle DIR] [--trace-states[=text|json]] "
    "[--runtime PATH] [--runtime-root DIR] [--config FILE] -- CMD..."
)


class RunArgs:
    def __init__(self) -> None:
        self.tty = False
        self.bundle = ""
        self.shim_opts: list[str] = []
        self.command: list[str] = []


def parse_run(argv: list[str]) -> RunArgs:
    args = RunArgs()
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if arg == "--":
            args.command = list(it)
        elif arg in ("-t", "--tty"):
            args.tty = True
        elif name == "--bundle":
            args.bundle = value if eq else next(it, "")
        elif name == "--trace-states":
            args.shim_opts.append(arg)
        elif name in ("--runtime", "--runtime-root", "--config"):
            args.shim_opts += [name, value if eq else next(it, "")]
        else:
            raise SystemExit(f"epollshim run: unexpected argument {arg!r}\nusage: {RUN_USAGE}")
    return args


def main(argv: list[str]) -> int:
    if argv[0] == "attach":
        if len(argv) != 2:
            sys.stderr.write("usage: epollshim attach STATE_DIR\n")
            return 2
        return attach(os.path.abspath(argv[1]))
    return run(parse_run(argv[1:]))


def _prepare_bundle(args: RunArgs, state_dir: str, size: tuple[int, int] | None) -> str:
    """The bundle the shim runs: ours (busybox) or an overlay of --bundle with CMD/--tty."""
    from epollshim.bundle import write_bundle

    target = os.path.join(state_dir, "bundle")
    if not args.bundle:
        write_bundle(target, args.command or ["sh"], terminal=args.tty)
    else:
        from epollshim.v0.spec import read_json

        src = os.path.abspath(args.bundle)
        if not os.path.isdir(src):
            raise SetupError(f"{src}: bundle directory not found")
        config = read_json(os.path.join(src, "config.json"), "OCI config")
        root = config.setdefault("root", {})
        assert isinstance(root, dict)
        root["path"] = os.path.join(src, root.get("path", "rootfs"))
        process = config.setdefault("process", {})
        assert isinstance(process, dict)
        process["terminal"] = args.tty
        if args.command:
            process["args"] = args.command
        os.mkdir(target, 0o700)
        with open(os.path.join(target, "config.json"), "w") as f:
            json.dump(config, f)
    if size:
        path = os.path.join(target, "config.json")
        with open(path, "rb") as f:
            config = json.load(f)
        config["process"]["consoleSize"] = {"width": size[0], "height": size[1]}
        with open(path, "w") as f:
            json.dump(config, f)
    return target


def run(args: RunArgs) -> int:
    base = os.environ.get("EPOLLSHIM_STATE_BASE") or STATE_BASE
    os.makedirs(base, mode=0o700, exist_ok=True)
    id_ = "epollshim-" + os.urandom(6).hex()
    state_dir = os.path.join(base, id_)
    os.mkdir(state_dir, 0o700)
    for name in FIFOS:
        os.mkfifo(os.path.join(state_dir, name), 0o600)
    size = get_winsize(0) if args.tty and os.isatty(0) else None
    try:
        bundle = _prepare_bundle(args, state_dir, size)
    except SetupError as e:
        sys.stderr.write(f"epollshim run: {e}\n")
        _remove_state(state_dir)
        return EXIT_SHIM_FAILED
    except OSError as e:
        sys.stderr.write(f"epollshim run: cannot write the bundle: {e}\n")
        _remove_state(state_dir)
        return EXIT_SHIM_FAILED
    session = Session(state_dir, args.tty)
    argv = lean.argv("epollshim.cli:shim_main", [*args.shim_opts, state_dir, id_])
    devnull = os.open(os.devnull, os.O_RDWR)
    session.shim_pid = spawn(
        argv, stdio=(devnull, devnull, 2), cwd=bundle, new_session=True, pdeathsig=False
    )
    os.close(devnull)
    # for `epollshim attach` and for tests: who runs here, and in which mode
    info = {"id": id_, "terminal": args.tty, "shim_pid": session.shim_pid, "bundle": bundle}
    with open(os.path.join(state_dir, ".attach.json.tmp"), "w") as f:
        json.dump(info, f)
    os.rename(os.path.join(state_dir, ".attach.json.tmp"), os.path.join(state_dir, "attach.json"))
    return session.run()


def attach(state_dir: str) -> int:
    try:
        with open(os.path.join(state_dir, "attach.json"), "rb") as f:
            terminal = bool(json.load(f).get("terminal"))
    except (OSError, ValueError):
        terminal = False
    status = _read_status(state_dir)
    if status is not None:
        return status
    return Session(state_dir, terminal).run()


def _read_status(state_dir: str) -> int | None:
    try:
        with open(os.path.join(state_dir, "exitStatus"), "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _remove_state(state_dir: str) -> None:
    import shutil

    shutil.rmtree(state_dir, ignore_errors=True)


class Session:
    """Our stdio (or terminal) connected to a state directory's FIFOs until the shim ends."""

    def __init__(self, state_dir: str, terminal: bool) -> None:
        self.state_dir = state_dir
        self.terminal = terminal
        self.loop = Loop()
        self.shim_pid = 0
        self.shim_code: int | None = None
        self.shim_gone = False
        self.outputs = 0
        self.stdin_writer = -1
        fd = self._open
        self.exit_fd = fd("exit", os.O_RDONLY | os.O_NONBLOCK)
        self.control = fd("control", os.O_RDWR | os.O_NONBLOCK)
        self.readers = [fd("stdout", os.O_RDONLY | os.O_NONBLOCK)]
        if not terminal:
            self.readers.append(fd("stderr", os.O_RDONLY | os.O_NONBLOCK))
        # O_RDWR: opens at once, and our writes wait in the pipe (no EPIPE) until
        # the shim has opened its reader; closing it is "the client's writer left".
        self.stdin_writer = fd("stdin", os.O_RDWR | os.O_NONBLOCK)

    def _open(self, name: str, flags: int) -> int:
        return os.open(os.path.join(self.state_dir, name), flags | os.O_CLOEXEC)

    def run(self) -> int:
        signals = Signals(self.loop, lambda s: None)
        signals.on(signal.SIGCHLD, lambda s: self._check_shim())
        signals.on(signal.SIGWINCH, lambda s: self._send_size())
        self.loop.add_reader(self.exit_fd, self._exit_hup)
        for src, dst in zip(self.readers, (1, 2), strict=False):
            self.outputs += 1
            Pump(self.loop, src, dst, on_eof=self._output_done).start()
        self._connect_stdin()
        saved = None
        if self.terminal and os.isatty(0):
            saved = termios.tcgetattr(0)
            tty.setraw(0)
            self._send_size()
        try:
            self.loop.run()
        finally:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, saved)
        status = _read_status(self.state_dir)
        if self.shim_pid and self.shim_code is None:
            _, raw = os.waitpid(self.shim_pid, 0)
            self.shim_code = os.waitstatus_to_exitcode(raw)
        _remove_state(self.state_dir)  # the shim has ended: nobody needs the FIFOs now
        return EXIT_SHIM_FAILED if status is None else status

    def _connect_stdin(self) -> None:
        try:
            self.loop.add_reader(0, self._stdin_ready)
        except (PermissionError, OSError):  # EPERM: a regular file or /dev/null; EBADF: closed
            self._copy_file_stdin()

    def _copy_file_stdin(self) -> None:
        """Stdin that epoll cannot watch (a file): copy it with blocking writes."""
        os.set_blocking(self.stdin_writer, True)
        try:
            while data := os.read(0, 65536):
                os.write(self.stdin_writer, data)
        except OSError:  # EBADF (no stdin at all) or EPIPE: nothing more to send
            pass
        self._close_stdin()

    def _stdin_ready(self) -> None:
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(0)
            self._close_stdin()
            return
        os.set_blocking(self.stdin_writer, True)
        try:
            os.write(self.stdin_writer, data)
        except OSError:  # the shim is gone
            self.loop.remove_reader(0)

    def _close_stdin(self) -> None:
        # Bytes in a FIFO die with its last descriptor: if we closed ours before the
        # shim opened its reader, our input would be lost. The shim opens stdin
        # before runc writes ``pid``, so wait for that file (or the shim's end).
        if not self.shim_gone and not os.path.exists(os.path.join(self.state_dir, "pid")):
            self.loop.call_later(0.01, self._close_stdin)
            return
        if self.stdin_writer >= 0:
            os.close(self.stdin_writer)
            self.stdin_writer = -1
        self._control(b"0 0 0\n")

    def _send_size(self) -> None:
        if self.terminal and os.isatty(0):
            cols, rows = get_winsize(0)
            self._control(f"1 {cols} {rows}\n".encode())

    def _control(self, message: bytes) -> None:
        try:
            os.write(self.control, message)
        except OSError:  # the FIFO is full or gone: the shim has ended
            pass

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
        self.shim_gone = True
        self.loop.remove_reader(0)
        if self.outputs == 0:
            self.loop.stop()

    def _output_done(self, pump: Pump) -> None:
        self.outputs -= 1
        if self.outputs == 0 and self.shim_gone:
            self.loop.stop()
