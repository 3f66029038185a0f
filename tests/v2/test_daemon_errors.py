"""A bug in one callback must not take a multi-container daemon down with it."""

import os

from epollshim.core import events as ev
from epollshim.core.machine import Process
from epollshim.log import Log
from epollshim.shell import sock
from epollshim.v2.daemon import Daemon
from epollshim.v2.main import parse


def test_failing_callback_is_logged_with_the_flight_recorder_and_the_loop_goes_on(
    tmp_path: os.PathLike[str],
) -> None:
    logfile = os.path.join(tmp_path, "log")
    log = Log()
    log.open_file(logfile, "json", "debug")
    listener = sock.unix()
    flags = parse(["-namespace", "ns", "-id", "c1", "-socket", os.path.join(tmp_path, "s")])
    daemon = Daemon(flags, listener, log)
    proc = Process("c1", init=True, drain_deadline=1.0, observers=daemon.ctx.observers)
    proc.handle(ev.PidKnown(4242), 0.0)  # one transition in the recorder

    calls = []

    def buggy() -> None:
        calls.append("buggy")
        raise KeyError("no such thing")

    daemon.loop.call_later(0, buggy)
    daemon.loop.call_later(0.01, lambda: (calls.append("after"), daemon.loop.stop()))
    daemon.loop.run()

    assert calls == ["buggy", "after"]
    with open(logfile) as f:
        text = f.read()
    assert "internal error, continuing" in text and "KeyError" in text
    assert "flight recorder" in text and "PidKnown(pid=4242)" in text
    daemon.server.close()
    daemon.publisher.close()
    daemon.loop.close()
    listener.close()
