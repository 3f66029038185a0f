"""The ``start`` subcommand: find or make the shim's socket, launch the daemon, print it.

Rules (spec sections 2.3, 2.4, 2.6):
- stdout and stderr are one pipe that containerd reads to EOF and uses as the address:
  print only ``unix://<path>``; errors go to stderr and exit 1.
- The daemon must not hold that pipe: its fds are 0,1 = /dev/null, 2 = the bundle's
  ``log`` FIFO (non-blocking: a full log never stalls the loop), and the listening socket.
- The daemon is a fork of this process when this one runs without ``site`` (the lean
  launcher: ``python -IS``): it skips a second interpreter start-up (~10 ms on every
  container start) and imports its modules itself, after the fork (from the code pack
  ``install-launchers`` writes, ``epollshim/codepack.py``), while ``start`` answers
  containerd. It drops ``start`` from its command line (``/proc/self/mem`` over
  its own argv), so ``ps`` shows ``containerd-shim-epollshim-v2 -namespace NS -address A
  -publish-binary B -id ID``, the form runc-v2's daemon has. Started with ``site`` (pip's
  console script), ``start`` execs a fresh ``sys.executable -I -S`` instead, so the
  daemon never carries ``site``'s modules (DESIGN.md section 6).
- Grouping: when the bundle's annotations carry the group key, the socket name hashes the
  group id instead of the container id, and a shim already listening there is reused.
- ``shim_cgroup`` of the runtime options (``containerd.linux.runc.CreateOptions`` on stdin)
  moves the daemon into that cgroup; a cgroup that does not exist fails ``start``.
- Imports stay minimal (containerd waits on ``start`` for every container): ``_socket``
  instead of ``socket`` (its enums), and a JSON parser only when ``config.json`` mentions
  a grouping key at all.
"""

import os
import sys

from epollshim.v2.main import Flags, daemon_failed

DEFAULT_GROUP_KEYS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")
DEFAULT_SOCKET_DIR = "/run/containerd/s"
MAX_SOCKET_PATH = 106


TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import _socket


class StartError(Exception):
    pass


def _sha256_hex(data: bytes) -> str:
    try:  # the C module alone: hashlib would load OpenSSL (slower start)
        digest = __import__("_sha256").sha256(data).hexdigest()
    except ImportError:  # pragma: no cover - builds without it
        from hashlib import sha256

        digest = sha256(data).hexdigest()
    return str(digest)


def v2_settings() -> tuple[tuple[str, ...], str]:
    """(group annotation keys, socket dir): defaults, or the EPOLLSHIM_CONFIG file's."""
    path = os.environ.get("EPOLLSHIM_CONFIG")
    if not path:
        return DEFAULT_GROUP_KEYS, DEFAULT_SOCKET_DIR
    from epollshim import config

    v2 = config.load(path)["v2"]
    key, sock_dir = str(v2["group_key"]), str(v2["socket_dir"])
    keys = ("io.containerd.runc.v2.group", key) if key != DEFAULT_GROUP_KEYS[0] else (key,)
    return keys, sock_dir


def group_id(bundle: str, container_id: str, keys: tuple[str, ...]) -> str:
    """The id that names the socket: the first grouping annotation, else the container id."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            data = f.read()
    except OSError:
        return container_id
    if not any(key.encode() in data for key in keys):  # Go's encoder escapes no character of a key
        return container_id  # the common case: parse nothing
    from epollshim import minijson

    try:
        spec = minijson.loads(data)
    except ValueError:
        return container_id
    annotations = spec.get("annotations") if isinstance(spec, dict) else None
    if isinstance(annotations, dict):
        for key in keys:
            value = annotations.get(key)
            if isinstance(value, str) and value:
                return value
    return container_id


def socket_path(sock_dir: str, address: str, namespace: str, group: str) -> str:
    """runc-v2's convention: sha256 of ``<address>/<ns>/<group>`` (as filepath.Join)."""
    joined = os.path.normpath("/".join((address, namespace, group)))
    return os.path.join(sock_dir, _sha256_hex(joined.encode()))


