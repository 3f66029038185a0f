"""epollshim.log: which levels reach which sink, and ``enabled`` agreeing with it."""

from __future__ import annotations

import os

from epollshim.log import Log


def _written(r: int) -> list[str]:
    os.set_blocking(r, False)
    try:
        return os.read(r, 1 << 16).decode().splitlines()
    except BlockingIOError:
        return []


def test_enabled_says_what_some_sink_would_write() -> None:
    log = Log()
    assert not log.enabled("error")  # no sink: nothing is written
    r_info, w_info = os.pipe()
    r_debug, w_debug = os.pipe()
    try:
        log.add_sink(w_info, "text", "info")
        assert not log.enabled("debug")
        log.debug("hidden")
        log.info("shown")
        assert _written(r_info) == ["epollshim: info: shown"]
        log.add_sink(w_debug, "text", "debug")
        assert log.enabled("debug") and log.enabled("warn")
        log.debug("now shown")
        assert _written(r_debug) == ["epollshim: debug: now shown"]
        assert _written(r_info) == []
    finally:
        for fd in (r_info, w_info, r_debug, w_debug):
            os.close(fd)
