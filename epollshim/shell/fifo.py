"""Opening the stdio FIFOs so that no open blocks and no client can hurt us.

Facts (Linux fifo(7), checked here):
* ``O_RDWR`` on a FIFO never blocks and counts as a reader and a writer, so
  the container's writes never fail with EPIPE/SIGPIPE when the client's
  reader goes away: they stall once the 64 KiB buffer is full and resume when
  a reader comes back (back-pressure, no data lost, no unbounded buffer).
* ``O_WRONLY|O_NONBLOCK`` fails with ENXIO unless a reader exists;
  ``O_RDONLY|O_NONBLOCK`` always succeeds.
* Readers see EOF only when every writer is gone, so a keep-alive writer held
  by the shim keeps a container's stdin open until "close stdin".
Non-terminal stdio is handed straight to the container (no copying through
the shim): the container gets its own blocking descriptor of the FIFO.
"""

import os
import stat

_CLOEXEC = os.O_CLOEXEC


def is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def open_output(path: str) -> tuple[int, int]:
    """(holder, container end) for an output FIFO; for a non-FIFO, (-1, O_WRONLY fd)."""
    if not is_fifo(path):
        return -1, os.open(path, os.O_WRONLY | os.O_APPEND * (path != os.devnull) | _CLOEXEC)
    holder = os.open(path, os.O_RDWR | os.O_NONBLOCK | _CLOEXEC)
    try:
        end = os.open(path, os.O_WRONLY | os.O_NONBLOCK | _CLOEXEC)  # our holder is a reader
    except OSError:  # EMFILE, ENFILE: no half-opened pair left behind
        os.close(holder)
        raise
    os.set_blocking(end, True)  # the container expects an ordinary blocking stdout
    return holder, end


def open_input(path: str) -> tuple[int, int]:
    """(reader, keep-alive writer) for the stdin FIFO; for a non-FIFO, (O_RDONLY fd, -1)."""
    if not is_fifo(path):
        return os.open(path, os.O_RDONLY | _CLOEXEC), -1
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _CLOEXEC)
    try:
        keepalive = os.open(path, os.O_WRONLY | os.O_NONBLOCK | _CLOEXEC)
    except OSError:  # EMFILE, ENFILE: no half-opened pair left behind
        os.close(reader)
        raise
    return reader, keepalive


def close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)
