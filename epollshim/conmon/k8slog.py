"""The k8s-file log: one ``STAMP STREAM TAG TEXT`` line per line of output.

Format (conmon 2.1.6 ``ctr_logging.c``, read by ``podman logs`` and the CRI):
``2023-01-01T12:00:00.123456789+01:00 stdout F text`` where STAMP is local time with
nanoseconds and the UTC offset, STREAM is ``stdout`` or ``stderr``, TAG is ``F`` for a
whole line and ``P`` for a partial one (the end of a chunk that had no newline; a newline
is added to the file, not to the text). One timestamp for all the lines of one read.

Rules:
* ``--log-size-max N``: before a line would take the file past N bytes, the file is
  reopened empty (``reopen``), as conmon does; ``--log-global-size-max N`` stops logging
  once N bytes went to the log in total. Sizes count what conmon counts.
* ``reopen`` (also the ctl FIFO's message 2) syncs the file, then replaces it with an empty
  one (``PATH.tmp`` renamed over ``PATH``): whoever asked has moved the old one away.
* Writes are plain blocking writes to a regular file, in the loop; a failed write is
  reported once per episode by the caller and never ends the monitor.
"""

import os
import time

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def stamp(now_ns: int) -> str:
    """conmon's timestamp: local time, nanoseconds, ``+HH:MM`` offset."""
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    tm = time.localtime(seconds)
    off = tm.tm_gmtoff
    sign = "-" if off < 0 else "+"
    off = abs(off)
    return (
        f"{tm.tm_year:d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:{tm.tm_min:02d}:"
        f"{tm.tm_sec:02d}.{nanos:09d}{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"
    )


def lines(data: bytes) -> list[bytes]:
    """``data`` cut after each newline (only ``\\n``, unlike ``bytes.splitlines``)."""
    parts = data.split(b"\n")
    whole = [part + b"\n" for part in parts[:-1]]
    return [*whole, parts[-1]] if parts[-1] else whole


class K8sLog:
    def __init__(
        self, path: str, *, size_max: int = -1, global_max: int = -1, sync: bool = True
    ) -> None:
        self.path = path
        self.size_max = size_max
        self.global_max = global_max
        self.sync_on_close = sync
        self.fd = os.open(path, _FLAGS, 0o600)
        self.written = 0  # since the last reopen, as conmon counts it
        self.total = 0

    def write(self, stream: str, data: bytes) -> None:
        """Log one chunk of ``stream`` (``stdout``/``stderr``); OSError if the write failed.

        A chunk that fits under both limits (always, without them) is formatted by
        ``bytes.replace``, all its lines at once; else line by line (``_write_lines``), which
        reopens or stops between two lines. Both write the same bytes."""
        prefix = f"{stamp(time.time_ns())} {stream} ".encode()
        cut = data.rfind(b"\n") + 1  # data[:cut]: the whole lines, data[cut:]: a partial one
        head = prefix + b"F "
        out = [head, data[: cut - 1].replace(b"\n", b"\n" + head), b"\n"] if cut else []
        if cut < len(data):
            out += (prefix, b"P ", data[cut:], b"\n")
        chunk = b"".join(out)  # its size: bytes.count of the newlines takes ~5x the replace
        size = len(chunk)
        if (self.size_max <= 0 or self.written + size <= self.size_max) and (
            self.global_max <= 0 or self.total + size <= self.global_max
        ):
            self.written += size
            self.total += size
            self._flush([chunk])
            return
        self._write_lines(prefix, data)

    def _write_lines(self, prefix: bytes, data: bytes) -> None:
        out: list[bytes] = []
        for line in lines(data):
            out_line = self._line(prefix, line)
            if out_line is None:
                break
            if self.size_max > 0 and self.written + len(out_line) > self.size_max:
                self._flush(out)
                self.reopen()
            out.append(out_line)
            self.written += len(out_line)
            self.total += len(out_line)
        self._flush(out)

    def _line(self, prefix: bytes, line: bytes) -> bytes | None:
        if 0 < self.global_max <= self.total:
            return None
        if line.endswith(b"\n"):
            return prefix + b"F " + line
        return prefix + b"P " + line + b"\n"

    def _flush(self, out: list[bytes]) -> None:
        data = b"".join(out)
        out.clear()
        while data:
            data = data[os.write(self.fd, data) :]

    def reopen(self) -> None:
        """Sync, then start an empty file under the same name (conmon's reopen)."""
        self.sync()
        os.close(self.fd)
        tmp = self.path + ".tmp"
        self.fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.rename(tmp, self.path)
        self.written = 0

    def sync(self) -> None:
        if self.sync_on_close:
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self.fd)
                self.fd = -1
