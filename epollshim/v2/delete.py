"""The ``delete`` subcommand: clean up after a dead or finished shim (spec section 2.5).

Rules:
- Best effort and idempotent, without talking to the daemon: ``runc delete --force``
  with the runc root and binary that Create recorded in ``options.json`` (defaults
  otherwise), unmount ``rootfs`` until nothing is mounted, and remove the shim's socket
  if nobody accepts on it any more (a grouped shim still serving others keeps it).
- stdout: the raw DeleteResponse (pid from ``init.pid`` or 2^32-1, exit 137, now).
  Problems go to stderr (containerd logs them as "cleanup warnings"); exit 0 anyway.
- This process is short-lived and alone: it may block and wait for its own child.
- Fast: containerd runs this after every task's end and ``ctr run --rm`` waits for it.
  After a normal Delete + Shutdown there is nothing left to do, so each step first looks
  whether it is needed (runc's state dir ``<root>/<ns>/<id>`` exists, ``rootfs`` is in
  /proc/self/mountinfo, the socket file exists) and imports its modules only then; the
  response is encoded here, without the message schema.
"""

import os
import time

from epollshim.v2.main import Flags
from epollshim.v2.varint import encode_varint

UNKNOWN_PID = 0xFFFFFFFF
EXIT_KILLED = 128 + 9
DEFAULT_RUNC_ROOT = "/run/containerd/runc"  # as options.DEFAULT_ROOT (not imported: slow)


def _warn(message: str) -> None:
    os.write(2, f"epollshim delete: {message}\n".encode())


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _json_string_field(text: bytes, name: str) -> str | None:
    """The value of ``"name": "..."`` in ``options.json`` as ``to_json`` writes it, or None
    when it is not there in that plain form (escapes: let the real parser decide)."""
    key = f'"{name}": "'.encode()
    start = text.find(key)
    if start < 0:
        return None
    start += len(key)
    end = text.find(b'"', start)
    if end < 0 or b"\\" in text[start:end]:
        return None
    return text[start:end].decode()


def _runc_state_exists(options_json: bytes | None, namespace: str, cid: str) -> bool:
    """Does runc still know the container? (True when we cannot tell cheaply.)"""
    root = DEFAULT_RUNC_ROOT
    if options_json is not None:
        found = _json_string_field(options_json, "root")
        if found is None:
            return True
        root = found
    return os.path.lexists(os.path.join(root, namespace, cid))


def _runc_delete(bundle: str, namespace: str, cid: str, options_json: bytes | None) -> None:
    from epollshim.v2.options import RuncOptions

    try:
        opts = RuncOptions.from_json(options_json) if options_json is not None else RuncOptions()
    except ValueError:
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


def _mountinfo_escape(path: str) -> bytes:
    """``path`` as /proc/self/mountinfo writes it (space, tab, newline, backslash octal)."""
    out = os.fsencode(path)
    for ch in (b"\\", b" ", b"\t", b"\n"):
        out = out.replace(ch, b"\\%03o" % ch[0])
    return out


def _maybe_mounted(target: str) -> bool:
    """Is anything mounted on ``target``? (True when mountinfo cannot be read.)"""
    info = _read("/proc/self/mountinfo")
    if info is None:
        return True
    mount_point = [_mountinfo_escape(os.path.realpath(target))]
    return any(line.split(b" ", 5)[4:5] == mount_point for line in info.splitlines())


def _remove_dead_socket(bundle: str) -> None:
    from epollshim.v2.start import accepts  # os, sys and _socket only

    data = _read(os.path.join(bundle, "address"))
    if data is None:
        return
    path = data.decode(errors="surrogateescape").strip().removeprefix("unix://")
    if path and os.path.lexists(path) and not accepts(path):
        try:
            os.unlink(path)
        except OSError as e:
            _warn(f"cannot remove {path}: {e.strerror}")


def _init_pid(bundle: str) -> int:
    try:
        return int((_read(os.path.join(bundle, "init.pid")) or b"").strip())
    except ValueError:
        return UNKNOWN_PID


def encode_response(pid: int, exit_status: int, ns: int) -> bytes:
    """``containerd.task.v2.DeleteResponse{pid, exit_status, exited_at}``, proto3 bytes
    (what ``messages.DeleteResponse(...).encode()`` gives; a test holds them equal)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = (b"\x08" + encode_varint(seconds) if seconds else b"") + (
        b"\x10" + encode_varint(nanos) if nanos else b""
    )
    out = b"\x08" + encode_varint(pid) if pid else b""
    out += b"\x10" + encode_varint(exit_status) if exit_status else b""
    return out + b"\x1a" + encode_varint(len(stamp)) + stamp


def run(flags: Flags) -> int:
    bundle = flags.get("bundle") or os.getcwd()
    namespace, cid = flags.get("namespace"), flags.get("id")
    options_json = _read(os.path.join(bundle, "options.json"))
    if _runc_state_exists(options_json, namespace, cid):
        try:
            _runc_delete(bundle, namespace, cid, options_json)
        except OSError as e:
            _warn(f"runc delete --force {cid}: {e}")
    rootfs = os.path.join(bundle, "rootfs")
    if _maybe_mounted(rootfs):
        from epollshim.v2.mount import MountError, unmount_all

        try:
            unmount_all(rootfs)
        except MountError as e:
            _warn(str(e))
    _remove_dead_socket(bundle)
    os.write(1, encode_response(_init_pid(bundle), EXIT_KILLED, time.time_ns()))
    return 0
