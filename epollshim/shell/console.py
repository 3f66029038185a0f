"""The console socket: how runc hands us the pty master, and resizing it.

Facts (runc 1.1, checked here): with ``--console-socket PATH`` runc connects
to PATH and sends one message whose data is the slave's name and whose
ancillary data is one SCM_RIGHTS fd, the pty master. It does so before it
writes the pid file, so once ``runc create``/``exec`` exited 0 the connection
is already queued in the listen backlog and a non-blocking accept finds it.
The 108-byte ``sun_path`` limit is why the socket lives in a short temp dir.
A front end may instead take the master as it comes (accept when the listener is
readable, ``receive_master`` once the connection is): runc sends it before the process
runs, so a size set then is the size the process starts with (conmon does this).
"""

import fcntl
import os

from epollshim.shell import sock


class ConsoleError(ValueError):
    """What came on the console socket is not one pty master (a ValueError, so that a
    caller handling bad values need not import this module for a terminal it may not have)."""


class ConsoleSocket:
    def __init__(self) -> None:
        # mkdtemp without importing tempfile (and random, shutil...): 0700, fresh name
        tmp = os.environ.get("TMPDIR") or "/tmp"
        self.dir = os.path.join(tmp, "epollshim-pty-" + os.urandom(6).hex())
        os.mkdir(self.dir, 0o700)
        self.path = os.path.join(self.dir, "pty.sock")
        self.sock = sock.unix()
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.setblocking(False)

    def receive(self) -> int:
        """The pty master fd (non-blocking, close-on-exec); ConsoleError if none came."""
        try:
            conn = sock.accept(self.sock)
        except BlockingIOError as e:
            raise ConsoleError("runc sent no console on the console socket") from e
        try:
            return receive_master(conn)
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for path, remove in ((self.path, os.unlink), (self.dir, os.rmdir)):
            try:
                remove(path)
            except FileNotFoundError:
                pass


def receive_master(conn: sock.Socket) -> int:
    """The pty master runc sent on an accepted console connection (non-blocking,
    close-on-exec); ConsoleError if the message is not there (yet) or holds no one fd.
    The caller closes ``conn``."""
    fds: list[int] = []
    conn.setblocking(False)
    try:
        _, ancdata, _, _ = conn.recvmsg(1024, sock.CMSG_SPACE(4), sock.MSG_CMSG_CLOEXEC)
    except BlockingIOError as e:
        raise ConsoleError("console socket connection sent nothing") from e
    for level, kind, data in ancdata:
        if level == sock.SOL_SOCKET and kind == sock.SCM_RIGHTS:
            whole = len(data) - len(data) % 4  # C ints
            import struct  # a terminal only

            fds += struct.unpack(f"{whole // 4}i", data[:whole])
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise ConsoleError(f"expected one pty master fd, got {len(fds)}")
    master = fds[0]
    os.set_blocking(master, False)
    return master


def set_winsize(fd: int, cols: int, rows: int) -> None:
    import struct  # a terminal only
    import termios

    cols, rows = (max(0, min(v, 65535)) for v in (cols, rows))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_winsize(fd: int) -> tuple[int, int]:
    """(cols, rows) of the terminal on ``fd``."""
    import struct  # a terminal only
    import termios

    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows
