"""runc's console socket, watched by the loop: the pty master is taken as soon as it comes.

Why (conmon's ``terminal_accept_cb`` does the same): runc sends the master before the
process runs, and podman sends the terminal's size before it lets the process start; a
master taken when it comes is resized before the process asks (``stty size`` in an
``exec -it`` saw 0 0 when we took it only after ``runc exec`` had exited).

Rule: a failure while watching is kept, not raised in the loop: ``finish`` (called once
runc exited 0, when the message must be there) raises it as ``ConsoleError``.
"""

from collections.abc import Callable

from epollshim.shell import sock
from epollshim.shell.console import ConsoleError, ConsoleSocket, receive_master
from epollshim.shell.loop import Loop


class ConsoleWatch:
    def __init__(self, loop: Loop, on_master: Callable[[int], None]) -> None:
        self.loop = loop
        self.on_master = on_master
        self.socket = ConsoleSocket()
        self.path = self.socket.path
        self.conn: sock.Socket | None = None  # runc's connection, its message not read yet
        self.failure = ""
        self.done = False
        loop.add_reader(self.socket.sock.fileno(), self._connected)

    def _connected(self) -> None:
        try:
            self.conn = sock.accept(self.socket.sock)
        except BlockingIOError:  # EAGAIN: a spurious wake-up
            return
        self.loop.forget(self.socket.sock.fileno())
        self.loop.add_reader(self.conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            self._take()
        except ConsoleError as e:
            self.failure = str(e)

    def _take(self) -> None:
        conn, self.conn = self.conn, None
        assert conn is not None
        self.loop.forget(conn.fileno())
        self.done = True
        try:
            master = receive_master(conn)
        finally:
            conn.close()
            self.close()
        self.on_master(master)

    def finish(self) -> None:
        """runc exited 0: take the master if it has not come yet; ConsoleError if none did."""
        if self.done:
            if self.failure:
                raise ConsoleError(self.failure)
            return
        if self.conn is not None:
            self._take()
            return
        self.done = True
        try:
            master = self.socket.receive()  # connected and sent, not yet seen by the loop
        finally:
            self.close()
        self.on_master(master)

    def close(self) -> None:
        self.loop.forget(self.socket.sock.fileno())
        if self.conn is not None:
            self.loop.forget(self.conn.fileno())
            self.conn.close()
            self.conn = None
        self.socket.close()
