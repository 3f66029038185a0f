"""Log lines without the ``logging`` module (it costs ~1.2 MB per shim).

Rule: one line per message, never more. JSON lines carry ``level``, ``msg``
and an RFC 3339 ``time`` (the shape containerd 0.2.x reads from
``shim-log.json``); text lines are ``epollshim: LEVEL: msg`` for people.
A log write that fails (full disk, closed pipe) is dropped: logging must
never take the shim down.
"""

import os
import time

from epollshim import minijson

LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}


def rfc3339(now: float | None = None) -> str:
    now = time.time() if now is None else now
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{base}.{int((now % 1) * 1e9):09d}Z"


class Log:
    """Writes each message to a set of sinks: (fd, format) pairs."""

    def __init__(self) -> None:
        self.sinks: list[tuple[int, str, int]] = []
        self.floor = LEVELS["error"] + 1  # the lowest level any sink writes

    def add_sink(self, fd: int, fmt: str, level: str = "info") -> None:
        self.sinks.append((fd, fmt, LEVELS[level]))
        self.floor = min(self.floor, LEVELS[level])

    def enabled(self, level: str) -> bool:
        """Whether a message of ``level`` would be written anywhere: a caller whose message
        is costly to make (a request's repr, on every call) asks first."""
        return LEVELS[level] >= self.floor

    def open_file(self, path: str, fmt: str = "json", level: str = "info") -> None:
        """Append to ``path`` (O_APPEND|O_SYNC, 0666: the 0.2.x shim-log.json contract)."""
        flags = os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_SYNC | os.O_CLOEXEC
        self.add_sink(os.open(path, flags, 0o666), fmt, level)

    def __call__(self, level: str, msg: str) -> None:
        rank = LEVELS[level]
        for fd, fmt, threshold in self.sinks:
            if rank < threshold:
                continue
            if fmt == "json":
                line = minijson.dumps({"level": level, "msg": msg, "time": rfc3339()})
            else:
                line = f"epollshim: {level}: {msg}"
            try:
                os.write(fd, line.encode() + b"\n")
            except OSError:  # EPIPE, ENOSPC, EAGAIN...: a lost log line beats a dead shim
                pass

    def debug(self, msg: str) -> None:
        self("debug", msg)

    def info(self, msg: str) -> None:
        self("info", msg)

    def warn(self, msg: str) -> None:
        self("warn", msg)

    def error(self, msg: str) -> None:
        self("error", msg)
