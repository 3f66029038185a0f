"""``--trace-states``: an observer that prints every transition, one line each.

text: ``epollshim: trace: init pid=123 RUNNING -> REAPING on ProcessExited(status=768)``
json: ``{"time": ..., "name": "init", "pid": 123, "from": "RUNNING", "to": "REAPING",
        "event": "ProcessExited", "detail": {...}, "effects": [...]}``
"""

import os
import time

from epollshim import minijson
from epollshim.core.machine import Observer, Transition


def _fields(record: object) -> dict[str, object]:
    slots: tuple[str, ...] = getattr(record, "__slots__", ())
    return {name: getattr(record, name) for name in slots}


def make_tracer(fmt: str, fd: int = 2) -> Observer:
    def trace(t: Transition) -> None:
        if fmt == "json":
            line = minijson.dumps(
                {
                    "time": time.time(),
                    "name": t.name,
                    "pid": t.pid,
                    "from": str(t.old),
                    "to": str(t.new),
                    "event": type(t.event).__name__,
                    "detail": _fields(t.event),
                    "effects": [type(e).__name__ for e in t.effects],
                }
            )
        else:
            effects = ", ".join(repr(e) for e in t.effects)
            line = (
                f"epollshim: trace: {t.name} pid={t.pid} {t.old} -> {t.new}"
                f" on {t.event!r} => [{effects}]"
            )
        try:
            os.write(fd, line.encode() + b"\n")
        except OSError:  # the reader of our stderr went away: tracing is best effort
            pass

    return trace
