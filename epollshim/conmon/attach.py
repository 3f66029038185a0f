"""The attach socket: ``BUNDLE/attach``, where podman reads output and writes input.

Facts (conmon 2.1.6 ``conn_sock.c``, podman 4.3 ``oci_conmon_attach_common.go``):
* A SOCK_SEQPACKET listener, mode 0700, in the bundle dir (``--full-attach``). Its path is
  often longer than ``sun_path``'s 108 bytes, so it is bound (and podman connects) through
  ``/proc/self/fd/N/attach``, N an ``O_PATH`` descriptor of the directory.
* Every chunk of output goes to every client as one packet: a byte naming the stream
  (2 stdout, 3 stderr) and at most 8192 bytes of data (podman reads 8193-byte packets; a
  longer packet would be cut).
* A client's packets are input for the container (up to 32768 bytes each). When a client
  shuts its writing side (podman's ``CloseWrite`` once its stdin ended) the container's
  stdin is closed if the monitor has ``--stdin`` and not ``--leave-stdin-open``.
* Clients see EOF when the monitor closes them, once the exit is recorded.

Rules: never block the loop. A client that cannot take a packet keeps it pending and
``on_blocked(True)`` asks the owner to stop reading the container's output until every
pending packet is out (back-pressure: a client holds at most the packets of one read); a
client that went away (EPIPE, ECONNRESET) is dropped. Input is handed to ``on_input``; the
owner calls ``pause_input``/``resume_input`` while the container's stdin is full.
"""

import errno
import os
from _socket import MSG_DONTWAIT, MSG_NOSIGNAL, SOCK_NONBLOCK, SOCK_SEQPACKET
from collections.abc import Callable

from epollshim.shell import sock
from epollshim.shell.loop import Loop

STDOUT, STDERR = 2, 3  # conmon's stdpipe_t
PACKET_DATA = 8192  # conmon's STDIO_BUF_SIZE: what a client reads per packet, less one byte
INPUT_SIZE = 32768  # conmon's CONN_SOCK_BUF_SIZE
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


class Client:
    __slots__ = ("pending", "reading", "sock")

    def __init__(self, conn: sock.Socket) -> None:
        self.sock = conn
        self.pending: list[bytes] = []  # packets the client could not take yet, in order
        self.reading = True  # its input side is open


class AttachServer:
    def __init__(
        self,
        loop: Loop,
        directory: str,
        *,
        on_input: Callable[[bytes], None],
        on_input_end: Callable[[], None],
        on_blocked: Callable[[bool], None],
    ) -> None:
        self.loop = loop
        self.on_input = on_input
        self.on_input_end = on_input_end
        self.on_blocked = on_blocked
        self.clients: list[Client] = []
        self.input_paused = False
        self.listener = _bind(directory)
        loop.add_reader(self.listener.fileno(), self._accept)

    # -- connections -------------------------------------------------------------
    def _accept(self) -> None:
        try:
            conn = sock.accept(self.listener)
        except (BlockingIOError, ConnectionAbortedError):  # EAGAIN, ECONNABORTED: gone already
            return
        conn.setblocking(False)
        client = Client(conn)
        self.clients.append(client)
        if not self.input_paused:
            self._read_from(client)

    def _drop(self, client: Client) -> None:
        fd = client.sock.fileno()
        self.loop.forget(fd)
        client.sock.close()
        self.clients.remove(client)
        if client.pending:
            client.pending.clear()
            self._check_blocked()

    # -- input -------------------------------------------------------------------
    def _readable(self, client: Client) -> None:
        try:
            data = client.sock.recv(INPUT_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno not in _GONE:
                raise
            data = b""
        if data:
            self.on_input(data)
            return
        client.reading = False  # the client shut its writing side (or went away)
        self.loop.remove_reader(client.sock.fileno())
        self.on_input_end()

    def pause_input(self) -> None:
        self.input_paused = True
        for client in self.clients:
            self.loop.remove_reader(client.sock.fileno())

    def resume_input(self) -> None:
        self.input_paused = False
        for client in self.clients:
            if client.reading:
                self._read_from(client)

    def _read_from(self, client: Client) -> None:
        self.loop.add_reader(client.sock.fileno(), lambda: self._readable(client))

    # -- output ------------------------------------------------------------------
    def broadcast(self, stream: int, data: bytes) -> None:
        """Send ``data`` (at most PACKET_DATA bytes) of ``stream`` to every client."""
        packet = bytes((stream,)) + data
        for client in list(self.clients):
            client.pending.append(packet)
            self._flush(client)

    def _flush(self, client: Client) -> None:
        """Send the client's pending packets in order; on EAGAIN wait for it (blocked)."""
        while client.pending:
            try:
                client.sock.send(client.pending[0], MSG_NOSIGNAL | MSG_DONTWAIT)
            except BlockingIOError:
                self.loop.add_writer(client.sock.fileno(), lambda: self._writable(client))
                self.on_blocked(True)
                return
            except OSError as e:
                if e.errno not in _GONE:
                    raise
                self._drop(client)
                return
            del client.pending[0]

    def _writable(self, client: Client) -> None:
        self.loop.remove_writer(client.sock.fileno())
        self._flush(client)
        self._check_blocked()

    def _check_blocked(self) -> None:
        if not any(c.pending for c in self.clients):
            self.on_blocked(False)

    def blocked(self) -> bool:
        return any(c.pending for c in self.clients)

    def close(self) -> None:
        """Close every client (they read EOF) and the listener (its path stays, as conmon's)."""
        for client in list(self.clients):
            self._drop(client)
        self.loop.forget(self.listener.fileno())
        self.listener.close()


def _bind(directory: str) -> sock.Socket:
    """A listening SEQPACKET socket at ``directory/attach``, whatever the path's length."""
    listener = sock.Socket(sock.AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK)
    dirfd = os.open(directory, os.O_PATH | os.O_CLOEXEC)
    try:
        path = os.path.join(directory, "attach")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.fchmod(listener.fileno(), 0o700)
        listener.bind(f"/proc/self/fd/{dirfd}/attach")
        os.chmod(path, 0o700)
        listener.listen(10)
    except OSError:
        listener.close()
        raise
    finally:
        os.close(dirfd)
    return listener
