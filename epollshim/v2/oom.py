"""OOM notifications for a container's memory cgroup, on the loop (spec section 7.7).

Rules:
- cgroup v1: an eventfd registered through ``cgroup.event_control`` with the cgroup's
  ``memory.oom_control``; each count read is one OOM -> ``TaskOOM``. The kernel also
  signals the eventfd when the cgroup is removed: then the directory is gone and we stop.
- cgroup v2: ``memory.events`` (where present) is re-read when inotify reports a change;
  a grown ``oom_kill`` counter -> ``TaskOOM``.
- Best effort: no memory cgroup, or no permission, means no OOM events (logged at debug);
  the watcher is stopped with the container (``Container.on_release``).
"""

import os

from epollshim.shell import libc
from epollshim.v2.container import Container

V1_ROOT = "/sys/fs/cgroup/memory"
V2_ROOT = "/sys/fs/cgroup"
IN_MODIFY = 0x2


def cgroup_path(pid: int) -> tuple[str, str]:
    """("v1"|"v2", directory) of the memory cgroup of ``pid``, or ("", "")."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return "v1", V1_ROOT + path
    for line in lines:
        if line.startswith("0::"):
            return "v2", V2_ROOT + line[3:]
    return "", ""


def watch(c: Container, pid: int) -> None:
    try:
        kind, path = cgroup_path(pid)
        if kind == "v1":
            _watch_v1(c, path)
        elif kind == "v2":
            _watch_v2(c, path)
    except OSError as e:
        c.ctx.log.debug(f"{c.id}: no OOM notifications: {e}")


def _watch_v1(c: Container, path: str) -> None:
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        ofd = os.open(os.path.join(path, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open(os.path.join(path, "cgroup.event_control"), "w") as f:
                f.write(f"{efd} {ofd}")
        finally:
            os.close(ofd)
    except OSError:
        os.close(efd)
        raise
    loop = c.ctx.loop

    def stop() -> None:
        if efd in loop.callbacks:
            loop.forget(efd)
            os.close(efd)

    def readable() -> None:
        try:
            os.eventfd_read(efd)
        except BlockingIOError:
            return
        if not os.path.isdir(path):  # the cgroup was removed
            stop()
            return
        _publish(c)

    loop.add_reader(efd, readable)
    c.on_release.append(stop)


def _publish(c: Container) -> None:
    from epollshim.v2.messages_more import TaskOOM  # most containers never see one

    c.ctx.publisher.publish(TaskOOM(container_id=c.id))


def _oom_kills(events: str) -> int:
    try:
        with open(events) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _watch_v2(c: Container, path: str) -> None:
    events = os.path.join(path, "memory.events")
    if not os.path.exists(events):
        return
    fd = libc.inotify(events, IN_MODIFY)
    loop = c.ctx.loop
    seen = [_oom_kills(events)]

    def stop() -> None:
        if fd in loop.callbacks:
            loop.forget(fd)
            os.close(fd)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if len(data) >= 16:  # one inotify event: int wd, uint32 mask, cookie, len
            count = _oom_kills(events)
            if count > seen[0]:
                seen[0] = count
                _publish(c)

    loop.add_reader(fd, readable)
    c.on_release.append(stop)
