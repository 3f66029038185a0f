"""The ``delete`` subcommand: clean up after a dead or finished shim (spec section 2.5).

Rules:
- Best effort and idempotent, without talking to the daemon: ``runc delete --force``
  with the runc root and binary that Create recorded in ``options.json`` (defaults
  otherwise), unmount ``rootfs`` until nothing is mounted, and remove the shim's socket
  if nobody accepts on it any more (a grouped shim still serving others keeps it).
- stdout: the raw DeleteResponse (pid from ``init.pid`` or 2^32-1, exit 137, now).
  Problems go to stderr (containerd logs them as "cleanup warnings"); exit 0 anyway.
- This process is short-lived and alone: it may block and wait for its own child.
"""

import os
import time

from epollshim.v2.main import Flags

UNKNOWN_PID = 0xFFFFFFFF
EXIT_KILLED = 128 + 9


def _warn(message: str) -> None:
    os.write(2, f"epollshim delete: {message}\n".encode())


def _runc_delete(bundle: str, namespace: str, cid: str) -> None:
    from epollshim.v2.options import RuncOptions

    try:
        with open(os.path.join(bundle, "options.json"), "rb") as f:
            opts = RuncOptions.from_json(f.read())
    except (OSError, ValueError):
        opts = RuncOptions()
    argv = [opts.binary, "--root", opts.runc_root(namespace)]
    argv += ["--log", os.path.join(bundle, "log.json"), "--log-format", "json"]
    argv += [*opts.global_args(), "delete", "--force", cid]
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                for fd in (0, 1):
                    os.dup2(devnull, fd)
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(devnull)
    if status:
        _warn(f"{' '.join(argv)}: wait status {status:#x}")


def _remove_dead_socket(bundle: str) -> None:
    from epollshim.v2.start import accepts

    try:
        with open(os.path.join(bundle, "address")) as f:
            path = f.read().strip().removeprefix("unix://")
    except OSError:
        return
    if path and os.path.exists(path) and not accepts(path):
        try:
            os.unlink(path)
        except OSError as e:
            _warn(f"cannot remove {path}: {e.strerror}")


def _init_pid(bundle: str) -> int:
    try:
        with open(os.path.join(bundle, "init.pid"), "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return UNKNOWN_PID


def run(flags: Flags) -> int:
    from epollshim.v2.messages import DeleteResponse
    from epollshim.v2.mount import MountError, unmount_all
    from epollshim.v2.pb import Timestamp

    bundle = flags.get("bundle") or os.getcwd()
    cid = flags.get("id")
    try:
        _runc_delete(bundle, flags.get("namespace"), cid)
    except OSError as e:
        _warn(f"runc delete --force {cid}: {e}")
    try:
        unmount_all(os.path.join(bundle, "rootfs"))
    except MountError as e:
        _warn(str(e))
    _remove_dead_socket(bundle)
    response = DeleteResponse(
        pid=_init_pid(bundle),
        exit_status=EXIT_KILLED,
        exited_at=Timestamp.from_ns(time.time_ns()),
    )
    os.write(1, response.encode())
    return 0
