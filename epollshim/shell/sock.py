"""Unix sockets from ``_socket``, without the ``socket`` module.

``import socket`` costs ~1.2 MB per shim: it turns every constant into an IntEnum member
(and imports ``enum``); ``_socket`` alone costs 0.08 MB. ``_socket.socket`` is the base
class of ``socket.socket`` and has everything a shim uses (recv, send, recvmsg, connect,
bind, listen, getsockopt, setblocking, fileno, close), except ``accept``: see ``accept``.
Callers (and tests) may hand us ``socket.socket`` objects: they are ``Socket`` too.
"""

import _socket
from _socket import (
    AF_UNIX,
    CMSG_SPACE,
    MSG_CMSG_CLOEXEC,
    SCM_RIGHTS,
    SO_PEERCRED,
    SOCK_NONBLOCK,
    SOCK_STREAM,
    SOL_SOCKET,
)

__all__ = [
    "AF_UNIX",
    "CMSG_SPACE",
    "MSG_CMSG_CLOEXEC",
    "SCM_RIGHTS",
    "SOCK_NONBLOCK",
    "SOCK_STREAM",
    "SOL_SOCKET",
    "SO_PEERCRED",
    "Socket",
    "accept",
    "from_fd",
    "socketpair",
    "unix",
]

Socket = _socket.socket


def unix(flags: int = 0) -> Socket:
    """A new AF_UNIX stream socket (close-on-exec; ``flags``: e.g. SOCK_NONBLOCK)."""
    return Socket(AF_UNIX, SOCK_STREAM | flags)


def from_fd(fd: int) -> Socket:
    """A socket object owning the socket ``fd`` (family and type are asked of the kernel)."""
    return Socket(fileno=fd)


def socketpair() -> tuple[Socket, Socket]:
    """A connected pair of AF_UNIX stream sockets (close-on-exec)."""
    return _socket.socketpair(AF_UNIX, SOCK_STREAM)


def accept(listener: Socket) -> Socket:
    """The next connection on ``listener`` (accept4 with SOCK_CLOEXEC, blocking mode)."""
    fd, _ = listener._accept()  # type: ignore[attr-defined]  # socket.socket.accept's half
    return Socket(fileno=fd)
