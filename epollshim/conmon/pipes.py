"""The pipes podman hands a monitor: ``_OCI_SYNCPIPE``, ``_OCI_STARTPIPE``, ``_OCI_ATTACHPIPE``.

Facts (podman 4.3 ``libpod/oci_conmon_common.go``, conmon 2.1.6 ``parent_pipe_fd.c``):
* Each variable names an inherited fd; podman makes them SOCK_SEQPACKET socketpairs. They
  are made close-on-exec at once, so runc and the exit command never inherit them.
* The start pipe: podman writes one byte once it has moved the monitor into its cgroup;
  the monitor blocks on it before it forks or starts anything. For an exec session with
  ``--exec-attach`` a second message says "the client is attached: run the process"
  (EOF counts too: conmon proceeds on any read result).
* The sync pipe carries one JSON line per message, ``{"data": N}`` or
  ``{"data": N, "message": "..."}`` (API version 1): the container's pid after ``runc
  create``/``exec``, -1 and runc's words when that failed, and for an exec session its
  exit status at the end. The attach pipe gets ``{"data": 0}`` once the attach socket
  listens. Podman reads each with a line reader.
Rule: a failed write here is logged by the caller, never fatal: podman then reports a
timeout or EOF of its own, and the monitor must still record the exit.
"""

import os

from epollshim import minijson

SYNC, START, ATTACH = "_OCI_SYNCPIPE", "_OCI_STARTPIPE", "_OCI_ATTACHPIPE"


class Fds:
    """The ``_OCI_*PIPE`` fds podman gave (-1 when absent)."""

    __slots__ = ("attach", "start", "sync")

    def __init__(self, sync: int = -1, start: int = -1, attach: int = -1) -> None:
        self.sync, self.start, self.attach = sync, start, attach


class PipeError(Exception):
    """A ``_OCI_*PIPE`` variable that does not name an open fd."""


def from_env(name: str) -> int:
    """The fd named by ``$name`` (made close-on-exec), or -1 when it is not set."""
    value = os.environ.get(name)
    if value is None:
        return -1
    try:
        fd = int(value)
        os.set_inheritable(fd, False)
    except (ValueError, OSError) as e:  # EBADF: not an open fd
        raise PipeError(f"unable to parse {name}={value!r}: {e}") from e
    return fd


def message(data: int, text: str | None = None) -> bytes:
    body: dict[str, object] = {"data": data}
    if text is not None:
        body["message"] = text
    return minijson.dumps(body).encode() + b"\n"


def send(fd: int, data: int, text: str | None = None) -> None:
    """Write one message to ``fd`` (no-op for -1); OSError if the reader is gone."""
    if fd < 0:
        return
    payload = message(data, text)
    while payload:
        payload = payload[os.write(fd, payload) :]


def wait(fd: int) -> None:
    """Block until ``fd`` has a message (or EOF); no-op for -1."""
    if fd >= 0:
        os.read(fd, 8192)
