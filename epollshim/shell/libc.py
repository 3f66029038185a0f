"""Calling libc (prctl, mount, umount2, inotify) through ``_ctypes``, not ``ctypes``.

``import ctypes`` costs ~0.25 MB per shim (its Python half defines dozens of types and
the CDLL machinery); its C half ``_ctypes`` costs ~0.05 MB and is all a few calls need:
a function pointer class (cdecl, errno saved), C ``int`` and ``unsigned long`` types.
Arguments: Python ints become C ints, bytes and None become ``char *``; wrap a 64-bit
value in ``ulong``. Every function returns a C int; on -1 read ``errno()``.
"""

import _ctypes
import os
from collections.abc import Callable

_RTLD_NOW = 2

# mypy treats any TYPE_CHECKING as true: there the C types are generic in their value.
TYPE_CHECKING = False
if TYPE_CHECKING:

    class _IntBase(_ctypes._SimpleCData[int]):
        pass

else:
    _IntBase = _ctypes._SimpleCData


class _Int(_IntBase):
    _type_ = "i"


class ulong(_IntBase):
    """A C ``unsigned long`` argument (mount flags, prctl arguments)."""

    _type_ = "L"


class _Function(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _Process:
    """What ``CFuncPtr`` wants beside a name: the ``dlopen(NULL)`` handle of the process."""

    _handle = 0


def function(name: str) -> Callable[..., int]:
    """The libc (or any loaded library's) function ``name``."""
    if not _Process._handle:
        _Process._handle = _ctypes.dlopen(None, _RTLD_NOW)  # type: ignore[arg-type]
    return _Function((name, _Process))  # type: ignore[arg-type]  # anything with _handle


def errno() -> int:
    """The errno saved by the last call made through ``function``."""
    return int(_ctypes.get_errno())


def inotify(path: str, mask: int) -> int:
    """A non-blocking, close-on-exec inotify fd watching ``path`` for ``mask`` (inotify(7))."""
    fd = function("inotify_init1")(os.O_CLOEXEC | os.O_NONBLOCK)
    if fd < 0:
        raise OSError(errno(), "inotify_init1")
    if function("inotify_add_watch")(fd, os.fsencode(path), mask) < 0:
        err = errno()
        os.close(fd)
        raise OSError(err, f"inotify_add_watch {path}")
    return int(fd)
