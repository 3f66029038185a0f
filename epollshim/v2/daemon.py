"""The long-running shim daemon: one loop serving ttrpc, reaping, relaying, publishing.

Order of start-up (spec 2.4): log on fd 2 (the bundle's ``log`` FIFO), signals,
subreaper, config (``EPOLLSHIM_CONFIG``, yaml imported only then), tracing
(``EPOLLSHIM_TRACE=text|json``, to fd 2), the event publisher, the Task service, then the
listening socket handed over by ``start`` (``-fd N``). Everything else happens in loop
callbacks.

Rules:
- SIGCHLD: reap everything, route each pid through the ExitRouter (runc calls and
  container processes alike). SIGTERM/SIGINT: shut down if no container is left.
- Every ttrpc call kicks the event publisher: containerd talking to us means it is
  back, so queued events go now instead of after the publisher's back-off.
- Shutdown (the last container deleted): stop accepting, remove the socket, flush
  queued events (until the queue is empty, or 1 s without answer when containerd is
  unreachable), exit 0 with ``os._exit`` (no interpreter teardown).
"""

import os
import sys

from epollshim.core.exits import ExitRouter
from epollshim.core.machine import FlightRecorder
from epollshim.log import Log
from epollshim.shell import sock as sockets
from epollshim.shell.loop import Loop
from epollshim.shell.process import become_subreaper, reap_into
from epollshim.shell.signals import SIGCHLD, SIGINT, SIGTERM, Signals, describe
from epollshim.v2.container import Context
from epollshim.v2.events import Publisher
from epollshim.v2.main import Flags, UsageError, parse
from epollshim.v2.server import Call, Server
from epollshim.v2.service import TaskService


class Daemon:
    def __init__(self, flags: Flags, listener: sockets.Socket, log: Log) -> None:
        self.flags = flags
        self.log = log
        self.loop = Loop(on_error=self._callback_failed)
        self.recorder = FlightRecorder()
        self.router = ExitRouter()
        self.socket_path = flags.get("socket")
        self.publisher = Publisher(
            self.loop, log, os.environ.get("TTRPC_ADDRESS", ""), flags.get("namespace")
        )
        self.ctx = Context(self.loop, log, self.router, self.publisher)
        self.ctx.namespace = flags.get("namespace")
        self.ctx.observers.append(self.recorder)
        self.service = TaskService(self.ctx, self.shutdown)
        self.server = Server(self.loop, log, listener, self._dispatch)
        self.stopping = False

    def _dispatch(self, call: Call) -> None:
        self.publisher.kick()
        self.service.dispatch(call)

    def _callback_failed(self, error: Exception) -> None:
        """A bug hit one callback: say so with the recent transitions, keep serving the rest."""
        import traceback  # only on this path: it costs memory

        where = "".join(traceback.format_exception(error)).strip().replace("\n", " | ")
        self.log.error(f"internal error, continuing: {where}")
        for record in self.recorder.records:
            self.log.error(f"flight recorder: {record!r}")

    def configure(self, config: dict[str, dict[str, object]] | None) -> None:
        if config is not None:
            self.ctx.drain_deadline = float(config["drain"]["deadline"])  # type: ignore[arg-type]
            self.ctx.bufsize = int(config["io"]["buffer_size"])  # type: ignore[call-overload]
            self.ctx.runc_path = str(config["runtime"]["path"])
        trace = os.environ.get("EPOLLSHIM_TRACE", "")
        if trace in ("text", "json"):
            from epollshim.trace import make_tracer

            self.ctx.observers.append(make_tracer(trace, 2))

    def setup_signals(self) -> None:
        signals = Signals(self.loop, lambda s: self.log.debug(f"ignoring {describe(s)}"))
        signals.on(SIGCHLD, lambda s: reap_into(self.router))
        signals.on(SIGTERM, self._terminate)
        signals.on(SIGINT, self._terminate)
        become_subreaper()

    def _terminate(self, signum: int) -> None:
        if self.service.containers:
            self.log.warn(f"{describe(signum)}: containers remain, not shutting down")
        else:
            self.shutdown()

    def shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.log.debug("shutting down")
        self.server.stop_accepting()
        try:
            os.unlink(self.socket_path)
        except OSError:  # ENOENT: `delete` or an operator removed it already
            pass
        self.publisher.flush(self.loop.stop)

    def run(self) -> int:
        self.loop.run()
        self.service.close()
        self.server.close()
        self.publisher.close()
        return 0


def main() -> None:
    """The daemon as its own program (``start`` forks it instead when it can: see there)."""
    try:
        flags = parse(sys.argv[1:])
        fd = int(flags.get("fd", "-1"))
    except (UsageError, ValueError) as e:
        os.write(2, f"epollshim daemon: bad arguments: {e}\n".encode())
        sys.exit(2)
    os._exit(serve(flags, fd))


def serve(flags: Flags, fd: int) -> int:
    """Serve the listening socket ``fd`` until shutdown; the exit status.

    The caller ends the process with ``os._exit(status)``: everything is closed and every
    log line went out with os.write, so the interpreter's teardown (~10-30 ms of CPU,
    right when containerd runs our ``delete`` next to it) is skipped.
    """
    log = Log()
    log.add_sink(2, "json", "debug" if flags.flag("debug") else "info")
    config = None
    path = os.environ.get("EPOLLSHIM_CONFIG")
    if path:
        from epollshim import config as config_module

        try:
            config = config_module.load(path)
        except config_module.ConfigError as e:
            log.error(str(e))
            return 1
    listener = sockets.from_fd(fd)
    os.set_inheritable(fd, False)
    daemon = Daemon(flags, listener, log)
    daemon.configure(config)
    daemon.setup_signals()
    log.debug(f"serving {flags.get('socket')} for namespace {flags.get('namespace')}")
    return daemon.run()
