"""``epollshim-conmon``: the conmon-compatible monitor's entry point.

Sequence (conmon 2.1.6 ``conmon.c``): parse the options; block on the start pipe (podman
writes it once the monitor is in its cgroup); fork, and let the process podman started
write ``--conmon-pidfile`` with the child's pid and exit 0 (podman waits for that exit,
then reads the sync pipe); the child starts a new session, points its stdio at
/dev/null, runs the container's process (``Monitor``), and at the end runs
``--exit-command`` and waits for it. ``--sync`` skips the fork.

Rules:
* ``--version`` is answered before anything is imported (the lean launcher answers it in
  /bin/sh already; this path serves pip's console script and direct calls).
* Every failure is one line: on the sync pipe as ``{"data": -1, "message": ...}`` when
  podman gave one (podman shows it as the error of ``run``/``exec``, in every terminal
  mode), else on stderr. With a sync pipe the process podman waits for exits 0 even then,
  as conmon's does: podman learns the outcome from the pipe, not from that exit status.
* ``--trace-states[=text|json]`` (ours) keeps stderr open and writes one line per state
  transition there; podman's own stderr, so run podman with stderr to a file to see it.
"""

import os
import sys

# mypy treats any TYPE_CHECKING as true; at run time these come in lazily, after --version.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from epollshim.conmon.options import Options
    from epollshim.conmon.pipes import Fds

EXIT_OK, EXIT_SETUP, EXIT_USAGE, EXIT_RUNTIME, EXIT_INTERNAL = 0, 1, 2, 3, 4


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--version"]:
        from epollshim.conmon.version import TEXT

        os.write(1, TEXT.encode())
        return 0
    from epollshim import lean

    lean.reexec("epollshim.conmon.main:main", argv)
    return monitor_main(argv)


def monitor_main(argv: list[str]) -> int:
    inherited = _inherited_fds()
    from epollshim.conmon import options, pipes
    from epollshim.conmon.pipes import Fds

    try:
        fds = Fds(*(pipes.from_env(n) for n in (pipes.SYNC, pipes.START, pipes.ATTACH)))
    except pipes.PipeError as e:
        return _refuse(Fds(), str(e))
    try:
        opts = options.parse(argv)
        if opts.exec_attach and fds.attach < 0:
            raise options.UsageError("--exec-attach specified but _OCI_ATTACHPIPE was not")
    except options.UsageError as e:
        return _refuse(fds, str(e))
    if opts.version:
        from epollshim.conmon.version import TEXT

        os.write(1, TEXT.encode())
        return 0
    pipes.wait(fds.start)
    if not opts.exec_attach and fds.start >= 0:
        os.close(fds.start)  # an exec session with --exec-attach waits for a second message
        fds.start = -1
    if not opts.sync:
        _daemonize(opts.conmon_pidfile)
    try:
        os.setsid()
    except PermissionError:  # EPERM: already a session leader (--sync under a leader)
        pass
    _detach_stdio(keep_stderr=bool(opts.trace))
    others = [fd for fd in inherited if fd not in (fds.sync, fds.start, fds.attach)]
    return _monitor(opts, fds, others)


def _refuse(fds: "Fds", message: str) -> int:
    """Report a bad command line where podman looks: the sync pipe, else stderr."""
    from epollshim.conmon import pipes

    line = f"epollshim-conmon: {message}"
    if fds.sync < 0:
        sys.stderr.write(line + "\n")
        return EXIT_USAGE
    try:
        pipes.wait(fds.start)  # let podman's start message land before we answer
        pipes.send(fds.sync, -1, line)
    except OSError as e:  # EPIPE: podman is gone; stderr is all that is left
        sys.stderr.write(f"{line} (and the sync pipe failed: {e.strerror})\n")
        return EXIT_USAGE
    return EXIT_OK


def _daemonize(pidfile: str) -> None:
    """Fork; the parent writes ``pidfile`` (the child's pid) and exits 0."""
    pid = os.fork()
    if pid == 0:
        return
    code = 0
    if pidfile:
        try:
            tmp = f"{pidfile}.{pid}.tmp"
            with open(tmp, "w") as f:
                f.write(str(pid))
            os.rename(tmp, pidfile)
        except OSError as e:
            sys.stderr.write(f"epollshim-conmon: {pidfile}: cannot write: {e.strerror}\n")
            code = EXIT_SETUP
    os._exit(code)


def syslog_fd(path: str = "/dev/log") -> int:
    """A datagram socket connected to syslog at ``path`` (``--syslog``), or -1 when nothing
    listens there: then, as syslog(3) does, the messages are dropped."""
    from _socket import SOCK_DGRAM

    from epollshim.shell import sock

    s = sock.Socket(sock.AF_UNIX, SOCK_DGRAM)
    try:
        s.connect(path)
    except OSError:  # ENOENT, ECONNREFUSED: no syslog daemon here
        s.close()
        return -1
    return int(s.detach())


def _detach_stdio(*, keep_stderr: bool) -> None:
    """Stdio to /dev/null (podman waits for its pipes to close), stderr kept for traces."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1) if keep_stderr else (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _inherited_fds() -> list[int]:
    """The fds above 2 we were started with (podman's preserved fds and reserved ports:
    conmon closes them before it writes the exit file, so that they can be reused)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.fstat(fd):  # listdir's own directory fd is closed again
                fds.append(fd)
        except OSError:  # EBADF: that directory fd
            pass
    return fds


def _monitor(opts: "Options", fds: "Fds", inherited: list[int]) -> int:
    from epollshim.conmon import exitcmd
    from epollshim.conmon.monitor import Monitor
    from epollshim.conmon.options import LOG_LEVELS
    from epollshim.log import Log
    from epollshim.v0.spec import SetupError

    log = Log()
    level = LOG_LEVELS.get(opts.log_level, "warn")
    log.add_sink(2, "text", level)
    if opts.syslog and (fd := syslog_fd()) >= 0:
        log.add_sink(fd, "text", level)
    trace = None
    if opts.trace:
        from epollshim.trace import make_tracer

        trace = make_tracer(opts.trace)
    monitor = Monitor(opts, fds, log, trace)
    monitor.inherited = inherited
    try:
        code = monitor.run()
    except SetupError as e:
        log.error(str(e))
        monitor.report_failure(f"epollshim-conmon: {e}")
        code = EXIT_SETUP
    except Exception as e:  # a bug: its traceback and the recent transitions in the log
        import traceback

        where = "".join(traceback.format_exception(e)).strip().replace("\n", " | ")
        log.error(f"internal error: {where}")
        for record in monitor.recorder.records:
            log.error(f"flight recorder: {record!r}")
        monitor.report_failure(f"epollshim-conmon: internal error: {e!r}")
        code = EXIT_INTERNAL
    finally:
        monitor.close()
    if opts.exit_command and monitor.runtime_started:
        exitcmd.run(opts.exit_command, opts.exit_args, opts.exit_delay)
    return code
