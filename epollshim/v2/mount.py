"""Mounting a task's rootfs on ``<bundle>/rootfs`` and taking it down (spec section 6.3).

Rules:
- ``parse_options`` is pure: each option is a flag (the table of spec 6.3) or goes into
  the comma-joined data string; ``loop`` and fuse types are refused (not supported here).
- ``mount_all`` mounts in order; if one fails, what was mounted is unmounted before the
  error (``MountError``, naming the mount and errno) is raised: no mount outlives a
  failed Create.
- ``unmount_all`` repeats ``umount2(target, 0)`` until EINVAL (nothing mounted) and
  retries EBUSY up to 50 times, 50 ms apart (blocking: only on Delete and in ``delete``).
- A read-only bind is followed by a remount, because the first bind ignores MS_RDONLY.
"""

import errno
import os
import time

from epollshim.shell import libc

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = 16, 32, 64, 128
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 1024, 2048, 4096, 16384
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
PAGE_SIZE = 4096

# option -> (clear, flag): clear=True removes the flag
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}


class MountError(Exception):
    pass


def parse_options(options: list[str]) -> tuple[int, str]:
    """(mount flags, data string) for fstab-style options."""
    flags = 0
    data: list[str] = []
    for option in options:
        if option == "loop":
            raise MountError("loop mounts are not supported")
        entry = FLAGS.get(option)
        if entry is None:
            data.append(option)
        elif entry[0]:
            flags &= ~entry[1]
        else:
            flags |= entry[1]
    return flags, ",".join(data)


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    rc = libc.function("mount")(
        os.fsencode(source), os.fsencode(target), fstype.encode(), libc.ulong(flags),
        data.encode() if data else None,
    )  # fmt: skip
    if rc != 0:
        err = libc.errno()
        raise OSError(err, os.strerror(err))


def mount_one(fstype: str, source: str, target: str, options: list[str]) -> None:
    if fstype.startswith(("fuse.", "fuse3.")):
        raise MountError(f"{fstype} mounts are not supported")
    flags, data = parse_options(options)
    if len(data) >= PAGE_SIZE:
        raise MountError(f"mount data of {len(data)} bytes exceeds one page")
    try:
        _mount(source, target, fstype, flags, data)
        if flags & MS_BIND and flags & MS_RDONLY:
            _mount("", target, "", flags | MS_REMOUNT, "")
    except OSError as e:
        raise MountError(f"mount {fstype} {source} on {target}: {e.strerror}") from e


def mount_all(mounts: list[tuple[str, str, list[str]]], target: str) -> None:
    """Mount every (type, source, options) on ``target`` in order, or none of them."""
    if not mounts:
        return
    os.makedirs(target, mode=0o711, exist_ok=True)
    done = 0
    try:
        for fstype, source, options in mounts:
            mount_one(fstype, source, target, options)
            done += 1
    except MountError:
        for _ in range(done):
            unmount_once(target)
        raise


def unmount_once(target: str) -> bool:
    """Unmount the top mount on ``target``; False when nothing was mounted."""
    for _ in range(50):
        if libc.function("umount2")(os.fsencode(target), 0) == 0:
            return True
        err = libc.errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return False
        if err != errno.EBUSY:
            raise MountError(f"unmount {target}: {os.strerror(err)}")
        time.sleep(0.05)
    raise MountError(f"unmount {target}: still busy after 50 tries")


def unmount_all(target: str) -> None:
    while unmount_once(target):
        pass
