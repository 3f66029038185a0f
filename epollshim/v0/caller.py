"""``epollshim run`` and ``epollshim attach``: a supervisor for people and tests.

``run`` plays the part containerd 0.x played: it makes a state directory with
the FIFOs, starts the shim in its own session (so it outlives us), connects
our stdio or terminal to the FIFOs (window-size changes go down the control
FIFO), waits for the exit FIFO to hang up and exits with the container's
status. ``attach`` reconnects to a state directory after the caller left.

Everything happens in one loop and nothing blocks: our stdin goes to the
stdin FIFO through a pump (a regular file one chunk each time the FIFO has
room) while the outputs drain, so big input and big output cannot stall each
other. Our writer of the stdin FIFO closes at our input's end, but not before
the shim holds the FIFO (bytes in a FIFO die with its last descriptor): the
shim's fd 1 is a pipe we read, which it points at /dev/null once its FIFOs
are open, so EOF on it is the event (``attach`` waits for ``pid`` instead,
with inotify: runc writes it after the shim opened its FIFOs).

Exit status: the container's (0..255), or 125 when the container never ran
or its status was not recorded (the shim said why on stderr).

State directories go under /run/epollshim (``EPOLLSHIM_STATE_BASE`` overrides
it); each holds the FIFOs, the shim's files and ``attach.json`` (the id, the
terminal mode, the shim's pid, the bundle). ``run`` removes it once the shim
has ended.
"""

import json
import os
import sys

from epollshim import lean
from epollshim.shell.console import get_winsize
from epollshim.shell.process import SpawnError, spawn
from epollshim.v0.session import (
    EXIT_SHIM_FAILED,
    Session,
    read_status,
    remove_state,
    shim_alive,
)
from epollshim.v0.spec import SetupError

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
        remove_state(state_dir)
        return EXIT_SHIM_FAILED
    except OSError as e:
        sys.stderr.write(f"epollshim run: cannot write the bundle: {e}\n")
        remove_state(state_dir)
        return EXIT_SHIM_FAILED
    session = Session(state_dir, args.tty)
    argv = lean.argv("epollshim.cli:shim_main", [*args.shim_opts, state_dir, id_])
    # The shim's fd 1 is a pipe only we read: the shim points its fd 1 at /dev/null
    # once it holds its FIFOs (or it dies), so EOF here is "the shim has its FIFOs".
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        session.shim_pid = spawn(
            argv, stdio=(devnull, ready_w, 2), cwd=bundle, new_session=True, pdeathsig=False
        )
    except SpawnError as e:
        sys.stderr.write(f"epollshim run: {e}\n")
        remove_state(state_dir)
        return EXIT_SHIM_FAILED
    finally:
        os.close(devnull)
        os.close(ready_w)
    session.ready_fd = ready_r
    # for `epollshim attach` and for tests: who runs here, and in which mode
    info = {"id": id_, "terminal": args.tty, "shim_pid": session.shim_pid, "bundle": bundle}
    with open(os.path.join(state_dir, ".attach.json.tmp"), "w") as f:
        json.dump(info, f)
    os.rename(os.path.join(state_dir, ".attach.json.tmp"), os.path.join(state_dir, "attach.json"))
    return session.run()


def attach(state_dir: str) -> int:
    try:
        with open(os.path.join(state_dir, "attach.json"), "rb") as f:
            info = json.load(f)
        terminal, shim_pid = bool(info.get("terminal")), int(info.get("shim_pid") or 0)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        sys.stderr.write(f"epollshim attach: {state_dir}: not a state dir of epollshim run: {e}\n")
        return EXIT_SHIM_FAILED
    try:
        session = Session(state_dir, terminal)
    except OSError as e:
        sys.stderr.write(f"epollshim attach: {state_dir}: {e.strerror}\n")
        return EXIT_SHIM_FAILED
    # Our exit reader is open: if the shim lives now, its end hangs the FIFO up. If it
    # is already gone, no hang-up will ever come (a FIFO reader that never saw a
    # writer gets no HUP): answer at once, and remove what nobody needs any more.
    if not shim_alive(shim_pid, state_dir):
        session.close()
        status = read_status(state_dir)
        remove_state(state_dir)
        return EXIT_SHIM_FAILED if status is None else status
    return session.run()