def _unix_socket() -> "_socket.socket":
    import _socket

    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)


def accepts(path: str) -> bool:
    """Is a shim listening on ``path``?"""
    s = _unix_socket()
    try:
        s.settimeout(1.0)
        s.connect(path)
    except OSError:
        return False
    finally:
        s.close()
    return True


def listen(path: str) -> "_socket.socket":
    if len(path) > MAX_SOCKET_PATH:
        raise StartError(f"{path}: socket path longer than {MAX_SOCKET_PATH} characters")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        os.unlink(path)  # a dead shim's socket (nobody accepted on it)
    except FileNotFoundError:
        pass
    sock = _unix_socket()
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def write_address(bundle: str, address: str) -> None:
    tmp = os.path.join(bundle, ".address")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, address.encode())
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(bundle, "address"))


def daemon_argv(flags: Flags, sock_path: str, fd: int) -> list[str]:
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        f"import sys;sys.path.insert(0,{package_parent!r});"
        "from epollshim.v2.daemon import main;main()"
    )
    args = Flags()
    args.values = {k: v for k, v in flags.values.items() if k != "publish-binary"}
    args.values["socket"] = sock_path
    args.values["fd"] = str(fd)
    return [sys.executable, "-I", "-S", "-c", code, *args.argv()]


def _daemon_stdio(bundle: str) -> tuple[int, int]:
    """(/dev/null, the bundle's log FIFO) for the daemon's 0/1 and 2 (spec 2.4)."""
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        log = os.open(os.path.join(bundle, "log"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # no log FIFO (run by hand): lose the daemon's diagnostics
        log = os.dup(devnull)
    return devnull, log


# What ``run`` returns in the forked daemon: ``main`` serves there, outside this module.
DAEMON = -1


def start_daemon(flags: Flags, sock_path: str, sock: "_socket.socket", bundle: str) -> int:
    """The daemon serving ``sock``: forked when we are lean, else exec'd; its pid in
    ``start``, 0 in the forked daemon (its stdio set up, ``flags`` naming the socket's path
    and fd, which ``sock`` no longer owns)."""
    if not sys.flags.no_site:
        return spawn_daemon(daemon_argv(flags, sock_path, sock.fileno()), bundle, sock.fileno())
    devnull, log = _daemon_stdio(bundle)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the daemon
        try:
            os.setpgid(0, 0)  # its own process group, as containerd gives the shim
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.dup2(log, 2)
            os.close(devnull)
            os.close(log)
            drop_from_cmdline(flags.action)
            flags.action = ""
            flags.values["socket"] = sock_path
            flags.values["fd"] = str(sock.detach())
        except BaseException as e:
            os._exit(daemon_failed(e))
        return 0
    os.close(devnull)
    os.close(log)
    return pid


def drop_from_cmdline(word: str) -> None:
    """Blank the last argument ``word`` of our command line (what ``ps`` shows).

    proc(5): fields 48 and 49 of /proc/self/stat bound the argv strings in our memory;
    writing NULs over the word through /proc/self/mem changes /proc/self/cmdline. Only
    looks: any surprise (a changed command line, no /proc) leaves it as it is.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        arg_start, arg_end = int(fields[45]), int(fields[46])
        with open("/proc/self/cmdline", "rb") as f:
            cmdline = f.read()
        tail = b"\0" + word.encode() + b"\0"
        if not word or arg_end - arg_start != len(cmdline) or not cmdline.endswith(tail):
            return
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(arg_end - len(word) - 1)
            mem.write(b"\0" * len(word))
    except (OSError, ValueError, IndexError):  # EACCES, ENOENT, EIO: cosmetic, never fatal
        pass


def spawn_daemon(argv: list[str], bundle: str, listen_fd: int) -> int:
    """Fork and exec the daemon with the stdio of spec 2.4; return its pid."""
    devnull, log = _daemon_stdio(bundle)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, until exec
        try:
            os.setpgid(0, 0)  # its own process group, as containerd gives the shim
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.dup2(log, 2)
            os.set_inheritable(listen_fd, True)
            os.chdir(bundle)
            os.execv(argv[0], argv)
        except BaseException as e:
            os.write(report_w, str(e).encode())
        os._exit(127)
    os.close(report_w)
    os.close(devnull)
    os.close(log)
    report = os.read(report_r, 4096)
    os.close(report_r)
    if report:
        os.waitpid(pid, 0)
        raise StartError(f"cannot execute the daemon {argv[0]}: {report.decode()}")
    return pid


def raise_oom_score() -> None:
    """Our oom_score_adj (containerd's) + 1, for the daemon we are about to start, which
    inherits it: runc-v2 gives its daemon containerd's + 1 (best effort). Before the fork,
    with plain syscalls: after it, each page we touch is copied first."""
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        score = min(1000, int(os.pread(fd, 32, 0)) + 1)
        os.pwrite(fd, str(score).encode(), 0)
    except (OSError, ValueError):  # EACCES when unprivileged: the kernel default stays
        pass
    finally:
        os.close(fd)


def _read_stdin() -> bytes:
    """containerd may write the options Any here (read it all, so its write never fails)."""
    chunks = []
    try:
        while chunk := os.read(0, 65536):
            chunks.append(chunk)
    except OSError:  # EBADF/EINVAL: no stdin at all
        pass
    return b"".join(chunks)


def shim_cgroup(options: bytes) -> str:
    """The ``shim_cgroup`` of the runtime options (CreateOptions), or "" (no decoding if none)."""
    if not options:
        return ""  # the common case: ctr sends nothing for a runtime other than runc's
    from epollshim.v2 import options as runtime_options
    from epollshim.v2.pb import Any, DecodeError

    try:
        return runtime_options.decode(Any.decode(options)).shim_cgroup
    except (DecodeError, runtime_options.OptionsError) as e:
        raise StartError(f"runtime options on stdin: {e}") from e


def join_cgroup(pid: int, cgroup: str, root: str = "/sys/fs/cgroup") -> None:
    """Move ``pid`` into ``cgroup`` in every hierarchy that has it, as runc-v2's shim does."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):  # cgroup v2: one hierarchy
        dirs = [root]
    else:  # cgroup v1: one directory per mounted hierarchy (cpu,cpuacct and its links, ...)
        dirs = sorted({os.path.realpath(e.path) for e in os.scandir(root) if e.is_dir()})
    procs = [os.path.join(d, cgroup.lstrip("/"), "cgroup.procs") for d in dirs]
    procs = [p for p in procs if os.path.exists(p)]
    if not procs:
        raise StartError(f"shim cgroup {cgroup}: not found under {root}")
    for path in procs:
        with open(path, "w") as f:
            f.write(str(pid))


def run(flags: Flags) -> int:
    try:
        cgroup = shim_cgroup(_read_stdin())
        bundle = os.getcwd()
        keys, sock_dir = v2_settings()
        cid = flags.get("id")
        group = group_id(bundle, cid, keys)
        path = socket_path(sock_dir, flags.get("address"), flags.get("namespace"), group)
        address = "unix://" + path
        if group != cid and accepts(path):
            write_address(bundle, address)
        else:
            sock = listen(path)
            try:
                write_address(bundle, address)
                raise_oom_score()
                pid = start_daemon(flags, path, sock, bundle)
                if pid == 0:
                    return DAEMON
                if cgroup:
                    try:
                        join_cgroup(pid, cgroup)
                    except BaseException:
                        os.kill(pid, 9)  # our own child: no daemon outside its cgroup
                        os.waitpid(pid, 0)
                        raise
            except BaseException:
                os.unlink(path)
                raise
            finally:
                sock.close()
    except Exception as e:
        os.write(2, f"containerd-shim-epollshim-v2 start: {e}\n".encode())
        return 1
    os.write(1, address.encode())
    return 0
